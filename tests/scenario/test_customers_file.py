"""The installed base's CSV (v2 A.5): read_customers, and the calendar's add_months (v2 0.5).

Valid files of both kinds with their defaults, each error A.5 lists (every message names the
file, the line, the column and what was expected), every problem of a file at once, and
hostile files treated as the pipeline's are (tests/scenario/test_hostile_input.py).
"""
from __future__ import annotations

import hashlib
from datetime import date, timedelta

import pytest

from forecaster.errors import Problem
from forecaster.scenario import customers
from forecaster.scenario.customers import add_months, read_customers
from forecaster.scenario.distributions import Distribution
from forecaster.scenario.model import (
    Customer,
    InstalledCustomer,
    Leads,
    Repeat,
    Segment,
    Stage,
    Subscription,
)
from forecaster.scenario.validation import INVALID

F = Distribution.fixed
START = date(2027, 1, 1)
LINE = 21  # line of customers.file in the scenario
SECRET = "hunter2-s3cret"


def segment(customer: Customer | None = None) -> Segment:
    return Segment(Leads(per_month=F(10)), {"lead": Stage(F(0.5), F(3))}, F(1000), customer)


SEGMENTS = {
    "smb": segment(Customer(subscription=Subscription(F(0.9), term_months=1))),
    "ent": segment(Customer(subscription=Subscription(F(0.8), term_months=12, concentration=20))),
    "web": segment(Customer(repeat=Repeat(per_month=F(0.5), dropout=F(0.2)))),
    "oneoff": segment(Customer()),
    "plain": segment(),
}
REPS = ("ana", "ben")
SUB_HEADER = "customer_id,segment,term_end,value,renewals,term_start,owner\n"
REP_HEADER = "customer_id,segment,first_purchase,last_purchase,purchases,owner\n"
ALL_HEADER = "customer_id,segment,term_end,value,renewals,term_start,first_purchase,last_purchase,purchases,owner\n"
SUB_ROW = "C1,smb,2027-01-15,120,3,,\n"
REP_ROW = "R1,web,2026-01-10,2026-11-30,4,\n"


def read(tmp_path, data, *, segments=None, reps=REPS, name="customers.csv", digest=None):
    path = tmp_path / name
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return read_customers(path, name, start=START, segments=SEGMENTS if segments is None else segments,
                          reps=reps, line=LINE, digest=digest)


def problems_of(tmp_path, data, **kw) -> list[str]:
    """The file's problems rendered as the scenario's error shows them; none is a traceback."""
    found, problems = read(tmp_path, data, **kw)
    assert problems, "expected problems"
    assert found == () or all(isinstance(c, InstalledCustomer) for c in found)
    for p in problems:
        assert isinstance(p, Problem) and p.path == "customers.file" and p.line == LINE
    return [p.render("s.yaml") for p in problems]


def one_problem(tmp_path, data, **kw) -> str:
    messages = problems_of(tmp_path, data, **kw)
    assert len(messages) == 1, messages
    return messages[0]


def good(tmp_path, data, **kw) -> tuple[InstalledCustomer, ...]:
    found, problems = read(tmp_path, data, **kw)
    assert problems == [], [p.render("s.yaml") for p in problems]
    return found


# --- add_months (v2 rule 0.5) ----------------------------------------------------------------

@pytest.mark.parametrize("d, n, expected", [
    (date(2027, 1, 31), 1, date(2027, 2, 28)),     # the spec's examples
    (date(2027, 3, 31), -1, date(2027, 2, 28)),
    (date(2027, 1, 15), 0, date(2027, 1, 15)),
    (date(2027, 1, 31), 2, date(2027, 3, 31)),     # anchored: not chained through February
    (date(2028, 1, 31), 1, date(2028, 2, 29)),     # leap year
    (date(2028, 2, 29), 12, date(2029, 2, 28)),
    (date(2028, 2, 29), 48, date(2032, 2, 29)),
    (date(2027, 12, 31), 1, date(2028, 1, 31)),    # across years, both ways
    (date(2027, 1, 31), -2, date(2026, 11, 30)),
    (date(2027, 5, 31), -12, date(2026, 5, 31)),
    (date(2027, 1, 1), -13, date(2025, 12, 1)),
    (date(2027, 3, 15), 12, date(2028, 3, 15)),    # A.2's L = 366 example
    (date(2027, 1, 1), 12 * 100 + 5, date(2127, 6, 1)),
])
def test_add_months(d, n, expected):
    assert add_months(d, n) == expected


