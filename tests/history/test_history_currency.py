"""The currency of a history's amounts: a ``currency`` column (Salesforce's CurrencyIsoCode,
a CRM's "Currency") or the amounts' own marks. One currency becomes the calibrated
scenario's ``currency`` and the backtest's unit; two in the column are refused, as two in
the amounts were: a tenth of the amounts in EUR among USD ones were added as one sum, with
no word, and every report said "revenue" without a unit (a finance user's trial)."""
from __future__ import annotations

import csv
import json
from datetime import date, timedelta

import numpy as np
import yaml
from click.testing import CliRunner

from forecaster.cli import main
from forecaster.history.readers import load_deals

AS_OF = date(2026, 6, 30)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def export(path, currency=lambda i: "USD", amount=lambda i, x: f"{x:.2f}", n=600, seed=4):
    """A one-stage export known on AS_OF with a Currency column (``currency(i)``, None: no
    column) and amounts written by ``amount(i, value)``."""
    rng = np.random.default_rng(seed)
    head = ["Deal", "Created", "Stage", "Closed", "Amount"] + (["Currency"] if currency(0) is not None else [])
    rows = [head]
    for i in range(n):
        created = AS_OF - timedelta(days=int(rng.integers(20, 540)))
        end = created + timedelta(days=int(rng.lognormal(np.log(30), 0.6)))
        stage = "open" if end > AS_OF else ("won" if rng.random() < 0.35 else "lost")
        row = [f"d{i}", created.isoformat(), stage, "" if stage == "open" else end.isoformat(),
               amount(i, float(rng.lognormal(9, 0.5)))]
        rows.append(row + ([currency(i)] if currency(0) is not None else []))
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


MAP = ("--stages", "deal", "--column", "deal_id=Deal", "--column", "deal=Created", "--column", "outcome=Stage",
       "--column", "closed=Closed")


def test_one_currency_in_its_column_labels_the_scenario(tmp_path):
    export(tmp_path / "h.csv")
    res = invoke("calibrate", tmp_path / "h.csv", *MAP, "--as-of", AS_OF, "-o", tmp_path / "o" / "s.yaml")
    assert res.exit_code == 0, res.output
    scenario = yaml.safe_load((tmp_path / "o" / "s.yaml").read_text())
    assert scenario["currency"] == "USD" and list(scenario).index("currency") == 2  # after name, description


def test_two_currencies_in_the_column_are_refused_naming_both(tmp_path):
    export(tmp_path / "h.csv", currency=lambda i: "EUR" if i % 10 == 3 else "USD")
    res = invoke("calibrate", tmp_path / "h.csv", *MAP, "--as-of", AS_OF, "-o", tmp_path / "o" / "s.yaml")
    assert res.exit_code == 2 and not (tmp_path / "o").exists()
    assert "currency (column 'Currency') names more than one currency for the amounts: 'USD' (" in res.output
    assert "and 'EUR' (" in res.output and "convert them to one currency first" in res.output


def test_a_currency_on_rows_without_an_amount_is_not_a_second_currency(tmp_path):
    export(tmp_path / "h.csv", currency=lambda i: "EUR" if i % 10 == 3 else "USD",
           amount=lambda i, x: "" if i % 10 == 3 else f"{x:.2f}")
    found: dict = {}
    load_deals(tmp_path / "h.csv", "generic", "deal", mapping=[m for m in MAP[2:] if m != "--column"],
               found=found)
    assert found["currency"] == "USD"


def test_the_amounts_own_code_or_sole_sign_names_the_currency_and_a_shared_sign_names_none(tmp_path):
    cases = {"code": (lambda i, x: f"EUR {x:,.2f}", "EUR"), "euro sign": (lambda i, x: f"€{x:,.2f}", "EUR"),
             "dollar sign": (lambda i, x: f"${x:,.2f}", None), "plain": (lambda i, x: f"{x:.2f}", None)}
    for name, (amount, expected) in cases.items():
        path = tmp_path / f"{name}.csv"
        export(path, currency=lambda i: None, amount=amount)
        found: dict = {}
        load_deals(path, "generic", "deal", mapping=[m for m in MAP[2:] if m != "--column"], found=found)
        assert found["currency"] == expected, name


def test_the_backtest_reports_revenue_in_the_history_currency(tmp_path):
    export(tmp_path / "h.csv", currency=lambda i: "GBP", n=900)
    res = invoke("backtest", tmp_path / "h.csv", *MAP, "--cutoffs", "2026-03-31", "--months", "2", "--trials", "200",
                 "--out", tmp_path / "bt", "--export", "csv")
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "bt" / "backtest.json").read_text())
    assert result["currency"] == "GBP"
    header = (tmp_path / "bt" / "backtest-tables" / "averages.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    assert "[GBP" in header and "[currency" not in header


def test_amounts_read_from_a_converted_column_are_not_questioned_by_the_deals_own_currencies(tmp_path):
    """Salesforce's multi-currency export: ``Amount`` in each deal's ``Currency`` and ``Amount
    (converted)`` in one. Amounts read from the converted column were refused for the plain
    column's two currencies (a reviewer's finding); that column names the deals' own
    currencies, not the converted amounts': it is not read unless mapped."""
    path = tmp_path / "h.csv"
    path.write_text("deal_id,lead,outcome,closed,Amount,Currency,Amount (converted)\n"
                    "d1,2026-01-05,won,2026-01-20,1000,EUR,1080\nd2,2026-01-10,won,2026-01-25,500,USD,500\n")
    found: dict = {}
    deals, _, _ = load_deals(path, "generic", "lead", mapping=["amount=Amount (converted)"], found=found)
    assert [d.amount for d in deals] == [1080, 500] and found["currency"] is None
    try:
        load_deals(path, "generic", "lead")
    except Exception as exc:  # the deals' own amounts, in two currencies: refused, with the way out
        assert "names more than one currency" in str(exc) and "--column amount=" in str(exc)
    else:
        raise AssertionError("two currencies in the amounts read were not refused")
