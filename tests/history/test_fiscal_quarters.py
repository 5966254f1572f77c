"""Calibration reads quarter-end slips and capacity from the company's fiscal quarters
(``calibrate(..., fiscal_year_start=...)``) and writes the key into the scenario."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from forecaster.calendar import month_of_quarter, period_end
from forecaster.history.parts import Calibration
from forecaster.history.quarters import quarter_end_closing, team_capacity, whole_quarters
from forecaster.history.readers import Deal


def _slipped_wins(fy: int, slip: float = 0.4, seed: int = 3) -> list[Deal]:
    """Two years of wins at 4 a day; a win due in month 1 or 2 of a quarter of the fiscal
    year starting in month ``fy`` moves, with chance ``slip``, to one of the quarter's
    last 10 days."""
    rng = np.random.default_rng(seed)
    deals, day = [], date(2022, 1, 1)
    while day <= date(2023, 12, 31):
        for _ in range(rng.poisson(4)):
            closed = day
            if month_of_quarter(day.month, fy) < 3 and rng.random() < slip:
                closed = period_end(day, "quarter", fy) - timedelta(days=int(rng.integers(0, 10)))
            deals.append(Deal(f"d{len(deals)}", "all", [closed - timedelta(days=30)], "won", closed, 1000.0))
        day += timedelta(days=1)
    return deals


def test_whole_fiscal_quarters_cross_the_calendar_year():
    wins = [date(2022, 2, 10), date(2023, 6, 1)]
    quarters = whole_quarters(wins, date(2023, 6, 30), fiscal_year_start=11)
    assert quarters[-1] == (date(2023, 2, 1), date(2023, 4, 30))
    assert (date(2022, 11, 1), date(2023, 1, 31)) in quarters
    assert all(period_end(a, "quarter", 11) == b for a, b in quarters)


def test_slips_to_a_fiscal_quarter_end_are_read_from_fiscal_quarters():
    deals = _slipped_wins(fy=2)
    fiscal = quarter_end_closing(deals, date(2023, 12, 31), Calibration({}, [], fiscal_year_start=2))
    assert fiscal is not None
    assert abs(fiscal["slip"][1] - 0.4) < 0.06 and abs(fiscal["slip"][2] - 0.4) < 0.06
    assert fiscal["window_days"] == 10
    # read against calendar quarters, the same wins are not a 40% quarter-end push
    calendar = quarter_end_closing(deals, date(2023, 12, 31), Calibration({}, []))
    assert calendar is None or max(calendar["slip"].values()) < 0.25


def test_capacity_shape_is_by_month_of_the_fiscal_quarter():
    deals = _slipped_wins(fy=2)
    cap = team_capacity(deals, date(2023, 12, 31), Calibration({}, [], fiscal_year_start=2))
    assert cap is not None
    shape = cap["quarter_shape"]
    assert shape[3] > 1.5 and shape[1] < 0.8 and shape[2] < 0.8   # the fiscal third month holds the slips


def test_calibrate_writes_the_fiscal_year_and_keeps_it_in_the_walk_forward(tmp_path):
    from forecaster.history.calibrate import calibrate
    from forecaster.scenario.loading import scenario_from_dict

    deals = _slipped_wins(fy=2)
    rng = np.random.default_rng(1)
    for i in range(len(deals) // 2):  # some losses, so that conversion is not certain
        e = date(2022, 1, 1) + timedelta(days=int(rng.integers(0, 700)))
        deals.append(Deal(f"l{i}", "all", [e], "lost", e + timedelta(days=20), None))
    cal = calibrate(deals, ["stage"], date(2023, 12, 31), horizon_days=90, fiscal_year_start=2,
                    force={"closing": True})
    assert cal.scenario["fiscal_year_start"] == 2
    assert abs(cal.scenario["closing"]["slip"][1] - 0.4) < 0.06
    from forecaster.history.parts import pipeline_csv

    (tmp_path / "pipeline.csv").write_text(pipeline_csv(cal.pipeline))
    sc = scenario_from_dict(cal.scenario, base_dir=tmp_path)
    assert sc.fiscal_year_start == 2
    assert calibrate(deals, ["stage"], date(2023, 12, 31), horizon_days=90, select=False).scenario.get(
        "fiscal_year_start") is None