def test_add_months_follows_the_day_of_month_across_a_whole_year():
    for n in range(-30, 30):
        for day in range(1, 32):
            d = date(2027, 1, day)
            got = add_months(d, n)
            assert (got.year * 12 + got.month) - (d.year * 12 + d.month) == n
            assert got.day == day or (got.day < day and (got + timedelta(days=1)).day == 1)


def test_add_months_out_of_the_calendar_raises_overflow():
    with pytest.raises(OverflowError):
        add_months(date(9999, 12, 1), 1)
    with pytest.raises(OverflowError):
        add_months(date(1, 1, 31), -1)
    assert add_months(date(9999, 11, 30), 1) == date(9999, 12, 30)


def test_no_other_add_months_with_this_rule_exists():
    """history.baselines.add_months steps between firsts of months: not rule 0.5."""
    from forecaster.history.baselines import add_months as month_steps
    assert month_steps(date(2027, 1, 31), 1) == date(2027, 2, 1) != add_months(date(2027, 1, 31), 1)


# --- valid files -----------------------------------------------------------------------------

def test_subscribers_with_values_and_defaults(tmp_path):
    data = (SUB_HEADER
            + "C1,smb,2027-01-15,120.5,3,,ana\n"
            + "C2,smb,2027-01-01,,,,\n"                   # term_end = start; value drawn; 0 renewals
            + "C3,ent,2027-06-30,24000,0,2026-06-30,ben\n"
            + "C4,ent,2027-06-30,0,1.0,,\n")                  # a value of 0; a whole count written 1.0
    c1, c2, c3, c4 = good(tmp_path, data)
    assert c1 == InstalledCustomer("C1", "smb", owner="ana", term_end=date(2027, 1, 15), value=120.5, renewals=3)
    assert c2 == InstalledCustomer("C2", "smb", term_end=START, value=None, renewals=0, term_start=None)
    assert c3.term_start == date(2026, 6, 30) and c3.value == 24000.0 and c3.owner == "ben"
    assert c4.value == 0.0 and c4.renewals == 1 and isinstance(c4.renewals, int) and c4.term_start is None
    assert all(c.first_purchase is None and c.last_purchase is None and c.purchases == 0 for c in (c1, c2, c3, c4))


def test_repeat_buyers_with_values(tmp_path):
    data = (REP_HEADER
            + "R1,web,2026-01-10,2026-11-30,4,ben\n"
            + "R2,web,2026-12-31,2026-12-31,0,\n"      # one purchase, the day before start
            + "R3,web,2026-05-05,2026-05-05,2,\n")     # repeat purchases on the first day
    r1, r2, r3 = good(tmp_path, data)
    assert r1 == InstalledCustomer("R1", "web", owner="ben", first_purchase=date(2026, 1, 10),
                                   last_purchase=date(2026, 11, 30), purchases=4)
    assert (r2.first_purchase, r2.last_purchase, r2.purchases, r2.owner) == (date(2026, 12, 31),) * 2 + (0, None)
    assert r3.purchases == 2
    assert all(c.term_end is None and c.value is None and c.renewals == 0 for c in (r1, r2, r3))


def test_a_mixed_file_in_any_column_order_with_extra_columns(tmp_path):
    data = ("notes,purchases,segment,last_purchase,term_end,customer_id,first_purchase,CRM id\n"
            "good one,,smb,,2027-02-01,C1,,x-1\n"
            "likes shoes,1,web,2026-10-01,,R1,2026-02-01,x-2\n")
    c1, r1 = good(tmp_path, data)
    assert (c1.customer_id, c1.segment, c1.term_end, c1.value, c1.renewals) == ("C1", "smb", date(2027, 2, 1), None, 0)
    assert (r1.customer_id, r1.first_purchase, r1.purchases) == ("R1", date(2026, 2, 1), 1)


def test_only_the_columns_a_rows_kind_needs_are_required(tmp_path):
    assert len(good(tmp_path, "customer_id,segment,term_end\nC1,smb,2027-01-20\n")) == 1
    assert len(good(tmp_path, "customer_id,segment,first_purchase,last_purchase,purchases\n"
                              "R1,web,2026-01-01,2026-01-01,0\n")) == 1


