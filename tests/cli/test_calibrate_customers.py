"""calibrate --transactions / --subscriptions: the after-sale models fitted from customer logs
as known on the as-of date, written as the segment's ``customer`` block and the installed
base (NAME-customers.csv) beside the calibrated scenario, which ``forecaster validate`` reads."""
from __future__ import annotations

import csv
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from forecaster.history.customers import CUSTOMER_MONTH_DAYS, add_months

AS_OF = date(2025, 6, 30)


def _customer_blocks_supported() -> bool:
    """Whether the scenario format (forecaster/scenario/schema.py) reads a ``customer`` block
    and a ``customers`` file yet (format v2, section A: being implemented beside this)."""
    import tempfile

    import forecaster as fc

    base = {"name": "t", "start": "2026-01-01", "end": "2026-01-31", "stages": ["s"],
            "segments": {"a": {"leads": {"per_day": 1.0}, "deal_value": 1,
                               "funnel": {"s": {"convert": 0.5, "days": 10}}}}}
    fc.scenario_from_dict(base)  # a v1 file: any failure here is this probe's, not the format's
    doc = {**base, "customers": {"file": "c.csv"},
           "segments": {"a": {**base["segments"]["a"], "customer": {"subscription": {"renew": 0.9}}}}}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c.csv").write_text("customer_id,segment,term_end\nc1,a,2026-01-15\n")
        try:
            fc.scenario_from_dict(doc, base_dir=tmp)
        except fc.ScenarioError:
            return False
    return True


waiting_for_schema = pytest.mark.xfail(not _customer_blocks_supported(), strict=True,
                                       reason="scenario format for customer blocks not yet in schema")


def _history(path: Path, months: int = 6, leads: int = 60, seed: int = 1) -> None:
    """A small deal history (one stage, lead), January to June 2025."""
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(months):
        first = date(2025, m + 1, 1)
        for k in range(rng.poisson(leads)):
            entered = first + timedelta(days=int(rng.integers(0, 28)))
            closed = entered + timedelta(days=int(rng.exponential(12)))
            done = closed <= AS_OF
            rows.append({"deal_id": f"{m}-{k}", "lead": entered.isoformat(),
                         "outcome": ("won" if rng.random() < 0.4 else "lost") if done else "open",
                         "closed": closed.isoformat() if done else "", "amount": "100"})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _subscriptions(path: Path, n: int = 400, renew: float = 0.9, kappa: float = 20.0, seed: int = 2) -> int:
    """A monthly subscription log in a billing system's words (Renewed/Cancelled/Active),
    exported three months after the as-of date; returns the subscribers active on as-of."""
    rng = np.random.default_rng(seed)
    theta = rng.beta((1 - renew) * kappa, renew * kappa, n)
    export, active = date(2025, 9, 30), 0
    lines = ["account,start,end,status,mrr"]
    for i in range(n):
        won = AS_OF - timedelta(days=int(rng.integers(0, 730)))
        for k in range(1000):
            s, e = add_months(won, k), add_months(won, k + 1)
            active += s <= AS_OF < e
            if e > export:
                lines.append(f"A{i},{s},{e},Active,99")
                break
            churn = rng.random() < theta[i]
            lines.append(f"A{i},{s},{e},{'Cancelled' if churn else 'Renewed'},99")
            if churn:
                break
    path.write_text("\n".join(lines) + "\n")
    return active


def _transactions(path: Path, n: int = 600, seed: int = 3) -> None:
    """A shop's purchases (BG/NBD customers: per_month 0.5, dropout 0.25), 2024 to 2025,
    with purchases after the as-of date in the log."""
    rng = np.random.default_rng(seed)
    lam, p = rng.gamma(1.0, 0.5, n), rng.beta(1.0, 3.0, n)
    origin, end = date(2024, 1, 1), date(2025, 9, 30)
    lines = ["customer_id,date,amount"]
    for i in range(n):
        t, repeat = rng.uniform(0, 12), False
        while True:
            day = origin + timedelta(days=int(t * CUSTOMER_MONTH_DAYS))
            if day > end:
                break
            lines.append(f"C{i},{day},{rng.integers(10, 100)}")
            if repeat and rng.random() < p[i]:  # dropout after a repeat purchase
                break
            t, repeat = t + rng.exponential(1 / lam[i]), True
    path.write_text("\n".join(lines) + "\n")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "forecaster", *map(str, args)], capture_output=True, text=True)


SUBSCRIPTION_MAP = ["--subscription-column", "customer_id=account", "--subscription-column", "term_start=start",
                    "--subscription-column", "term_end=end", "--subscription-column", "outcome=status",
                    "--subscription-column", "value=mrr", "--term-outcome", "renewed=Renewed",
                    "--term-outcome", "churned=Cancelled", "--term-outcome", "active=Active"]


