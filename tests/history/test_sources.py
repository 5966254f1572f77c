"""One history from every source it may live in (issue 14): CSV, Parquet, XLSX and DuckDB
give the same deals; presets of real CRM exports with their open stages; dates and amounts
as exports write them, the convention decided per column; hostile inputs refused, not read."""
from __future__ import annotations

import sys
import time
import zipfile
from datetime import date
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import history_tables as ht  # noqa: E402

from forecaster.errors import ScenarioError  # noqa: E402
from forecaster.history import sources  # noqa: E402
from forecaster.history.readers import PRESET_NAMES, PRESETS, load_deals, parse_outcomes  # noqa: E402

ROWS = ht.synthetic_history()


def deals_of(path, preset="salesforce", **kw):
    deals, stages, _ = load_deals(path, preset, segment_column=kw.pop("segment_column", "Segment"), **kw)
    return deals


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    return {"csv": ht.write_csv(ROWS, d / "h.csv"), "parquet": ht.write_parquet(ROWS, d / "h.parquet"),
            "xlsx": ht.write_xlsx(ROWS, d / "h.xlsx"), "duckdb": ht.write_duckdb(ROWS, d / "h.duckdb")}


@pytest.fixture(scope="module")
def expected(tables):
    deals = deals_of(tables["csv"])
    # the history itself, not an artefact of reading: every row a deal, open stages open
    assert len(deals) == len(ROWS)
    assert {d.outcome for d in deals} == {"won", "lost", "open"}
    assert all(d.closed is None for d in deals if d.outcome == "open")
    assert {d.deal_id: d.amount for d in deals} == {r[0]: r[5] for r in ROWS}
    return deals


# --- every source, the same deals ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["parquet", "xlsx"])
def test_each_file_format_gives_the_csvs_deals(tables, expected, kind):
    assert deals_of(tables[kind]) == expected


def test_a_duckdb_database_with_a_query_gives_the_csvs_deals(tables, expected):
    assert deals_of(tables["duckdb"], query="SELECT * FROM deals ;\n") == expected
    # a query selects: only the won deals
    won = deals_of(tables["duckdb"], query="SELECT * FROM deals WHERE StageName = 'Closed Won'")
    assert won == [d for d in expected if d.outcome == "won"]


@pytest.mark.parametrize("style", ["us", "eu", "de"])
def test_dates_day_first_or_month_first_give_the_iso_deals(tmp_path, expected, style):
    assert deals_of(ht.write_csv(ROWS, tmp_path / "h.csv", date_style=style)) == expected


def test_what_a_file_holds_decides_how_it_is_read_not_its_name(tables, expected, tmp_path):
    disguised = tmp_path / "export.csv"
    disguised.write_bytes(tables["parquet"].read_bytes())
    assert deals_of(disguised) == expected
    assert sources.kind_of(tables["xlsx"]) == "xlsx" and sources.kind_of(tables["duckdb"]) == "duckdb"


