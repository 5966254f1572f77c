"""calibrate's choice of optional parts on the command line: --mechanism, --report, and
the in-history coverage it prints."""
from __future__ import annotations

import csv
import subprocess
import sys
from datetime import date, timedelta

import numpy as np
import yaml


def _history(path, months=12, leads=150, p=0.4, seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(months):
        first = date(2025 + m // 12, m % 12 + 1, 1)
        for k in range(rng.poisson(leads)):
            entered = first + timedelta(days=int(rng.integers(0, 28)))
            won = rng.random() < p
            closed = entered + timedelta(days=int(rng.exponential(12)))
            done = closed <= date(2025, 12, 31)
            rows.append({"deal_id": f"{m}-{k}", "lead": entered.isoformat(),
                         "outcome": ("won" if won else "lost") if done else "open",
                         "closed": closed.isoformat() if done else "", "amount": "100"})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _run(*args):
    return subprocess.run([sys.executable, "-m", "forecaster", *map(str, args)], capture_output=True, text=True)


def test_calibrate_reports_its_evidence_and_obeys_forced_parts(tmp_path):
    _history(tmp_path / "h.csv")
    out = tmp_path / "out" / "q1.yaml"
    r = _run("calibrate", tmp_path / "h.csv", "--stages", "lead", "--as-of", "2025-12-31", "-o", out,
             "--report", "--mechanism", "shocks=off", "--mechanism", "trend=on")
    assert r.returncode == 0, r.stderr
    assert "in-history P10-P90 coverage of monthly won deals" in r.stdout
    text = out.read_text()
    assert "# Evidence for the optional parts (in-history walk-forward):" in text
    doc = yaml.safe_load(text)
    assert "shocks" not in doc  # forced off
    report = (tmp_path / "out" / "q1-calibration.md").read_text()
    assert "| optional part | fitted | kept |" in report and "## Evidence" in report
    assert "| shocks |" in report and "| no |" in report.split("| shocks |")[1].split("\n")[0]


def test_a_malformed_mechanism_is_a_usage_error(tmp_path):
    _history(tmp_path / "h.csv", months=3)
    r = _run("calibrate", tmp_path / "h.csv", "--stages", "lead", "--as-of", "2025-03-31", "-o",
             tmp_path / "x.yaml", "--mechanism", "capacty=on")
    assert r.returncode == 2 and "expected NAME=on or NAME=off" in r.stderr and "capacity" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.yaml").exists()


def test_the_evidence_says_why_a_part_was_not_added_and_what_the_honesty_check_added():
    from types import SimpleNamespace

    from forecaster.cli.calibrate import evidence_lines
    from forecaster.history.selection import spread_said

    ev = {"cutoffs": ["2025-11-30", "2025-10-31"], "months": 3, "score_base": 0.2, "score": 0.21, "widen": 1.5,
          "steps": [{"kept": [], "score": 0.2},
                    {"tried": {"speed": 0.19, "trend": 0.25}, "best": "speed", "added": False,
                     "why_not": "lowers the score by 5.0%, but at only 1 of the 2 month ends where it changes the "
                                "forecast (2 asked), and without the one where it helps most (2025-11-30) by -1.2%: "
                                "one month end is not evidence"}],
          "selected": [], "kept": ["shocks"], "coverage_before_widening": 0.5, "coverage_p10_p90": 0.83}
    lines = evidence_lines(SimpleNamespace(evidence=ev))
    assert lines[2] == ("tried +speed 0.1900, +trend 0.2500; best speed: not added, it lowers the score by 5.0%, but "
                        "at only 1 of the 2 month ends where it changes the forecast (2 asked), and without the one "
                        "where it helps most (2025-11-30) by -1.2%: one month end is not evidence")
    assert lines[3] == ("the honesty check added shocks: with the parts chosen above, P10-P90 covered 50% of the "
                        "inner months' won deals, short of 80%")
    assert lines[4].startswith("kept: shocks (0.2100); shared spread (shocks) x1.5;")
    assert spread_said(("capacity",), 0.75) == "shared spread (capacity cv) x0.75"
    assert spread_said(("shocks", "capacity"), 2.0) == "shared spread (shocks and capacity cv) x2"
    assert spread_said(("trend",), 1.0) == "no shared spread to scale"