@waiting_for_schema
def test_subscriptions_become_the_customer_block_and_the_installed_base(tmp_path):
    _history(tmp_path / "h.csv")
    active = _subscriptions(tmp_path / "terms.csv")
    out = tmp_path / "out" / "q3.yaml"
    r = _run("calibrate", tmp_path / "h.csv", "--stages", "lead", "--as-of", AS_OF, "-o", out,
             "--subscriptions", tmp_path / "terms.csv", *SUBSCRIPTION_MAP)
    assert r.returncode == 0, r.stderr
    assert "After the sale, as known on 2025-06-30: all renews with probability" in r.stdout
    doc = yaml.safe_load(out.read_text())
    sub = doc["segments"]["all"]["customer"]["subscription"]
    assert sub["term_months"] == 1 and sub["expansion"] == 0.0
    assert abs(sub["renew"]["mean"] - 0.9) < 0.03 and sub["renew"]["dist"] == "beta"
    assert doc["customers"] == {"file": "q3-customers.csv"}
    with open(tmp_path / "out" / "q3-customers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == active
    assert all(row["segment"] == "all" and row["term_end"] > AS_OF.isoformat() >= row["term_start"]
               and row["value"] == "99.0" for row in rows)
    assert "all, subscriptions: sBG over 400 subscriptions" in out.read_text()  # the counts behind it, as comments
    v = _run("validate", out)
    assert v.returncode == 0, v.stderr


@waiting_for_schema
def test_transactions_become_the_repeat_block_and_the_installed_base(tmp_path):
    _history(tmp_path / "h.csv")
    _transactions(tmp_path / "t.csv")
    out = tmp_path / "q3.yaml"
    r = _run("calibrate", tmp_path / "h.csv", "--stages", "lead", "--as-of", AS_OF, "-o", out,
             "--transactions", tmp_path / "t.csv", "--segment", "all")
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(out.read_text())
    rep = doc["segments"]["all"]["customer"]["repeat"]
    assert set(rep) >= {"per_month", "dropout", "value"}
    assert 0.25 < rep["per_month"]["mean"] < 1.0 and rep["per_month"]["dist"] == "gamma"
    assert 0.1 < rep["dropout"]["mean"] < 0.45
    with open(tmp_path / "q3-customers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(row["last_purchase"] <= AS_OF.isoformat() and row["term_end"] == "" for row in rows)
    assert all((int(row["purchases"]) == 0) == (row["first_purchase"] == row["last_purchase"]) for row in rows)
    v = _run("validate", out)
    assert v.returncode == 0, v.stderr


def test_customer_logs_refused_with_a_reason_and_nothing_written(tmp_path):
    """An unknown --segment, one segment in both logs, a log's segment the scenario lacks, a
    malformed map: exit 2, a message, no traceback, no file."""
    _history(tmp_path / "h.csv")
    _subscriptions(tmp_path / "terms.csv", n=50)
    _transactions(tmp_path / "t.csv", n=50)
    out = tmp_path / "x.yaml"
    base = ["calibrate", tmp_path / "h.csv", "--stages", "lead", "--as-of", AS_OF, "-o", out]
    r = _run(*base, "--subscriptions", tmp_path / "terms.csv", *SUBSCRIPTION_MAP, "--segment", "smb")
    assert r.returncode == 2 and "--segment 'smb' is not a segment of the calibrated scenario" in r.stderr
    r = _run(*base, "--subscriptions", tmp_path / "terms.csv", *SUBSCRIPTION_MAP, "--transactions", tmp_path / "t.csv")
    assert r.returncode == 2 and "either renew a contract or buy again" in r.stderr
    (tmp_path / "seg.csv").write_text("customer_id,date,segment\nc1,2025-01-01,enterprise\n")
    r = _run(*base, "--transactions", tmp_path / "seg.csv")
    assert r.returncode == 2 and "names segment 'enterprise', not in the scenario" in r.stderr
    r = _run(*base, "--subscriptions", tmp_path / "terms.csv", "--term-outcome", "won=Renewed")
    assert r.returncode == 2 and "expected OUTCOME=VALUES" in r.stderr
    r = _run(*base, "--transactions", tmp_path / "t.csv", "--subscription-column", "value=mrr")
    assert r.returncode == 2 and "--subscription-column maps --subscriptions' columns or values" in r.stderr
    r = _run(*base, "--subscriptions", tmp_path / "terms.csv")
    assert r.returncode == 2 and "lacks customer_id (column 'customer_id')" in r.stderr
    assert not out.exists() and not (tmp_path / "x-customers.csv").exists()
    assert "Traceback" not in r.stderr
