"""Two pure-numpy simulations of the contract's semantics, for what ``r1`` uses.

Both support per_week rates, beta conversions drawn once per trial, lognormal days and
deal values, no dispersion, pipeline or team: enough for the reference scenario r1. They
are the yardsticks forecaster's speed is quoted against, and are checked to agree with it
statistically (benchmarks/run.py).

* :func:`simulate_per_lead`: the way an analyst first writes it. A Python loop over
  trials, numpy over the individual leads: every lead that arrives is drawn through every
  stage.
* :func:`simulate_vectorized`: the best numpy version without a JIT. Vectorised across a
  chunk of trials; daily arrivals are thinned with one binomial draw per trial and day
  (won ~ Binomial(arrivals, p_1...p_S)), and only the won leads draw their stage times.
"""
from __future__ import annotations

import numpy as np

from forecaster.calendar import periods
from forecaster.scenario.model import Scenario


def _segments(sc: Scenario):
    out = []
    for seg in sc.segments.values():
        assert seg.leads.source == "per_week" and seg.leads.dispersion == 0 and not seg.leads.seasonality
        conv = [(st.convert.params["mean"], st.convert.params["concentration"]) for st in seg.funnel.values()]
        days = [(np.log(st.days.params["median"]), st.days.params["sigma"]) for st in seg.funnel.values()]
        value = (np.log(seg.deal_value.params["median"]), seg.deal_value.params["sigma"])
        out.append((seg.leads.per_week["value"] / 7, conv, days, value))
    return out


def simulate_per_lead(sc: Scenario, trials: int, seed: int = 0) -> np.ndarray:
    """Revenue per trial and period, shape (trials, periods)."""
    rng = np.random.default_rng(seed)
    D = sc.days
    per = periods(sc.start, sc.end, sc.report_by)
    out = np.zeros((trials, len(per)))
    segs = _segments(sc)
    for t in range(trials):
        for rate, conv, days, value in segs:
            arrivals = rng.poisson(rate, size=D)
            time = np.repeat(np.arange(D, dtype=float), arrivals)   # one entry per lead
            for (m, c), (mu, s) in zip(conv, days):
                p = rng.beta(m * c, (1 - m) * c)
                keep = rng.random(time.size) < p
                time = time[keep] + rng.lognormal(mu, s, size=keep.sum())
            time = time[time < D]
            v = rng.lognormal(value[0], value[1], size=time.size)
            np.add.at(out[t], per.of_day[time.astype(np.int64)], v)
    return out


def simulate_vectorized(sc: Scenario, trials: int, seed: int = 0, chunk: int = 2000) -> np.ndarray:
    """Revenue per trial and period, shape (trials, periods)."""
    rng = np.random.default_rng(seed)
    D = sc.days
    per = periods(sc.start, sc.end, sc.report_by)
    P = len(per)
    out = np.zeros((trials, P))
    segs = _segments(sc)
    for lo in range(0, trials, chunk):
        n = min(chunk, trials - lo)
        flat = np.zeros(n * P)
        for rate, conv, days, value in segs:
            p_win = np.ones(n)
            for m, c in conv:
                p_win *= rng.beta(m * c, (1 - m) * c, size=n)
            won = rng.binomial(rng.poisson(rate, size=(n, D)), p_win[:, None])   # (n, D) thinned
            counts = won.ravel()
            trial = np.repeat(np.arange(n), won.sum(axis=1))
            time = np.repeat(np.tile(np.arange(D, dtype=float), n), counts)
            for mu, s in days:
                time += rng.lognormal(mu, s, size=time.size)
            keep = time < D
            v = rng.lognormal(value[0], value[1], size=int(keep.sum()))
            idx = trial[keep] * P + per.of_day[time[keep].astype(np.int64)]
            flat += np.bincount(idx, weights=v, minlength=n * P)
        out[lo:lo + n] = flat.reshape(n, P)
    return out
