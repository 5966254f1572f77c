"""Histories of a few deals a month (an enterprise team's handful of opportunities) are
read at their rates, not at what their noise makes of them.

Two readings were biased where counts are small: each monthly cohort's conversion, read
under a flat prior on its log-odds, put a cohort with no win at about -5 (the grid's
floor is -9), so the drift model's level of tiny cohorts fell far below the pooled rate
(a true 0.25 read as 0.15 at 2 leads a month); and each month's arrivals weighed by
their own count (and empty months left out), so the months that happened to bring more
counted more (the level of 2 leads a month read 25% high).
"""
from __future__ import annotations

import json
import math
from datetime import date, timedelta

import numpy as np
import pytest
from conftest import synthetic_benchmark
from scipy.stats import binom

from forecaster.history.calibrate import calibrate
from forecaster.history.estimate import _arrival_series, arrival_level, steady_start
from forecaster.history.fitting import LogTimeLaw, StageData, cohort_conversion
from forecaster.history.parts import Calibration
from forecaster.history.readers import Deal

LAW = LogTimeLaw.of(np.r_[np.zeros(5), np.linspace(0.1, 1.0, 30)], 200)
"""A pooled time to convert whose every conversion shows within 40 days."""


def _resolved(n: int, c: int) -> StageData:
    """A cohort of ``n`` deals, all 200 days old and resolved: ``c`` won on day 10, the rest lost."""
    return StageData(np.full(c, 10.0), np.full(n - c, 10.0), np.zeros(0), ages=np.full(n, 200.0),
                     other_ages=np.full(n - c, 200.0))


def _pooled_reading(n: int, p: float, centre: float | None) -> float:
    """The drift model's inverse-variance average of a cohort's reading (log-odds), over the
    binomial chance of each count of wins among ``n`` deals converting with ``p``: exact, no
    sampling."""
    num = den = 0.0
    for c in range(n + 1):
        e = cohort_conversion(_resolved(n, c), LAW, lambda a: np.zeros_like(np.asarray(a, float)), centre)
        if math.isfinite(e.var_logit_p):
            w = binom.pmf(c, n, p) / e.var_logit_p
            num, den = num + w * e.logit_p, den + w
    return num / den


@pytest.mark.parametrize("n", [2, 4, 10])
def test_tiny_cohorts_average_to_their_rate_read_around_the_pooled_one(n):
    truth = math.log(0.25 / 0.75)
    assert abs(_pooled_reading(n, 0.25, centre=truth) - truth) < 0.06
    if n <= 4:  # under the flat prior: far below (-0.69 at 2 deals, -0.21 at 4; +0.04 at 10)
        assert _pooled_reading(n, 0.25, centre=None) < truth - 0.15


def test_a_cohort_off_the_centre_is_still_read_at_its_own_rate():
    """The centre is a working prior, divided out: a cohort converting at 0.5 where the pool
    says 0.25 reads 0.5 (within 0.08 at 10 deals, 0.01 at 100)."""
    centre = math.log(0.25 / 0.75)
    assert abs(_pooled_reading(10, 0.5, centre)) < 0.08
    assert abs(_pooled_reading(100, 0.5, centre)) < 0.01


@pytest.mark.parametrize("pooled, n, won", [(0.01, 10, 1), (0.01, 10, 2), (0.01, 5, 2), (0.25, 200, 0)])
def test_a_cohort_far_from_the_pool_is_read_by_its_own_posterior(pooled, n, won):
    """Far from the centre a cohort's likelihood is a slope there, and the site extrapolated
    it (2 wins of 10 at a pooled 1% read log-odds +6.5, 1 of 10 +2.0; 0 of 200 at a pooled 25%
    read -4.3 +- 0.4, its own posterior -7.2 +- 1.2): the flat-prior reading is kept."""
    still_open = lambda a: np.zeros_like(np.asarray(a, float))  # noqa: E731
    centred = cohort_conversion(_resolved(n, won), LAW, still_open, centre=math.log(pooled / (1 - pooled)))
    flat = cohort_conversion(_resolved(n, won), LAW, still_open)
    assert (centred.logit_p, centred.var_logit_p) == (flat.logit_p, flat.var_logit_p)


@pytest.mark.parametrize("centre", [math.log(1e-9 / (1 - 1e-9)), -9.5, 12.0])
def test_a_centre_past_the_grid_still_reads_the_cohort(centre):
    """A pooled p near 0 or 1 (log-odds -20.7 at calibration's 1e-9 floor) put the whole
    working prior on the grid's last point, where the site says nothing: the centre is
    held inside the grid, and a site that says nothing falls back on the flat-prior
    reading, so every cohort still reads finite (either guard alone keeps this)."""
    still_open = lambda a: np.zeros_like(np.asarray(a, float))  # noqa: E731
    for won in (0, 3, 100):
        e = cohort_conversion(_resolved(100, won), LAW, still_open, centre=centre)
        assert math.isfinite(e.var_logit_p) and math.isfinite(e.logit_p)