def test_a_workbooks_first_sheet_is_read_with_its_own_row_numbers(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Deals"
    ws.append(["Exported 2026-06-30"])        # row 1: a title above the table
    ws.append([])                             # row 2: blank
    ws.append(list(ht.COLUMNS))               # row 3: the header
    for row in ROWS[:5]:
        ws.append(list(row))                  # rows 4-8
    ws.cell(row=6, column=6, value=-12.5)     # row 6: a negative amount
    wb.create_sheet("Notes").append(["read me"])
    wb.save(tmp_path / "h.xlsx")
    with pytest.raises(ScenarioError) as err:
        deals_of(tmp_path / "h.xlsx")
    # the title row is taken for the header: the message lists what it found
    assert "lacks deal_id (column 'Id')" in str(err.value) and "its columns are: Exported 2026-06-30" in str(err.value)
    assert "; row 3 holds 'Id', " in str(err.value) and "delete the rows above it" in str(err.value)
    ws.delete_rows(1)                         # now the header is on row 2, the negative amount on row 5
    wb.save(tmp_path / "h.xlsx")
    with pytest.raises(ScenarioError) as err:
        deals_of(tmp_path / "h.xlsx")
    assert str(err.value) == (f"{tmp_path / 'h.xlsx'}: row 5: amount (column 'Amount'): expected an amount >= 0 (like "
                              "1054.50, 1,054.50, 1.054,50, 1 054,50 or $1,054.50) or a blank; found '-12.5'"
                              "\n  --drop-bad-rows leaves out rows like these (1 row here) and reads the rest, when "
                              "they are a few (at most a fifth of the file)")
    ws.cell(row=5, column=6, value=12.5)
    wb.save(tmp_path / "h.xlsx")
    warnings: list[str] = []
    assert len(deals_of(tmp_path / "h.xlsx", warnings=warnings)) == 5
    assert warnings == [f"{tmp_path / 'h.xlsx'}: read its first sheet, 'Deals', and left out the other 1 ('Notes')"]


def test_rows_of_parquet_and_queries_are_numbered_from_1(tmp_path):
    rows = [list(r) for r in ROWS[:6]]
    rows[3][4] = date(1800, 1, 1)  # the 4th row: a close date out of range
    with pytest.raises(ScenarioError) as err:
        deals_of(ht.write_parquet([tuple(r) for r in rows], tmp_path / "h.parquet"))
    assert f"{tmp_path / 'h.parquet'}: row 4: closed (column 'CloseDate'): expected a date from 1900-01-01" in \
        str(err.value)
    rows[3][0] = rows[1][0]  # and a repeated id
    with pytest.raises(ScenarioError) as err:
        deals_of(ht.write_duckdb([tuple(r) for r in rows], tmp_path / "h.duckdb"), query="SELECT * FROM deals")
    assert f"{tmp_path / 'h.duckdb'} (--query): 2 problems" in str(err.value)
    assert "row 4: deal_id '006000001' is also on row 2, with other values" in str(err.value)


def test_typed_cells_a_date_column_cannot_hold(tmp_path):
    import duckdb

    db = tmp_path / "h.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE d AS SELECT 'a' AS Id, 45000 AS CreatedDate, 'Closed Won' AS StageName, "
                "DATE '2026-01-05' AS CloseDate, 10.5::DECIMAL(10, 2) AS Amount, "
                "TIMESTAMPTZ '2026-01-01 23:30:00-05' AS Created2")
    con.close()
    with pytest.raises(ScenarioError) as err:
        deals_of(db, query="SELECT * FROM d", segment_column=None)
    assert "row 1: opportunity (column 'CreatedDate'): expected a date; found the number 45000 (a spreadsheet cell " \
           "not formatted as a date, or the wrong column?)" in str(err.value)
    # a timestamp with a time zone is read on its UTC date; a DECIMAL amount as its value
    (deal,) = deals_of(db, query="SELECT * FROM d", segment_column=None, mapping=["opportunity=Created2"])
    assert deal.entered == [date(2026, 1, 2)] and deal.amount == 10.5


# --- presets of real exports ---------------------------------------------------------------------

SALESFORCE = """\
Opportunity Name,Id,Account Name,StageName,Amount,CreatedDate,CloseDate,Owner
Acme renewal,0065e00000AbCdE,Acme,Closed Won,"$15,271.58",11/27/2024,1/15/2025,ana
Globex pilot,0065e00000AbCdF,Globex,Closed Lost,"$2,000.00",12/2/2024,2/28/2025,ben
Initech,0065e00000AbCdG,Initech,Prospecting,,3/3/2025,7/31/2025,ana
Umbrella,0065e00000AbCdH,Umbrella,Needs Analysis,"$48,000.00",3/14/2025,8/15/2025,ben
Hooli,0065e00000AbCdI,Hooli,Id. Decision Makers,"$9,999.99",4/1/2025,6/30/2025,ana
Stark,0065e00000AbCdJ,Stark,Negotiation/Review,"$120,000.00",4/20/2025,9/30/2025,ana
Wayne,0065e00000AbCdK,Wayne,proposal/price quote ,"$1,000.00",5/1/2025,9/30/2025,ben
Wonka,0065e00000AbCdL,Wonka,Value Proposition,$500,5/2/2025,9/30/2025,ben
Tyrell,0065e00000AbCdM,Tyrell,Qualification,$750.5,5/3/2025,9/30/2025,ben
Cyberdyne,0065e00000AbCdN,Cyberdyne,Perception Analysis,$50,5/4/2025,9/30/2025,ben
"""


@pytest.mark.parametrize("preset", ["salesforce", "crm"])
def test_a_salesforce_export_with_open_stages_us_dates_and_dollars(tmp_path, preset):
    path = tmp_path / "opportunities.csv"
    path.write_text(SALESFORCE)
    deals, stages, lost = load_deals(path, preset)
    assert stages == ["opportunity"] and lost
    assert [d.outcome for d in deals] == ["won", "lost"] + ["open"] * 8
    assert deals[0].entered == [date(2024, 11, 27)] and deals[0].closed == date(2025, 1, 15)
    assert [d.amount for d in deals] == [15271.58, 2000.0, None, 48000.0, 9999.99, 120000.0, 1000.0, 500.0, 750.5,
                                         50.0]