def test_a_header_alone_is_an_empty_installed_base(tmp_path):
    assert good(tmp_path, SUB_HEADER) == ()
    assert good(tmp_path, "customer_id,segment\n") == ()


def test_blank_lines_and_blank_cells_around_values_are_ignored(tmp_path):
    data = SUB_HEADER + "\n" + " C1 , smb , 2027-01-15 , 120 ,  ,  , \n" + ",,,,,,\n"
    (c1,) = good(tmp_path, data)
    assert (c1.customer_id, c1.segment, c1.value, c1.renewals, c1.owner) == ("C1", "smb", 120.0, 0, None)


def test_default_term_start_may_be_exactly_start(tmp_path):
    # a yearly term ending a year after start began on start
    (c,) = good(tmp_path, "customer_id,segment,term_end\nE1,ent,2028-01-01\n")
    assert c.term_start is None


def test_owner_needs_no_team_when_absent(tmp_path):
    assert good(tmp_path, SUB_HEADER + SUB_ROW, reps=())[0].owner is None


# --- each error of A.5 -----------------------------------------------------------------------

def test_the_specs_example_a_cell_of_the_other_kind(tmp_path):
    data = REP_HEADER.strip() + ",term_end\n" + "\n" * 11 + "C-0012,web,2026-01-01,2026-01-01,0,,2027-03-01\n"
    message = one_problem(tmp_path, data)
    assert message.startswith("s.yaml:21: customers.file customers.csv line 13: customer 'C-0012' has term_end but "
                              "segment web has no customer.subscription"), message
    assert "leave term_end empty" in message
    message = one_problem(tmp_path, ALL_HEADER + "C1,smb,2027-01-20,,,,,,2,\n")
    assert "customers.csv line 2: customer 'C1' has purchases but segment smb has no customer.repeat" in message
    assert "its customers are subscribers, with the columns term_end, value, renewals, term_start" in message


def test_a_segment_without_the_block(tmp_path):
    message = one_problem(tmp_path, SUB_HEADER + "C1,plain,2027-03-01,,,,\n")
    assert ("customers.csv line 2: customer 'C1' has term_end but segment plain has no customer.subscription "
            "(it has no customer block); segments with customer.subscription or customer.repeat: smb, ent, web"
            ) in message
    message = one_problem(tmp_path, REP_HEADER + "R1,oneoff,2026-01-01,2026-01-01,0,\n")
    assert "customer 'R1' has first_purchase but segment oneoff has no customer.repeat (its customer block " \
           "has neither subscription nor repeat: its customers are one-off)" in message
    message = one_problem(tmp_path, "customer_id,segment\nX,plain\n")
    assert "customers.csv line 2: customer 'X' is in segment plain, but it has no customer block; an installed " \
           "customer is a subscriber or a repeat buyer" in message


def test_an_unknown_or_empty_segment(tmp_path):
    message = one_problem(tmp_path, SUB_HEADER + "C1,smbb,2027-03-01,,,,\n")
    assert ("customers.csv line 2: segment 'smbb' is not a segment of the scenario (did you mean 'smb'?); "
            "segments: smb, ent, web, oneoff, plain") in message
    message = one_problem(tmp_path, SUB_HEADER + "C1,,2027-03-01,,,,\n")
    assert "customers.csv line 2: segment is empty; expected a segment with customer.subscription or " \
           "customer.repeat: smb, ent, web" in message


def test_a_missing_column_for_the_rows_kind_is_reported_once(tmp_path):
    data = "customer_id,segment,value\nC1,smb,10\nC2,smb,20\nR1,web,\n"
    messages = problems_of(tmp_path, data)
    assert len(messages) == 2, messages
    assert ("customers.csv line 2: customer 'C1' is a subscriber (segment smb has customer.subscription), which "
            "needs the column term_end; the header lacks it") in messages[0]
    assert ("customers.csv line 4: customer 'R1' is a repeat buyer (segment web has customer.repeat), which needs "
            "the columns first_purchase, last_purchase, purchases; the header lacks them") in messages[1]
    message = one_problem(tmp_path, "customer_id,segment,Term End\nC1,smb,2027-03-01\n")
    assert "the header lacks it (the header has 'Term End': column names are exact, in lower case" in message


