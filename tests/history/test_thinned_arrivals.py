"""Arrivals of an export that starts mid-stream (forecaster.history.estimate.thinned_until).

Such an export keeps a deal that entered before its first close only if the deal was still
open that day, so its early months of arrivals are thinned, by the share of deals still
open at their age then. Read as complete, they make a steady flow look like a steep ramp.
A history whose closes simply start later than its leads shows its early months in full,
and must not be cut. Truths are known: each history is generated (deal_flows.py)."""
from __future__ import annotations

import re
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from deal_flows import draw_flow, export  # noqa: E402

from forecaster.history.calibrate import calibrate  # noqa: E402
from forecaster.history.estimate import observed_from, thinned_until  # noqa: E402


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_export_cut_mid_stream_is_read_from_its_first_whole_month(seed):
    flow = draw_flow(np.random.default_rng(seed), 12)
    cut = date(2024, 6, 1)
    deals = export(flow, date(2024, 9, 30), drop_closed_before=cut)
    assert observed_from(deals, date(2024, 9, 30)) == cut
    found = thinned_until(deals, date(2024, 9, 30), cut)
    assert found is not None and found[0] == cut
    # the share of each month before the cut still open on its day, as reported, against the truth's
    shares = [int(s) / 100 for s in re.findall(r"(\d+)%", found[1])]
    # P(still open after a days): 25% won after lognormal(45, 0.8), 75% lost after lognormal(30, 0.9)
    from scipy.stats import lognorm

    def still_open(a):
        return 0.25 * lognorm.sf(a, 0.8, scale=45) + 0.75 * lognorm.sf(a, 0.9, scale=30)

    truth = [np.mean([still_open((cut - date(2024, m, 1)).days - d) for d in range(28)]) for m in (2, 3, 4, 5)]
    assert len(shares) == 4
    assert np.allclose(shares, truth, atol=0.05), (shares, truth)
    # two whole months after the cut are too few to read a level from: the months before stay
    early = export(flow, date(2024, 7, 31), drop_closed_before=cut)
    assert thinned_until(early, date(2024, 7, 31), cut) is None
    assert thinned_until(export(flow, date(2024, 8, 31), drop_closed_before=cut), date(2024, 8, 31), cut) is not None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_closes_recorded_only_from_a_later_day_are_not_a_cut_export(seed):
    """Leads in full from January, closes recorded from June on (Olist's shape, losses
    never recorded): nothing is cut."""
    flow = draw_flow(np.random.default_rng(seed), 12, lost_observed=False)
    as_of = date(2024, 9, 30)
    deals = export(flow, as_of, closes_from=date(2024, 6, 1))
    first = observed_from(deals, as_of)
    assert first is not None and first >= date(2024, 6, 1)
    assert thinned_until(deals, as_of, first) is None


@pytest.mark.parametrize("growth", [0.0, 0.08, -0.05])
def test_a_whole_history_and_one_growing_or_declining_are_not_cut(growth):
    flow = draw_flow(np.random.default_rng(4), 12, growth=growth)
    as_of = date(2024, 9, 30)
    deals = export(flow, as_of)
    assert thinned_until(deals, as_of, observed_from(deals, as_of)) is None
    # closes recorded from April on, leads in full, losses recorded: the months before April
    # still hold every deal, so a growing team's thinner early months are growth, not a cut
    later = export(flow, as_of, closes_from=date(2024, 4, 1))
    assert thinned_until(later, as_of, observed_from(later, as_of)) is None


def test_the_cut_export_is_calibrated_at_its_true_lead_flow_without_a_ramp():
    """Three months after the first close of a team growing 6% a month whose stalled
    quarter of leads keeps the early months full enough to pass for steady ones. Read as
    complete, the thinned months before the cut made a ramp of +22% a month and a drift of
    0.34 a month (shocks on the leads of 0.41: this history, before the cut was read); read
    from the first close on, the level is June's truth and the drift a third of that."""
    flow = draw_flow(np.random.default_rng(5), 12, growth=0.06, stall=0.25)
    cut, as_of = date(2024, 4, 1), date(2024, 6, 30)
    deals = export(flow, as_of, drop_closed_before=cut)
    cal = calibrate(deals, ["opportunity"], as_of, horizon_days=92, select=False)
    assert any("arrivals are read from 2024-04 on" in n for n in cal.notes)
    level = [n for n in cal.notes if "months of arrivals; latest level" in n]
    assert len(level) == 1 and level[0].startswith("all segments: 3 months of arrivals"), level
    latest, drift = (float(x) for x in re.search(r"latest level ([\d.]+) a month, drift sd ([\d.]+)", level[0]).groups())
    assert latest == pytest.approx(400 * 1.06 ** 5, rel=0.1)  # June's arrivals
    assert drift < 0.2
    assert cal.scenario["shocks"]["leads"] < 0.25
    assert not any(n.startswith("trend:") for n in cal.notes)  # three months: no trend fitted, none misread


def test_a_flow_that_steps_up_on_the_first_close_is_not_read_as_a_cut(monkeypatch):
    """Olist's shape: leads in full from January, three times as many from June, when closes
    start to be recorded (wins only, so 85-95% of every early month would still be open).
    The step is a changed flow, not thinning: even with no floor on how much thinning must
    remove, the months before June do not thin out towards the past as a cut would."""
    import forecaster.history.estimate as estimate

    monkeypatch.setattr(estimate, "THINNED_MATERIAL", 1.01)
    rng = np.random.default_rng(6)
    early = draw_flow(rng, 5, leads=300.0, lost_observed=False)
    late = [(e + timedelta(days=152), o, c + timedelta(days=152) if c else None)
            for e, o, c in draw_flow(rng, 7, leads=900.0, lost_observed=False)]
    as_of = date(2024, 10, 31)
    deals = export(early + late, as_of, closes_from=date(2024, 6, 1))
    first = observed_from(deals, as_of)
    assert first is not None and first >= date(2024, 6, 1)
    assert thinned_until(deals, as_of, first) is None
    # the same step with losses recorded, cut mid-stream on June 1st, thins its early months
    # from 79% (May) to 8% (February) still open: read as cut, step or not
    rng = np.random.default_rng(7)
    early = draw_flow(rng, 5, leads=300.0)
    late = [(e + timedelta(days=152), o, c + timedelta(days=152)) for e, o, c in draw_flow(rng, 7, leads=900.0)]
    cut = export(early + late, as_of, drop_closed_before=date(2024, 6, 1))
    assert thinned_until(cut, as_of, observed_from(cut, as_of)) is not None