def test_a_customised_salesforce_stage_is_a_clear_error_naming_the_option(tmp_path):
    path = tmp_path / "opportunities.csv"
    path.write_text(SALESFORCE.replace("Qualification", "Security Review"))
    with pytest.raises(ScenarioError) as err:
        load_deals(path, "salesforce")
    text = str(err.value)
    assert "column 'StageName' (the outcome) holds 1 value mapped to no outcome (1 row)" in text
    assert "'Security Review': 1 row (first on line 10)" in text
    assert "--outcome open=\"Security Review\"" in text
    deals, _, _ = load_deals(path, "salesforce", outcomes=parse_outcomes(["open=Security Review"]))
    assert len(deals) == 10


HUBSPOT_IDS = """\
Record ID,Deal Name,Deal Stage,Create Date,Close Date,Amount,Pipeline
9001,Acme,closedwon,2025-01-16 10:15,2025-02-03 16:00,"12,500.00",Sales Pipeline
9002,Globex,closedlost,2025-01-08 09:00,2025-03-01 12:00,,Sales Pipeline
9003,Initech,appointmentscheduled,2025-04-02 11:00,2025-07-31 00:00,1500,Sales Pipeline
9004,Umbrella,qualifiedtobuy,2025-04-03 11:00,,2000,Sales Pipeline
9005,Hooli,presentationscheduled,2025-04-04 11:00,,3000,Sales Pipeline
9006,Stark,decisionmakerboughtin,2025-04-05 11:00,,4000,Sales Pipeline
9007,Wayne,contractsent,2025-04-06 11:00,,5000,Sales Pipeline
"""
HUBSPOT_LABELS = """\
Deal ID,Deal Name,Deal Stage,Create Date,Close Date,Amount
9001,Acme,Closed Won,16.01.2025,03.02.2025,"12.500,00"
9002,Globex,Closed Lost,08.01.2025,01.03.2025,
9003,Initech,Appointment Scheduled,02.04.2025,31.07.2025,"1.500,00"
9004,Umbrella,Qualified To Buy,03.04.2025,,"2.000,00"
9005,Hooli,Presentation Scheduled,04.04.2025,,"3.000,00"
9006,Stark,Decision Maker Bought-In,05.04.2025,,"4.000,00"
9007,Wayne,Contract Sent,06.04.2025,,"5.000,00"
"""


def test_hubspot_exports_by_internal_value_or_label_read_alike(tmp_path):
    (tmp_path / "ids.csv").write_text(HUBSPOT_IDS)
    (tmp_path / "labels.csv").write_text(HUBSPOT_LABELS)
    by_id, stages, _ = load_deals(tmp_path / "ids.csv", "hubspot")
    by_label, _, _ = load_deals(tmp_path / "labels.csv", "hubspot")
    assert by_id == by_label and stages == ["deal"]
    assert [(d.deal_id, d.outcome) for d in by_id] == [("9001", "won"), ("9002", "lost")] + [
        (f"900{i}", "open") for i in range(3, 8)]
    assert by_id[0].entered == [date(2025, 1, 16)] and by_id[0].closed == date(2025, 2, 3)
    assert [d.amount for d in by_id] == [12500.0, None, 1500.0, 2000.0, 3000.0, 4000.0, 5000.0]


def test_hubspot_without_an_id_column_names_both(tmp_path):
    (tmp_path / "h.csv").write_text(HUBSPOT_IDS.replace("Record ID", "Identifier"))
    with pytest.raises(ScenarioError, match="lacks deal_id \\(column 'Record ID' or 'Deal ID'\\)"):
        load_deals(tmp_path / "h.csv", "hubspot")
    deals, _, _ = load_deals(tmp_path / "h.csv", "hubspot", mapping=["deal_id=Identifier"])
    assert len(deals) == 7


def test_the_presets_are_those_the_command_line_offers():
    from forecaster.cli.calibrate import PRESET_CHOICES

    assert set(PRESET_CHOICES) == set(PRESET_NAMES) and PRESETS["crm"] == PRESETS["salesforce"]


# --- dates and amounts, a convention per column ----------------------------------------------------

def history(tmp_path, created, amounts, closed=None):
    lines = ["deal_id,lead,outcome,closed,amount"]
    for i, (c, a) in enumerate(zip(created, amounts)):
        lines.append(f'd{i},"{c}",won,{closed[i] if closed else "2099-01-01"},"{a}"')
    path = tmp_path / "h.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def read(path, **kw):
    deals, _, _ = load_deals(path, "generic", stages="lead", **kw)
    return deals