@pytest.mark.parametrize("row, fragment", [
    ("C1,smb,2026-12-31,,,,", "line 2: term_end must be on or after start (2027-01-01): it is the first day after "
                              "the current term, on which the next renewal is decided; got 2026-12-31"),
    ("C1,smb,,,,,", "line 2: term_end is empty; expected the day the next renewal is decided, on or after start "
                    "(2027-01-01)"),
    ("C1,smb,2027-W05-1,,,,", "line 2: term_end must be an ISO date (YYYY-MM-DD), the day the next renewal is "
                              "decided, on or after start (2027-01-01); got '2027-W05-1'"),
    ("C1,smb,2027-02-30,,,,", "term_end must be an ISO date (YYYY-MM-DD)"),
    ("C1,smb,01/03/2027,,,,", "got '01/03/2027'"),
    ("C1,ent,2027-06-30,,,2027-06-30,", "line 2: term_start must be before term_end (2027-06-30); got 2027-06-30"),
    ("C1,ent,2027-06-30,,,2027-07-01,", "line 2: term_start must be before term_end (2027-06-30); got 2027-07-01"),
    ("C1,ent,2027-06-30,,,June 2026,", "line 2: term_start must be an ISO date (YYYY-MM-DD), the current term's "
                                       "first day, before term_end; got 'June 2026'"),
    ("C1,smb,2027-01-20,-5,,,", "line 2: value must be a number >= 0, the current term's value, or empty (drawn "
                                "from the segment's deal_value); got '-5'"),
    ("C1,smb,2027-01-20,nan,,,", "value must be a number >= 0"),
    ("C1,smb,2027-01-20,inf,,,", "got 'inf'"),
    ("C1,smb,2027-01-20,1e999,,,", "got '1e999'"),
    ("C1,smb,2027-01-20,1_000,,,", "got '1_000'"),
    ('C1,smb,2027-01-20,"1,000",,,', "got '1,000'"),
    ("C1,smb,2027-01-20,2e15,,,", "line 2: value must be at most 1e+15, the largest amount the engine adds exactly"),
    ("C1,smb,2027-01-20,,-1,,", "line 2: renewals must be a whole number >= 0 (renewals survived so far; empty: 0); "
                                "got '-1'"),
    ("C1,smb,2027-01-20,,2.5,,", "renewals must be a whole number >= 0 (renewals survived so far; empty: 0); "
                                 "got '2.5'"),
    ("C1,smb,2027-01-20,,two,,", "got 'two'"),
    ("C1,smb,2027-01-20,,1e10,,", "line 2: renewals must be at most 1,000,000,000 (renewals survived so far)"),
], ids=["term_end before start", "term_end empty", "term_end week date", "term_end no such day",
        "term_end not ISO", "term_start = term_end", "term_start after term_end", "term_start not a date",
        "negative value", "nan value", "inf value", "overflowing value", "underscored value", "thousands comma",
        "value past the engine's limit", "negative renewals", "fractional renewals", "renewals in words",
        "huge renewals"])
def test_subscriber_cells(tmp_path, row, fragment):
    message = one_problem(tmp_path, SUB_HEADER + row + "\n")
    assert message.startswith("s.yaml:21: customers.file customers.csv line 2: "), message
    assert fragment in message, message


@pytest.mark.parametrize("row, fragment", [
    ("R1,web,2026-01-01,2027-01-01,3,", "line 2: last_purchase must be before start (2027-01-01): the history ends "
                                        "before the forecast begins; got 2027-01-01"),
    ("R1,web,2026-06-01,2026-05-31,3,", "line 2: first_purchase must be on or before last_purchase (2026-05-31); "
                                        "got 2026-06-01"),
    ("R1,web,2026-01-01,2026-05-31,0,", "line 2: purchases is 0 but first_purchase (2026-01-01) and last_purchase "
                                        "(2026-05-31) differ; with no repeat purchase the last purchase is the first"),
    ("R1,web,2026-01-01,2026-05-31,-1,", "line 2: purchases must be a whole number >= 0 (repeat purchases after the "
                                         "first, so far); got '-1'"),
    ("R1,web,2026-01-01,2026-05-31,0.5,", "purchases must be a whole number >= 0"),
    ("R1,web,2026-01-01,2026-05-31,,", "line 2: purchases is empty; expected a whole number >= 0 (repeat purchases "
                                       "after the first, so far)"),
    ("R1,web,,2026-05-31,2,", "line 2: first_purchase is empty; expected the day of the first purchase, before start "
                              "(2027-01-01)"),
    ("R1,web,2026-01-01,,2,", "line 2: last_purchase is empty; expected the day of the last purchase, on or after "
                              "first_purchase and before start (2027-01-01)"),
    ("R1,web,2027-02-01,,2,", "first_purchase must be before start (2027-01-01); got 2027-02-01"),
    ("R1,web,2026-01-01,yesterday,2,", "line 2: last_purchase must be an ISO date (YYYY-MM-DD)"),
], ids=["last on start", "first after last", "0 purchases, two dates", "negative purchases",
        "fractional purchases", "purchases empty", "first empty", "last empty", "first after start",
        "last not a date"])
