"""Fiscal years (issue 14): quarters, commission periods, quarter-end closing and capacity's
quarter shape follow ``fiscal_year_start``; without it every number is as before."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from forecaster.calendar import fiscal_quarter, month_of_quarter, period_end, period_start, periods, quarter_label
from forecaster.errors import ScenarioError
from forecaster.results.dataset import simulate
from forecaster.results.summary import summarize
from forecaster.scenario.loading import scenario_from_dict


def test_calendar_quarters_unchanged_and_fiscal_quarters_tile_the_year():
    day = date(1999, 1, 1)
    for i in range(0, 12000, 3):
        d = day + timedelta(days=i)
        assert period_start(d, "quarter") == date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)
        for fy in range(1, 13):
            first, last = period_start(d, "quarter", fy), period_end(d, "quarter", fy)
            assert first <= d <= last and first.day == 1 and (first.month - fy) % 3 == 0
            nxt = last + timedelta(days=1)
            assert nxt.day == 1 and (nxt.month - first.month) % 12 == 3
            assert month_of_quarter(d.month, fy) == (d.month - first.month) % 12 + 1


@pytest.mark.parametrize("day, fy, label", [
    (date(2026, 4, 1), 4, "FY27 Q1"), (date(2027, 3, 31), 4, "FY27 Q4"), (date(2026, 3, 31), 4, "FY26 Q4"),
    (date(2026, 7, 1), 7, "FY27 Q1"), (date(2026, 6, 30), 7, "FY26 Q4"), (date(2026, 10, 1), 10, "FY27 Q1"),
    (date(2026, 2, 14), 1, "FY26 Q1"), (date(2026, 12, 31), 1, "FY26 Q4"), (date(2026, 2, 1), 2, "FY27 Q1"),
    (date(2026, 1, 31), 2, "FY26 Q4"), (date(2099, 11, 30), 12, "FY99 Q4"), (date(2099, 12, 1), 12, "FY00 Q1"),
])
def test_quarter_labels_name_the_year_the_fiscal_year_ends_in(day, fy, label):
    assert quarter_label(day, fy) == label


def test_fiscal_quarter_counts_from_the_first_month():
    assert [fiscal_quarter(date(2026, m, 1), 4)[1] for m in range(1, 13)] == [4, 4, 4, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_a_quarter_ending_past_year_9999_is_cut_at_the_last_date():
    assert period_end(date(9999, 12, 5), "quarter", 2) == date.max
    p = periods(date(9999, 11, 1), date(9999, 12, 31), "quarter", 2)
    assert p.starts == [date(9999, 11, 1)] and list(p.last_day) == [60]


def _doc(**extra) -> dict:
    doc = {
        "name": "fy", "start": "2026-02-01", "end": "2026-04-30", "report_by": "month", "trials": 3000, "seed": 7,
        "stages": ["lead", "deal"],
        "segments": {"smb": {"leads": {"per_month": 60},
                             "funnel": {"lead": {"convert": 0.5, "days": {"dist": "exponential", "mean": 5}},
                                        "deal": {"convert": 0.4, "days": {"dist": "exponential", "mean": 10}}},
                             "deal_value": {"dist": "lognormal", "median": 10000, "sigma": 0.4}}},
        "team": {"reps": [{"name": "ana", "segments": ["smb"], "quota": 150000}]},
        "commission": {"period": "quarter", "tiers": [{"rate": 0.1}], "cap": 25000},
    }
    doc.update(extra)
    return doc


def test_a_file_without_the_key_gives_the_same_numbers_as_january_starts():
    plain = simulate(scenario_from_dict(_doc()))
    january = simulate(scenario_from_dict(_doc(fiscal_year_start=1)))
    for name in ("revenue", "won_deals", "commission"):
        np.testing.assert_array_equal(plain[name].values, january[name].values)
    assert "fiscal_year_start" not in summarize(plain, scenario_from_dict(_doc()))["horizon"]
    assert summarize(january, scenario_from_dict(_doc(fiscal_year_start=1)))["horizon"]["fiscal_year_start"] == 1


def test_commission_is_capped_per_fiscal_quarter():
    """One rep at a flat 10% with a cap of 25,000 a quarter, February to April: with a fiscal
    year from February the three months are one quota period (one cap); with calendar
    quarters, February-March and April are two. The deals (drawn day by day) are the same."""
    calendar = simulate(scenario_from_dict(_doc()))
    fiscal = simulate(scenario_from_dict(_doc(fiscal_year_start=2)))
    revenue = calendar["revenue"].values                      # (trials, 3 months)
    np.testing.assert_array_equal(revenue, fiscal["revenue"].values)
    assert revenue.sum(axis=1).mean() * 0.1 > 25000 > revenue[:, :2].sum(axis=1).mean() * 0.1  # the cap binds
    want_fiscal = np.minimum(0.1 * revenue.sum(axis=1), 25000)
    want_calendar = np.minimum(0.1 * revenue[:, :2].sum(axis=1), 25000) + np.minimum(0.1 * revenue[:, 2], 25000)
    np.testing.assert_allclose(fiscal["commission"].values.sum(axis=(1, 2)), want_fiscal, rtol=1e-12)
    np.testing.assert_allclose(calendar["commission"].values.sum(axis=(1, 2)), want_calendar, rtol=1e-12)
    assert len(fiscal["quota_period"]) == 1 and len(calendar["quota_period"]) == 2


def test_quarterly_reports_sum_the_fiscal_quarters_months():
    months = simulate(scenario_from_dict(_doc(end="2026-10-31", fiscal_year_start=2)))
    quarters = simulate(scenario_from_dict(_doc(end="2026-10-31", fiscal_year_start=2, report_by="quarter")))
    starts = [str(np.datetime_as_string(p, unit="D")) for p in quarters["period"].values]
    assert starts == ["2026-02-01", "2026-05-01", "2026-08-01"]
    r = months["revenue"].values
    np.testing.assert_allclose(quarters["revenue"].values, np.stack([r[:, 0:3].sum(1), r[:, 3:6].sum(1),
                                                                     r[:, 6:9].sum(1)], axis=1), rtol=1e-12)


def test_quarter_end_slips_land_at_the_fiscal_quarter_end():
    """Every win due in months 1-2 of a quarter slips (slip 1.0) into the last 5 days of its
    quarter: with a fiscal year from February, wins land only in April's last days (the
    quarter February-April), none in March."""
    doc = _doc(fiscal_year_start=2, report_by="day", closing={"slip": {1: 1.0, 2: 1.0}, "window_days": 5},
               trials=400)
    ds = simulate(scenario_from_dict(doc))
    won = ds["won_deals"].values.sum(axis=0)                        # by day, Feb 1 .. Apr 30
    days = [date(2026, 2, 1) + timedelta(days=i) for i in range(won.size)]
    assert won.sum() > 1000
    assert all(won[i] == 0 for i, d in enumerate(days) if d < date(2026, 4, 1))
    assert won[[i for i, d in enumerate(days) if d >= date(2026, 4, 26)]].sum() > 0.5 * won.sum()


def test_capacity_shape_follows_the_fiscal_quarter():
    """A capacity of 1 win a month in a quarter's first month (shape 0.01 / 1 / 1 over a
    binding flow): with a fiscal year from February, February is the starved month."""
    cap = {"won_per_month": 30, "quarter_shape": {1: 0.01, 2: 1.0, 3: 1.0}, "cv": 0}
    calendar, fiscal = (simulate(scenario_from_dict(_doc(capacity=cap, trials=300, **fy))) for fy in
                        ({}, {"fiscal_year_start": 2}))
    c, f = calendar["won_deals"].values.mean(axis=0), fiscal["won_deals"].values.mean(axis=0)
    assert f[0] < 1 and c[0] > 5       # February: month 1 of the fiscal quarter, month 2 of the calendar one
    assert c[2] < 1 and f[2] > 5       # April: month 1 of the calendar quarter, 3 of the fiscal one


@pytest.mark.parametrize("value", [0, 13, 2.5, "april", True])
def test_bad_fiscal_year_start_is_refused_with_its_key(value):
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(_doc(fiscal_year_start=value))
    assert "fiscal_year_start" in str(err.value)