def test_a_large_cohort_reads_as_under_the_flat_prior():
    data = _resolved(400, 100)
    still_open = lambda a: np.zeros_like(np.asarray(a, float))  # noqa: E731
    centred = cohort_conversion(data, LAW, still_open, centre=math.log(0.25 / 0.75) + 0.5)
    flat = cohort_conversion(data, LAW, still_open)
    assert abs(centred.logit_p - flat.logit_p) < 0.02 * math.sqrt(flat.var_logit_p)
    assert centred.var_logit_p == pytest.approx(flat.var_logit_p, rel=0.02)


def test_a_month_weighs_by_the_rate_not_by_its_own_count():
    """Months bringing 1, 7 and 0 deals in turn: each of the last 12 is read (an empty month
    too, as log(1/2 / days)) and all weigh by the window's rate, not by their own counts."""
    deals, counts = [], [1, 7, 0] * 5
    for k, n in enumerate(counts):
        first = date(2024 + k // 12, 1 + k % 12, 1)
        deals += [Deal(f"{k}-{i}", "all", [first + timedelta(days=i)], "lost", first + timedelta(days=i + 3), None)
                  for i in range(n)]
    y, v = _arrival_series(deals, date(2025, 3, 31))
    # the last DRIFT_MONTHS (12) months: April 2024 to March 2025
    n = np.array(counts[3:], dtype=float)
    days = np.array([30, 31, 30, 31, 31, 30, 31, 30, 31, 31, 28, 31], dtype=float)
    np.testing.assert_allclose(y, np.log((n + 0.5) / days))
    np.testing.assert_allclose(v, 1 / (n.sum() / days.sum() * days + 0.5))


def _level_offsets(as_of: date, rate: float = 3.0, histories: int = 100) -> np.ndarray:
    """The arrivals' latest level (log) minus the truth's, over steady histories of ``rate``
    leads a month known on ``as_of``."""
    syn = synthetic_benchmark()
    off = []
    for seed in range(histories):
        h = syn.make_history("steady", seed, 24, leads_per_month=rate)
        level = arrival_level(h.deals, as_of, Calibration({}, []), steady_start(h.deals, as_of))
        off.append(level.m - math.log(rate / syn.AVG_MONTH_DAYS))
    return np.array(off)


@pytest.mark.parametrize("day", [30, 1, 5, 15])
def test_the_lead_level_of_three_a_month_is_its_truth(day):
    """100 steady histories of 3 leads a month: the arrivals' latest level (log) averages the
    truth within 0.08, 4 standard errors (measured +0.027 on 30 November, -0.001 / -0.001 /
    +0.023 on the 1st, 5th, 15th). It was +0.13 to +0.16 when each month weighed by its own
    count and empty months were left out; and +0.14 on the 1st of a month when a month cut
    short by the as-of date was read however few leads it could bring (the log of a third
    of a lead's count is +0.75 off): a month expected to bring under MIN_MONTH_COUNT is not
    read."""
    off = _level_offsets(date(2024, 11, day))
    assert abs(off.mean()) < 0.08, off.mean()


def test_two_leads_a_month_are_calibrated_at_their_conversion():
    """60 steady histories of 2 leads a month, 25% won: the calibrated conversion (the drift
    model's latest level, a median) averages 0.25 within 0.045, about 3 standard errors (0.227
    measured; it averaged 0.150 under the flat prior). (A wrong average of small cohorts is
    what this and the exact checks above catch; at 10 deals a cohort the flat prior's average
    is close too, +0.04.)"""
    syn = synthetic_benchmark()
    conversion = []
    for seed in range(60):
        h = syn.make_history("steady", seed, 24, leads_per_month=2.0)
        cal = calibrate(h.deals, [syn.STAGE], syn.month_end(syn.START, 23), horizon_days=92,
                        lost_observed=h.lost_observed, select=False)
        conversion.append(next(iter(cal.scenario["segments"].values()))["funnel"][syn.STAGE]["convert"]["mean"])
    assert abs(np.mean(conversion) - 0.25) < 0.045, np.mean(conversion)


def _weekly_history(path, first=date(2025, 1, 6), weeks=50, export=date(2025, 12, 31)):
    """A lead a week from ``first``; every fourth won 45 days after it entered (the first win
    on 20 February), the others lost after 20 days; closes after ``export`` still open."""
    rows = ["deal_id,lead,outcome,closed,amount"]
    for k in range(weeks):
        entered = first + timedelta(days=7 * k)
        won = k % 4 == 0
        closed = entered + timedelta(days=45 if won else 20)
        outcome, when = (("won" if won else "lost"), closed.isoformat()) if closed <= export else ("open", "")
        rows.append(f"d{k},{entered.isoformat()},{outcome},{when},1000")
    path.write_text("\n".join(rows) + "\n")


def test_a_backtest_skips_a_cutoff_too_early_to_calibrate_on_and_scores_the_rest(tmp_path):
    """A small team's first cutoff, before its first win, cannot be calibrated on (no
    conversion to fit): the backtest skips it by every method, says so, and scores the
    others. Until December 2026 it ended the whole run and wrote nothing."""
    from click.testing import CliRunner

    from forecaster.cli import main

    history = tmp_path / "team.csv"
    _weekly_history(history)
    res = CliRunner().invoke(main, ["backtest", str(history), "--stages", "lead", "--cutoffs",
                                    "2025-01-31,2025-07-31,2025-08-31", "--months", "2", "--trials", "200",
                                    "--out", str(tmp_path / "bt"), "--export", "csv"])
    assert res.exit_code == 0, res.output
    assert "warning: cutoff 2025-01-31 skipped (by every method): too early to calibrate on" in res.output
    assert "no deal converted out of this stage" in res.output
    result = json.loads((tmp_path / "bt" / "backtest.json").read_text())
    assert [c["cutoff"] for c in result["cutoffs"]] == ["2025-07-31", "2025-08-31"]
    assert [x["cutoff"] for x in result["skipped"]] == ["2025-01-31"]
    # the baselines are scored on the same two cutoffs, not on the skipped one
    assert result["average"]["won_deals"]["paired"]["trailing_mean"]["cutoffs"] == 2
    assert "(skipped, too early to calibrate on: 2025-01-31)" in res.output
    skipped = (tmp_path / "bt" / "backtest-tables" / "skipped.csv").read_text(encoding="utf-8-sig").splitlines()
    assert skipped[0] == "cutoff,reason" and skipped[1].startswith("2025-01-31,") and len(skipped) == 2
    res = CliRunner().invoke(main, ["report", str(tmp_path / "bt")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "bt" / "backtest.html").read_text()
    assert "<h1>Backtest: 2 cutoffs</h1>" in html and "Cutoff 2025-01-31 skipped by every method" in html


def test_a_backtest_skips_a_cutoff_where_a_later_stage_has_no_conversion_yet(tmp_path):
    """Two stages: leads reach a demo from the first weeks, but the first win comes on 20
    February; a cutoff on 31 January is skipped (the demo stage cannot be fitted), the
    later ones scored."""
    from forecaster.history.backtest import backtest
    from forecaster.history.readers import Deal

    deals = []
    for k in range(50):
        entered = date(2025, 1, 6) + timedelta(days=7 * k)
        demo = entered + timedelta(days=5) if k % 2 == 0 else None
        won = demo is not None and k % 4 == 0
        closed = (demo + timedelta(days=40)) if won else entered + timedelta(days=20)
        deals.append(Deal(f"d{k}", "all", [entered, demo], "won" if won else "lost", closed, 1000.0))
    result = backtest(deals, ["lead", "demo"], [date(2025, 1, 31), date(2025, 6, 30)], months=2, trials=200)
    assert [c["cutoff"] for c in result["cutoffs"]] == ["2025-06-30"]
    assert result["skipped"][0]["cutoff"] == "2025-01-31" and "stage 'demo'" in result["skipped"][0]["reason"]


def test_a_backtest_cutoff_before_the_first_deal_is_refused_not_skipped(tmp_path):
    """Nothing at all to calibrate on (a mistyped year, more likely than not): refused,
    naming the history's first deal, and nothing written."""
    from click.testing import CliRunner

    from forecaster.cli import main

    history = tmp_path / "team.csv"
    _weekly_history(history)
    res = CliRunner().invoke(main, ["backtest", str(history), "--stages", "lead", "--cutoffs",
                                    "2020-07-31,2025-07-31", "--months", "2", "--trials", "200",
                                    "--out", str(tmp_path / "bt")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "cutoff 2020-07-31 is before the history's first deal (2025-01-06)" in res.output
    assert not (tmp_path / "bt").exists()


def test_a_backtest_whose_every_cutoff_is_too_early_is_refused_and_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from forecaster.cli import main

    history = tmp_path / "team.csv"
    _weekly_history(history)
    res = CliRunner().invoke(main, ["backtest", str(history), "--stages", "lead", "--cutoffs", "2025-01-31",
                                    "--months", "2", "--trials", "200", "--out", str(tmp_path / "bt")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "no cutoff could be calibrated on the history known then: 2025-01-31: stage 'lead'" in res.output
    assert "no deal converted out of this stage" in res.output and "use later cutoffs, or check the stage" in res.output
    assert not (tmp_path / "bt").exists()