def test_repeat_buyer_cells(tmp_path, row, fragment):
    messages = problems_of(tmp_path, REP_HEADER + row + "\n")
    assert all(m.startswith("s.yaml:21: customers.file customers.csv line 2: ") for m in messages), messages
    assert any(fragment in m for m in messages), messages


def test_duplicate_ids_name_both_lines(tmp_path):
    message = one_problem(tmp_path, SUB_HEADER + SUB_ROW + "C2,smb,2027-02-01,,,,\n" + SUB_ROW)
    assert "customers.csv line 4: customer_id 'C1' repeats line 2; customer ids are unique" in message
    message = one_problem(tmp_path, SUB_HEADER + ",smb,2027-02-01,,,,\n")
    assert "customers.csv line 2: customer_id is empty" in message


def test_owner_not_a_rep_or_without_a_team(tmp_path):
    message = one_problem(tmp_path, SUB_HEADER + "C1,smb,2027-02-01,,,,anna\n")
    assert "customers.csv line 2: owner 'anna' is not a rep of the team (did you mean 'ana'?); reps: ana, ben" in message
    message = one_problem(tmp_path, SUB_HEADER + "C1,smb,2027-02-01,,,,ana\n", reps=())
    assert "customers.csv line 2: owner 'ana' is given but the scenario has no team; add team.reps or leave owner " \
           "empty" in message


def test_a_customers_file_without_any_customer_block(tmp_path):
    message = one_problem(tmp_path, SUB_HEADER + SUB_ROW, segments={"plain": segment()})
    assert message == ("s.yaml:21: customers.file names 'customers.csv', an installed base, but no segment has a "
                       "customer block; give a segment customer.subscription or customer.repeat, or remove customers")
    # one-off customer blocks only: each row says why, and that no segment takes installed customers
    message = one_problem(tmp_path, SUB_HEADER + SUB_ROW.replace("smb", "oneoff"), segments={"oneoff": segment(Customer())})
    assert "no segment of this scenario has customer.subscription or customer.repeat" in message


def test_the_current_term_must_hold_start(tmp_path):
    """Not in A.5's list: a current term that begins after start would recognise more than its value."""
    message = one_problem(tmp_path, SUB_HEADER + "C1,ent,2027-09-30,,,2027-02-01,\n")
    assert "line 2: term_start must be on or before start (2027-01-01): the current term holds start; got 2027-02-01" \
           in message
    message = one_problem(tmp_path, SUB_HEADER + "C1,smb,2027-03-01,,,,\n")
    assert ("line 2: term_end 2027-03-01 is more than term_months (1) after start (2027-01-01), so the current "
            "term's default start, 2027-02-01, is after start; give term_start") in message
    assert good(tmp_path, SUB_HEADER + "C1,smb,2027-03-01,,,2026-12-01,\n")[0].term_start == date(2026, 12, 1)


def test_an_invalid_segment_is_left_to_the_scenarios_own_message(tmp_path):
    segments = {**SEGMENTS, "broken": INVALID}
    assert good(tmp_path, SUB_HEADER + "C1,broken,2027-03-01,,,,\n" + SUB_ROW.replace("C1", "C2"),
                segments=segments)[0].customer_id == "C2"


# --- the file as a whole ---------------------------------------------------------------------