@pytest.mark.parametrize("text, value", [
    ("15,271.58", 15271.58), ("15.271,58", 15271.58), ("15 271,58", 15271.58), ("15\u00a0271,58", 15271.58),
    ("15\u202f271,58", 15271.58), ("$15,271.58", 15271.58), ("€ 1.234,56", 1234.56), ("1.234,56 €", 1234.56),
    ("USD 1,234.56", 1234.56), ("R$ 1.234,56", 1234.56), ("US$1,234.56", 1234.56), ("1'234.50 CHF", 1234.5), ("1,234,567", 1234567.0), ("1.234.567", 1234567.0),
    ("0,125", 0.125), ("1234,567", 1234.567), ("12,5", 12.5), ("1054", 1054.0), ("1054.50", 1054.5),
    ("1e3", 1000.0), ("0", 0.0),
])
def test_an_amount_as_exports_write_it(tmp_path, text, value):
    (deal,) = read(history(tmp_path, ["2026-01-05"], [text]))
    assert deal.amount == value


@pytest.mark.parametrize("text, found", [
    ("(1,234.00)", "found '(1,234.00)' (in parentheses: negative)"),
    ("-1.234,56", "found '-1.234,56'"),
    ("$-5", "found '$-5'"),
    ("1.234,56-", "found '1.234,56-'"),
])
def test_a_negative_amount_is_refused_however_written(tmp_path, text, found):
    with pytest.raises(ScenarioError) as err:
        read(history(tmp_path, ["2026-01-05"], [text]))
    assert "h.csv:2: amount (column 'amount'): expected an amount >= 0" in str(err.value) and found in str(err.value)


@pytest.mark.parametrize("text", ["about 1200", "12 34", "1,23,456", "1.2.3", "$", "1,234.5,6", "€€5", "5x",
                                  "USD 5 EUR"])
def test_an_amount_that_is_no_number_is_refused(tmp_path, text):
    with pytest.raises(ScenarioError, match="h.csv:2: amount \\(column 'amount'\\): expected an amount >= 0"):
        read(history(tmp_path, ["2026-01-05"], [text]))


def test_the_decimal_separator_is_decided_per_column(tmp_path):
    # "1,234" alone is 1234 or 1.234: another amount of the column settles it
    assert [d.amount for d in read(history(tmp_path, ["2026-01-05"] * 2, ["1,234", "7,5"]))] == [1.234, 7.5]
    assert [d.amount for d in read(history(tmp_path, ["2026-01-05"] * 2, ["1,234", "7.5"]))] == [1234.0, 7.5]
    path = history(tmp_path, ["2026-01-05"] * 3, ["1,234", "2,500", "900"])
    with pytest.raises(ScenarioError) as err:
        read(path)
    assert str(err.value) == (f"{path}:2: amount (column 'amount'): amounts like '1,234' can be read as 1.234 or "
                              "1234, and no amount in the column settles whether '.' or ',' is the decimal separator; "
                              "give --decimal . (1,234.56) or --decimal , (1.234,56)")
    assert [d.amount for d in read(path, decimal=",")] == [1.234, 2.5, 900.0]
    assert [d.amount for d in read(path, decimal=".")] == [1234.0, 2500.0, 900.0]
    mixed = history(tmp_path, ["2026-01-05"] * 3, ["1,234.50", "900", "1.234,50"])
    with pytest.raises(ScenarioError) as err:
        read(mixed)
    assert ("amount (column 'amount') holds amounts with a decimal point ('1,234.50', line 2) and with a decimal "
            "comma ('1.234,50', line 4); expected one convention in a column") in str(err.value)
    with pytest.raises(ScenarioError) as err:
        read(mixed, decimal=".")
    assert ("h.csv:4: amount (column 'amount'): expected an amount with '.' as its decimal separator, as the "
            "column's others") in str(err.value)


