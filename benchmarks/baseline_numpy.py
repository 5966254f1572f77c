"""A straightforward per-lead simulation, the way an analyst would first write it.

A Python loop over trials, numpy over the individual leads: every lead that arrives is
drawn through every stage. It follows the contract's semantics for what ``r1`` uses
(per_week rates, beta conversions drawn per trial, lognormal days and values, weekly
periods) and is the yardstick the engine's speed is quoted against.
"""
from __future__ import annotations

import numpy as np

from forecaster.calendar import periods
from forecaster.scenario import Scenario


def simulate_per_lead(sc: Scenario, trials: int, seed: int = 0) -> np.ndarray:
    """Revenue per trial and period, shape (trials, periods). Supports r1's subset only."""
    rng = np.random.default_rng(seed)
    D = sc.days
    per = periods(sc.start, sc.end, sc.report_by)
    out = np.zeros((trials, len(per)))
    segs = []
    for seg in sc.segments.values():
        assert seg.leads.source == "per_week" and seg.leads.dispersion == 0
        rate = seg.leads.per_week["value"] / 7
        stages = [(st.convert.params, st.days.params) for st in seg.funnel.values()]
        segs.append((rate, stages, seg.deal_value.params))
    for t in range(trials):
        for rate, stages, value in segs:
            arrivals = rng.poisson(rate, size=D)
            time = np.repeat(np.arange(D, dtype=float), arrivals)   # one entry per lead
            for conv, days in stages:
                m, c = conv["mean"], conv["concentration"]
                p = rng.beta(m * c, (1 - m) * c)
                keep = rng.random(time.size) < p
                time = time[keep] + rng.lognormal(np.log(days["median"]), days["sigma"], size=keep.sum())
            time = time[time < D]
            v = rng.lognormal(np.log(value["median"]), value["sigma"], size=time.size)
            np.add.at(out[t], per.of_day[time.astype(np.int64)], v)
    return out