def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    data = (ALL_HEADER
            + "C1,smb,2026-12-01,-3,,,,,,zed\n"           # term_end, value, owner
            + "C1,web,,,,,2026-03-01,2027-03-01,1.5,\n"    # duplicate id, last_purchase, purchases
            + "C3,nowhere,,,,,,,,\n"                       # segment
            + "C4,smb,2027-01-20,10,2,,,,,ben\n")          # fine
    found, problems = read(tmp_path, data)
    text = "\n".join(p.render("s.yaml") for p in problems)
    assert [c.customer_id for c in found] == ["C4"]  # the good rows' customers, as the pipeline's deals
    for fragment in ("line 2: term_end must be on or after start", "line 2: value must be a number >= 0",
                     "line 2: owner 'zed' is not a rep", "line 3: customer_id 'C1' repeats line 2",
                     "line 3: last_purchase must be before start", "line 3: purchases must be a whole number",
                     "line 4: segment 'nowhere' is not a segment"):
        assert fragment in text, text
    assert len(problems) == 7, text


def test_problems_past_the_reported_number_are_counted(tmp_path):
    data = SUB_HEADER + "".join(f"C{i},smb,2026-01-01,,,,\n" for i in range(40))
    messages = problems_of(tmp_path, data)
    assert len(messages) == customers.MAX_REPORTED + 1
    assert messages[-1].endswith("customers.csv: and 15 more problems like these")


def test_unreadable_files(tmp_path, monkeypatch):
    path = tmp_path / "nowhere.csv"
    _, problems = read_customers(path, "nowhere.csv", start=START, segments=SEGMENTS, reps=REPS, line=LINE)
    assert problems[0].render("s.yaml").startswith(
        "s.yaml:21: customers.file names 'nowhere.csv', which does not exist (looked for ")
    (tmp_path / "dir.csv").mkdir()
    _, problems = read_customers(tmp_path / "dir.csv", "dir.csv", start=START, segments=SEGMENTS, reps=REPS, line=LINE)
    assert problems[0].message == "names 'dir.csv', which is a folder; expected a CSV file"

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(customers, "open_input", denied)
    assert one_problem(tmp_path, SUB_HEADER + SUB_ROW) == \
        "s.yaml:21: customers.file names 'customers.csv', which cannot be read: Permission denied"


def test_a_fifo_does_not_hang(tmp_path):
    import os
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(tmp_path / "f.csv")
    _, problems = read_customers(tmp_path / "f.csv", "f.csv", start=START, segments=SEGMENTS, reps=REPS, line=LINE)
    assert problems[0].message == "names 'f.csv', which is a FIFO (named pipe); expected a CSV file"


@pytest.mark.parametrize("data, fragment", [
    ("", "customers.csv is empty or starts with a blank line; expected a header row with customer_id, segment"),
    ("\n" + SUB_HEADER + SUB_ROW, "is empty or starts with a blank line"),
    ("id,segment,term_end\nC1,smb,2027-03-01\n", "customers.csv lacks the column customer_id; its header is: 'id', "
                                                 "'segment', 'term_end'"),
    ("Customer ID,Segment,Term End\n", "lacks the columns customer_id, segment; its header is: 'Customer ID', "
                                       "'Segment', 'Term End' (column names are exact, in lower case with underscores: "
                                       "customer_id, segment, term_end)"),
    (SUB_HEADER.replace(",", ";") + SUB_ROW.replace(",", ";"), "customers.csv is separated by semicolons, not commas"),
    (SUB_HEADER.replace(",", "\t") + SUB_ROW.replace(",", "\t"), "is separated by tabs, not commas"),
    (SUB_HEADER.strip() + ",value\n" + SUB_ROW.strip() + ",5\n", "names the column value more than once in its header"),
    (SUB_HEADER + "C1,smb,2027-01-15,1,000,,,\n", "customers.csv line 2: has 8 cells but the header has 7 columns "
                                                  "(a comma inside a value that is not quoted?)"),
    (SUB_HEADER + 'C1,smb,2027-01-15,"' + "1" * 200_000 + "\n", "customers.csv line 2 cannot be read as CSV"),
    (SUB_HEADER + f"C1,\x1b[2J{'s' * 500},2027-01-15,,,,\n", "segment '\\x1b[2Jsssss"),
], ids=["empty", "blank first line", "no customer_id", "near-miss header", "semicolons", "tabs", "duplicate column",
        "unquoted comma", "unclosed quote", "escape codes in a cell"])
def test_file_problems(tmp_path, data, fragment):
    messages = problems_of(tmp_path, data)
    text = "\n".join(messages)
    assert fragment in text, text
    assert all(len(m) < 2000 and "\x1b" not in m for m in messages)