def test_amounts_in_two_currencies_are_refused_not_added(tmp_path):
    """A new user's export with a fifth of its amounts in EUR and the rest in USD read as one
    currency, without a word; two signs or two codes are now refused, naming both."""
    days = ["2026-01-05"] * 5
    path = history(tmp_path, days, ["1,200.50 USD", "900 EUR", "1,000.00 USD", "USD 40", "80 eur"])
    with pytest.raises(ScenarioError) as err:
        read(path)
    assert str(err.value) == (
        f"{path}:3: amount (column 'amount') holds amounts in more than one currency: 'USD' (3 amounts, the first "
        "'1,200.50 USD' on line 2) and 'EUR' (2 amounts, the first '900 EUR' on line 3); forecaster adds amounts as "
        "they are written, so convert them to one currency first (or forecast each currency's deals from a "
        "history of their own)")
    with pytest.raises(ScenarioError, match="more than one currency: '\\$' .* and '€'"):
        read(history(tmp_path, days, ["$5", "$6", "$7", "€8", "9"]))
    # one currency however written (a sign beside its code, US$ and USD, a bare number) is read
    same = read(history(tmp_path, days, ["$1,200.50", "USD 900", "US$1,000.00", "40", "80 usd"]))
    assert [d.amount for d in same] == [1200.5, 900.0, 1000.0, 40.0, 80.0]
    assert [d.amount for d in read(history(tmp_path, days[:2], ["1.234,56 €", "€ 7"]))] == [1234.56, 7.0]
    # a sign beside a code (A$ and AUD), and letters that are no ISO code (kr, net), are read
    assert [d.amount for d in read(history(tmp_path, days[:4], ["A$ 1,000.50", "AUD 2,000.00", "5 kr", "AUD 7"]))] \
        == [1000.5, 2000.0, 5.0, 7.0]
    assert [d.amount for d in read(history(tmp_path, days[:2], ["1000 net", "USD 5"]))] == [1000.0, 5.0]
    # a row --drop-bad-rows leaves out names no currency: its date before 1900 drops it
    dropped = history(tmp_path, ["2026-01-05", "0025-01-05", *days], ["USD 5", "EUR 9", "USD 6", *["USD 1"] * 5])
    assert [d.amount for d in read(dropped, drop_bad_rows=True, warnings=[])] == [5.0, 6.0, 1.0, 1.0, 1.0, 1.0]


def test_the_order_of_day_and_month_is_decided_per_column(tmp_path):
    us = read(history(tmp_path, ["11/27/2024", "01/02/2025"], [1, 1]))
    assert [d.entered[0] for d in us] == [date(2024, 11, 27), date(2025, 1, 2)]
    eu = read(history(tmp_path, ["27/11/2024", "01/02/2025"], [1, 1]))
    assert [d.entered[0] for d in eu] == [date(2024, 11, 27), date(2025, 2, 1)]
    # each column its own: created day first, closed month first (two systems' exports joined)
    both = read(history(tmp_path, ["27.11.2024", "01.02.2025"], [1, 1], closed=["12/30/2024", "03/04/2025"]))
    assert [(d.entered[0], d.closed) for d in both] == [(date(2024, 11, 27), date(2024, 12, 30)),
                                                        (date(2025, 2, 1), date(2025, 3, 4))]
    # the same day and month either way needs no decision; times are ignored; ISO mixes in
    odd = read(history(tmp_path, ["05/05/2025 14:05", "2025-01-03T08:00:00Z", "7/7/2025, 2:05 PM"], [1, 1, 1]))
    assert [d.entered[0] for d in odd] == [date(2025, 5, 5), date(2025, 1, 3), date(2025, 7, 7)]


def test_a_column_whose_dates_leave_the_order_open_asks_for_date_format(tmp_path):
    path = history(tmp_path, ["2025-01-01", "01/02/2025", "03/04/2025"], [1, 1, 1])
    with pytest.raises(ScenarioError) as err:
        read(path)
    assert str(err.value) == (f"{path}:3: lead (column 'lead'): dates like '01/02/2025' can be read day first or "
                              "month first, and no date in the column settles which (none has a day above 12); give "
                              "--date-format %d/%m/%Y (day first) or --date-format %m/%d/%Y (month first)")
    assert [d.entered[0] for d in read(path, date_format="%d/%m/%Y")] == [
        date(2025, 1, 1), date(2025, 2, 1), date(2025, 4, 3)]
    assert [d.entered[0] for d in read(path, date_format="%m/%d/%Y")] == [
        date(2025, 1, 1), date(2025, 1, 2), date(2025, 3, 4)]
    with pytest.raises(ScenarioError, match="h.csv:3: lead \\(column 'lead'\\): expected a date as --date-format "
                                            "%d.%m.%Y \\(e.g. 27.11.2024\\) or ISO \\(YYYY-MM-DD\\); found '01/02/2025'"):
        read(path, date_format="%d.%m.%Y")
    mixed = history(tmp_path, ["27/11/2024", "11/28/2024"], [1, 1])
    with pytest.raises(ScenarioError) as err:
        read(mixed)
    assert ("lead (column 'lead') holds dates day first ('27/11/2024', line 2) and month first ('11/28/2024', "
            "line 3); expected one order in a column: give --date-format") in str(err.value)


