"""--export with v2's outputs: counts by stage in their own table in leads, cycle days in days,
coverage and stage values in the currency or as fractions, and the funnel of a segment with
moves with its visits and win probabilities."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig") as f:
        return next(csv.reader(f))


def test_the_new_outputs_export_with_their_units(tmp_path):
    text = (ROOT / "scenarios" / "buying-journeys.yaml").read_text().replace("trials: 20000", "trials: 200")
    text += "outputs: {stage_entries: true, losses: true, cycle_days: true, stage_value: true, coverage: true}\n"
    (tmp_path / "j.yaml").write_text(text)
    (tmp_path / "buying-journeys-pipeline.csv").write_text(
        (ROOT / "scenarios" / "buying-journeys-pipeline.csv").read_text())
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "forecaster", "run", str(tmp_path / "j.yaml"), "--out", str(out),
                    "--export", "csv", "--quiet"], check=True, capture_output=True, timeout=600)
    tables = out / "tables"
    stages = header(tables / "stages.csv")
    assert "stage_entries.consensus_mean [leads]" in stages and "losses.problem_p90 [leads]" in stages
    assert not (tables / "after_sale.csv").exists()  # no customers: no after-sale table
    funnel = header(tables / "funnel.csv")
    assert "visits_per_new_lead [visits]" in funnel and "win_probability [fraction]" in funnel
    other = header(tables / "other.csv")
    assert "pipeline_value [EUR]" in other and "win_rate_mean [fraction]" in other
    assert "break_even_undefined [trials]" in other and "count [deals]" in other and "p50 [days]" in other
    assert "vendors_value_mean [EUR]" in other and "vendors_win_probability_mean [fraction]" in other


def test_commission_extras_have_a_table_of_their_own_in_the_currency(tmp_path):
    """The draw balance and the clawbacks after the end (v2 D.6) are money: a declared table of
    their own with the currency in each header, not the ``other`` table's unitless columns."""
    text = (ROOT / "scenarios" / "saas-commission-plan.yaml").read_text()
    (tmp_path / "c.yaml").write_text(text)
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "forecaster", "run", str(tmp_path / "c.yaml"), "--out", str(out),
                    "--trials", "200", "--export", "csv", "--quiet"], check=True, capture_output=True, timeout=600)
    with (out / "tables" / "commission_extras.csv").open(encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    currency = "EUR" if "currency: EUR" in text else "USD"
    assert rows[0][0] == "field" and f"mean [{currency}]" in rows[0] and f"p90 [{currency}]" in rows[0]
    assert [r[0] for r in rows[1:]] == ["draw_balance", "clawback_after_end"]
    other = out / "tables" / "other.csv"
    assert not other.exists() or "draw_balance" not in other.read_text(encoding="utf-8-sig")
