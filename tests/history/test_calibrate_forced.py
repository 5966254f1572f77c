"""A part forced on (``--mechanism closing=on``) that the history cannot fit is not left
out silently: the calibration warns that it was asked for, and why it is missing."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from forecaster.history.calibrate import calibrate
from forecaster.history.readers import Deal


def _daily_history(seed: int, first: date, last: date, per_day, spans: tuple[int, int]) -> list[Deal]:
    """Deals entering each day from ``first`` to ``last`` (Poisson, mean ``per_day(day)``),
    half of them won and half lost a uniform ``spans`` days later (those closing by ``last``)."""
    rng = np.random.default_rng(seed)
    deals, day = [], first
    while day <= last:
        for _ in range(rng.poisson(per_day(day))):
            outcome = "won" if rng.random() < 0.5 else "lost"
            closed = day + timedelta(days=int(rng.integers(*spans)))
            if closed <= last:
                deals.append(Deal(f"d{len(deals)}", "all", [day], outcome, closed,
                                  1000.0 if outcome == "won" else None))
        day += timedelta(days=1)
    return deals


def _short_history() -> list[Deal]:
    """Ten weeks of wins and losses: not six whole months of wins."""
    return _daily_history(5, date(2023, 4, 10), date(2023, 6, 20), lambda day: 3, (5, 20))


def test_a_part_forced_on_but_not_fitted_is_a_warning_saying_why():
    deals = _short_history()
    cal = calibrate(deals, ["stage"], date(2023, 6, 20), horizon_days=90, force={"closing": True},
                    capacity=True, select=False)
    assert "closing" not in cal.mechanisms and "capacity" not in cal.mechanisms
    closing = [w for w in cal.warnings if w.startswith("closing:")]
    capacity = [w for w in cal.warnings if w.startswith("capacity:")]
    assert len(closing) == 1 and len(capacity) == 1
    assert "asked for (--mechanism closing=on) but could not be fitted" in closing[0]
    assert "fewer than six whole months of steady wins" in closing[0]
    assert "no whole quarter of wins yet" in capacity[0]
    assert "closing" not in cal.scenario and "capacity" not in cal.scenario


def test_no_warning_when_nothing_is_forced():
    cal = calibrate(_short_history(), ["stage"], date(2023, 6, 20), horizon_days=90, select=False)
    assert not any("asked for" in w for w in cal.warnings)


def _growing_history() -> list[Deal]:
    """A year and a month of deals whose arrivals grow 15% a month, half of them won ten to
    thirty days after they enter: wins that are still growing, with no level reached."""
    return _daily_history(6, date(2023, 1, 1), date(2024, 1, 31),
                          lambda day: 2 * 1.15 ** ((day.year - 2023) * 12 + day.month - 1), (10, 30))


def test_a_capacity_forced_on_wins_still_growing_is_a_warning_saying_why():
    """No level is seen while wins grow: a capacity read as their mean would cap the forecast
    below what the team closes now, so none is written, and the warning says why."""
    cal = calibrate(_growing_history(), ["stage"], date(2024, 1, 31), horizon_days=90, capacity=True,
                    select=False)
    capacity = [w for w in cal.warnings if w.startswith("capacity:")]
    assert len(capacity) == 1 and "asked for" in capacity[0]
    assert "wins still growing" in capacity[0] and "no capacity seen" in capacity[0]
    assert "capacity" not in cal.scenario