def test_dates_in_no_default_form_point_to_date_format_which_reads_them_with_their_time(tmp_path):
    """Month names and two-digit years were 20 lines of 'expected a date (...)' and a count,
    with no word of --date-format, which reads them."""
    path = history(tmp_path, ["Jan 28, 2024 10:18 AM", "Feb 3, 2024 2:05 PM"], [1, 1])
    with pytest.raises(ScenarioError) as err:
        read(path)
    assert "h.csv:2: lead (column 'lead'): expected a date (2024-11-27," in str(err.value)
    assert str(err.value).endswith("dates written another way are read with --date-format, the file's format in "
                                   "Python's strftime codes: e.g. --date-format '%m/%d/%y' for 11/27/24, '%b %d, %Y' "
                                   "for Nov 27, 2024, '%d-%b-%Y' for 27-Nov-2024 (a time after the date is ignored)")
    assert [d.entered[0] for d in read(path, date_format="%b %d, %Y")] == [date(2024, 1, 28), date(2024, 2, 3)]
    short = history(tmp_path, ["1/4/24 10:18", "11/27/24T09:00:00Z"], [1, 1])
    assert [d.entered[0] for d in read(short, date_format="%m/%d/%y")] == [date(2024, 1, 4), date(2024, 11, 27)]
    with pytest.raises(ScenarioError) as err:  # a format given that reads none: no second hint
        read(path, date_format="%d.%m.%Y")
    assert "dates written another way" not in str(err.value)
    with pytest.raises(ScenarioError) as err:  # an impossible date is no other form: --drop-bad-rows's hint
        read(history(tmp_path, ["2024-02-30", "2024-03-01"], [1, 1]))
    assert "dates written another way" not in str(err.value) and "--drop-bad-rows leaves out" in str(err.value)


def test_a_date_format_that_reads_no_date_is_a_usage_error(tmp_path):
    path = history(tmp_path, ["2025-01-01"], [1])
    for bad in ("%d/%m", "%Y", "dd/mm/yyyy"):
        with pytest.raises(ValueError, match="expected a date format with the day, month and year"):
            read(path, date_format=bad)
    with pytest.raises(ValueError, match="--decimal expects . or ,"):
        read(path, decimal=";")


# --- hostile inputs ----------------------------------------------------------------------------------

def test_a_query_returning_too_many_rows_is_stopped_not_read(tables, monkeypatch):
    monkeypatch.setattr(sources, "MAX_ROWS", 1000)
    start = time.perf_counter()
    with pytest.raises(ScenarioError) as err:
        deals_of(tables["duckdb"], query="SELECT d.* FROM deals d, range(250000000)")  # 10^11 rows
    assert time.perf_counter() - start < 20
    assert str(err.value) == (f"{tables['duckdb']} (--query): the query returns more than 1,000 rows, the most a "
                              "history may have (leave out the oldest deals, or those of other teams)")


def test_a_query_running_too_long_is_stopped(tables, monkeypatch):
    monkeypatch.setattr(sources, "QUERY_TIMEOUT", 1)
    start = time.perf_counter()
    with pytest.raises(ScenarioError, match="the query returns nothing within 1 s; stopped"):
        deals_of(tables["duckdb"], query="SELECT count(*) AS Id FROM range(1000000000000) a")
    assert time.perf_counter() - start < 20


def test_a_query_cannot_write_and_must_be_given(tables):
    with pytest.raises(ScenarioError, match="cannot be read as a DuckDB query: .*read-only"):
        deals_of(tables["duckdb"], query="DROP TABLE deals")
    assert len(deals_of(tables["duckdb"], query="SELECT * FROM deals")) == len(ROWS)
    with pytest.raises(ScenarioError, match="cannot be read as a DuckDB query: Parser Error"):
        deals_of(tables["duckdb"], query="SELEKT 1")
    with pytest.raises(ValueError, match="is a DuckDB database: give --query .*; its tables: deals"):
        deals_of(tables["duckdb"])
    with pytest.raises(ValueError, match="--query reads a database .* is a Parquet file, read whole"):
        deals_of(tables["parquet"], query="SELECT 1")


def test_a_query_never_reaches_for_the_network(tables):
    # an extension DuckDB would download (no internet here: it would hang or fail late)
    with pytest.raises(ScenarioError, match="cannot be read as a DuckDB query"):
        deals_of(tables["duckdb"], query="SELECT * FROM read_xlsx('x.xlsx')")