SHADOW = f"root:$6$salt${SECRET}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
NOT_CSV = [
    ("binary with NUL", b"\x7fELF\x02\x01\x01\x00\x00" + SECRET.encode() + b"\x00", "line 1 holds NUL bytes"),
    ("PNG", b"\x89PNG\r\n\x1a\n" + SECRET.encode(), "is not a CSV text file in UTF-8: line 1 holds the byte 0x89"),
    ("shadow-like text", SHADOW, "is not a customers CSV: its first line is not a header"),
    ("prose with a comma", f"Dear Sam, the password is {SECRET}\n", "is not a customers CSV"),
    ("NUL on a later line", SUB_HEADER + SUB_ROW + f"C2,sm\x00b,{SECRET},,,,\n", "line 3 holds NUL bytes"),
    ("Windows-1252 on a later line", (SUB_HEADER + SUB_ROW + f"C2,smbé,{SECRET},,,,\n").encode("cp1252"),
     "line 3 holds the byte 0xe9"),
    ("UTF-16", (SUB_HEADER + SUB_ROW).encode("utf-16"), "is UTF-16 text, not a UTF-8 CSV text file"),
]


@pytest.mark.parametrize("data, fragment", [c[1:] for c in NOT_CSV], ids=[c[0] for c in NOT_CSV])
def test_a_file_that_is_not_a_csv_is_never_echoed(tmp_path, data, fragment):
    message = one_problem(tmp_path, data)
    assert message.startswith("s.yaml:21: customers.file customers.csv "), message
    assert fragment in message
    assert SECRET not in message and "root:" not in message and "$6$" not in message and "ELF" not in message


def test_a_long_header_cell_is_cut_and_escaped(tmp_path):
    message = one_problem(tmp_path, "customer_id," + "x" * 5000 + "\x1b,seg\n")
    assert "x" * 100 not in message and "\x1b" not in message and "(5001 characters)" in message


def test_size_and_line_length_are_bounded(tmp_path, monkeypatch):
    assert customers.MAX_CUSTOMERS_BYTES == 2 ** 30 and customers.MAX_LINE_BYTES == 2 ** 20
    message = one_problem(tmp_path, SUB_HEADER + "C1,smb,2027-01-15," + "9" * (2 ** 20 + 10) + ",,,\n")
    assert "customers.csv line 2 is longer than 1 MiB; is it a CSV text file?" in message
    monkeypatch.setattr(customers, "MAX_CUSTOMERS_BYTES", 100)
    message = one_problem(tmp_path, SUB_HEADER + SUB_ROW * 10)
    assert "customers.csv is larger than 100 bytes, the most a customers file may hold" in message


@pytest.mark.parametrize("data", [
    SUB_HEADER + SUB_ROW,
    "\ufeff" + SUB_HEADER + SUB_ROW,                             # a BOM (Excel's CSV UTF-8)
    (SUB_HEADER + SUB_ROW).replace("\n", "\r\n"),                # CRLF
    (SUB_HEADER + SUB_ROW).rstrip("\n"),                         # no newline at the end
    SUB_HEADER + '"C1","smb","2027-01-15","120","3","",""\n',    # every cell quoted
], ids=["plain", "BOM", "CRLF", "no trailing newline", "quoted cells"])
def test_good_files_in_every_spelling_read_alike_and_hash_their_bytes(tmp_path, data):
    digest = hashlib.sha256()
    (c1,) = good(tmp_path, data, digest=digest)
    assert c1 == InstalledCustomer("C1", "smb", term_end=date(2027, 1, 15), value=120.0, renewals=3)
    assert digest.hexdigest() == hashlib.sha256(data.encode()).hexdigest()


def test_quoted_cells_may_hold_commas_and_line_breaks_and_lines_count_lines(tmp_path):
    data = (SUB_HEADER + '"Acme, Inc.",smb,2027-01-15,"1200",,,\n'
            + '"multi\nline id",smb,2027-01-15,,,,\n'
            + "C3,smb,2026-01-01,,,,\n")
    found, problems = read(tmp_path, data)
    assert [p.message for p in problems] == [
        "customers.csv line 5: term_end must be on or after start (2027-01-01): it is the first day after the "
        "current term, on which the next renewal is decided; got 2026-01-01"]
    data = data.replace("2026-01-01", "2027-01-01")
    ids = [c.customer_id for c in good(tmp_path, data)]
    assert ids == ["Acme, Inc.", "multi\nline id", "C3"]