@pytest.mark.parametrize("name, content, found", [
    ("h.xlsx", b"Id,StageName\n1,Closed Won\n", "h.xlsx: is named .xlsx but is not an XLSX workbook: it is not a zip "
                                                "archive; found other content"),
    ("h.parquet", b"Id,StageName\n", "is named .parquet but is not a Parquet file: it does not start with PAR1"),
    ("h.duckdb", b"\x00" * 64, "is named .duckdb but is not a DuckDB database: it has no DuckDB header"),
    ("h.xlsx", b"PK\x03\x04" + b"\x00" * 100, "h.xlsx: is not an XLSX workbook: it starts as a zip archive but "
                                              "cannot be read as one"),
    ("h.parquet", b"PAR1" + b"\x07" * 100, "h.parquet: cannot be read as a Parquet file:"),
    ("h.csv", bytes(range(256)) * 4, "h.csv:1: is not text: it holds a NUL byte (byte 0)"),
])
def test_a_file_that_is_not_what_it_says_is_refused(tmp_path, name, content, found):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ScenarioError) as err:
        deals_of(tmp_path / name)
    assert found in str(err.value)


def test_a_zip_that_is_no_workbook_and_a_zip_bomb_are_refused(tmp_path, monkeypatch):
    with zipfile.ZipFile(tmp_path / "a.xlsx", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ScenarioError, match="is a zip archive, not an XLSX workbook \\(no xl/workbook.xml in it\\)"):
        deals_of(tmp_path / "a.xlsx")
    ht.write_xlsx(ROWS, tmp_path / "b.xlsx")
    monkeypatch.setattr(sources, "MAX_UNZIPPED", 10_000)
    with pytest.raises(ScenarioError, match="b.xlsx: unzips to .* MiB, more than the 0 MiB a history workbook may "
                                            "hold"):
        deals_of(tmp_path / "b.xlsx")


def test_a_workbook_too_long_is_stopped(tmp_path, monkeypatch):
    ht.write_xlsx(ROWS, tmp_path / "h.xlsx")
    monkeypatch.setattr(sources, "MAX_ROWS", 100)
    with pytest.raises(ScenarioError, match="h.xlsx: holds more than 100 rows, the most a history may have"):
        deals_of(tmp_path / "h.xlsx")


def test_a_row_too_long_is_refused_in_every_format(tmp_path):
    rows = [list(r) for r in ROWS[:3]]
    rows[1][1] = "x" * (sources.MAX_RECORD_CHARS + 1)
    with pytest.raises(ScenarioError, match="row 2 holds 1,048,6.. characters, more than the 1,048,576 a row may have"):
        deals_of(ht.write_parquet([tuple(r) for r in rows], tmp_path / "h.parquet"))


def test_a_url_is_shown_without_its_password():
    assert sources.shown_name("postgresql://ana:s3cr%40t@db.example:5432/crm?sslmode=require") == \
        "postgresql://ana:***@db.example:5432/crm?sslmode=require"
    assert sources.shown_name("postgres://db/crm?user=ana&password=s3cret") == \
        "postgres://db/crm?user=ana&password=***"
    assert sources.is_url("postgresql://db/crm") and not sources.is_url(Path("postgresql:/x"))


def test_a_server_that_does_not_answer_is_a_clear_error_within_the_timeout(monkeypatch):
    monkeypatch.setattr(sources, "CONNECT_TIMEOUT", 2)
    for url in ("postgresql://ana:s3cret@127.0.0.1:1/crm",        # nothing listens
                "postgresql://ana:s3cret@10.255.255.1:5432/crm"):  # no route, or a black hole
        start = time.perf_counter()
        with pytest.raises(ScenarioError) as err:
            load_deals(url, "salesforce", query="SELECT * FROM deals")
        assert time.perf_counter() - start < 15
        text = str(err.value)
        assert text.startswith(f"{url.replace('s3cret', '***')}: cannot connect: ") and "s3cret" not in text


def test_a_url_without_psycopg_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    with pytest.raises(ScenarioError) as err:
        load_deals("postgresql://ana:s3cret@db/crm", "salesforce", query="SELECT 1")
    assert str(err.value) == ("postgresql://ana:***@db/crm: is a PostgreSQL URL, which needs psycopg: "
                              "pip install 'forecaster[postgres]'")
    with pytest.raises(ValueError, match="is a database: give --query"):
        load_deals("postgresql://ana:s3cret@db/crm", "salesforce")


# --- a query reads the database's tables, nothing else ---------------------------------------------

@pytest.mark.parametrize("query", [
    "COPY (SELECT 'gone' AS x) TO '{d}/precious.txt' (HEADER false)",
    "COPY deals TO '{d}/leak.csv'",
    "SELECT * FROM read_csv('{d}/precious.txt')",
    "INSTALL httpfs",
    "LOAD httpfs",
    "ATTACH '{d}/other.duckdb' AS other",
    "EXPORT DATABASE '{d}/export'",
    "SET enable_external_access = true",
])
def test_a_query_may_not_touch_other_files_extensions_or_databases(tables, tmp_path, query):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    with pytest.raises(ScenarioError) as err:
        deals_of(tables["duckdb"], query=query.format(d=tmp_path))
    assert "the query may only read the database's tables" in str(err.value)
    assert precious.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]
    # and the database itself is still read, as are Parquet files
    assert len(deals_of(tables["duckdb"], query="SELECT * FROM deals WHERE Amount >= 0 OR Amount IS NULL")) == len(ROWS)
    assert len(deals_of(tables["parquet"])) == len(ROWS)


# --- a CSV file separated by semicolons --------------------------------------------------------------

def test_a_semicolon_separated_csv_with_decimal_commas_is_read(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("deal_id;lead;outcome;closed;amount\n"
                    "d0;15.01.2026;won;20.03.2026;15.271,58\n"
                    "\n"
                    "d1;16.01.2026;won;21.03.2026;1.000,00\n")
    warnings: list[str] = []
    deals = read(path, warnings=warnings)
    assert [(d.deal_id, d.amount, d.closed) for d in deals] == [("d0", 15271.58, date(2026, 3, 20)),
                                                               ("d1", 1000.0, date(2026, 3, 21))]
    assert warnings == [f"{path}: read as semicolon-separated (its header has no comma)"]
    # line numbers stay those of the file
    path.write_text("deal_id;lead;outcome;closed;amount\n\nd0;15.01.2026;won;20.03.2026;-5\n")
    with pytest.raises(ScenarioError, match=r"h.csv:3: amount"):
        read(path)
    # a tab works alike; a header of one column is read as one column
    path.write_text("deal_id\tlead\toutcome\tclosed\tamount\nd0\t2026-01-05\twon\t2026-03-20\t12,5\n")
    assert [d.amount for d in read(path)] == [12.5]
    assert sources.delimiter("Id\n1\n") == "," and sources.delimiter("a,b;c;d\n") == ","


# --- a workbook whose first sheet is not the history -----------------------------------------------

def test_a_workbook_whose_first_sheet_is_notes_names_the_sheet_that_has_the_columns(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "Notes"
    wb.active.append(["This export was made on 2026-06-30"])
    ws = wb.create_sheet("deals")
    ws.append(list(ht.COLUMNS))
    for row in ROWS[:5]:
        ws.append(list(row))
    wb.create_sheet("Lookup").append(["code", "label"])
    wb.save(tmp_path / "h.xlsx")
    with pytest.raises(ScenarioError) as err:
        deals_of(tmp_path / "h.xlsx")
    assert ("its columns are: This export was made on 2026-06-30 (read its first sheet, 'Notes'; its other sheets: "
            "'deals', 'Lookup'; sheet 'deals' has the columns: move it first in the workbook, or save it on its own)"
            ) in str(err.value)


def test_a_header_below_title_rows_and_a_near_column_name_are_pointed_at(tmp_path):
    """A report exported with its title above the header said only 'its columns are: Deals by
    pipeline'; a mistyped --segment-column had no 'did you mean', unlike validate."""
    path = tmp_path / "t.csv"
    path.write_text("Deals by pipeline\n\nDeal ID,Create Date,Deal Stage,Close Date,Amount,Deal owner\n"
                    "1,2025-01-02,closedwon,2025-01-20,100,ann\n")
    with pytest.raises(ScenarioError) as err:
        load_deals(path, "hubspot", None)
    assert str(err.value).endswith("; line 3 holds 'Deal ID', 'Create Date', 'Deal Stage', 'Close Date': if that "
                                   "is the real header (a report's title rows above it), delete the rows above it")
    path.write_text("Deal ID,Create Date,Deal Stage,Close Date,Amount,Deal owner\n"
                    "1,2025-01-02,closedwon,2025-01-20,100,ann\n")
    with pytest.raises(ScenarioError) as err:
        load_deals(path, "hubspot", None, segment_column="Owner")
    assert str(err.value).endswith("lacks segment (column 'Owner'); its columns are: Deal ID, Create Date, Deal "
                                   "Stage, Close Date, Amount, Deal owner. Map a name to another column with --column "
                                   "NAME=SOURCE; did you mean 'Deal owner' for 'Owner'?")
    with pytest.raises(ScenarioError) as err:  # nothing near: no guess
        load_deals(path, "hubspot", None, segment_column="Region")
    assert "did you mean" not in str(err.value) and "holds" not in str(err.value)
