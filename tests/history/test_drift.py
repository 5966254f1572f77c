"""The local-level model of drifting rates recovers known truths (synthetic series)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from forecaster.history.drift import empirical_logit, local_level


def test_the_forecast_interval_of_a_random_walk_covers_its_nominal_share():
    rng = np.random.default_rng(7)
    hits, n = 0, 400
    for _ in range(n):
        x = np.cumsum(rng.normal(0, math.sqrt(0.05), 19))  # 18 months seen, the 19th forecast
        v = rng.uniform(0.01, 0.05, 18)
        fit = local_level(x[:18] + rng.normal(0, np.sqrt(v)), v)
        hits += abs(x[18] - fit.m) <= 1.2816 * math.sqrt(fit.variance(1))
    share, se = hits / n, math.sqrt(0.8 * 0.2 / n)
    assert abs(share - 0.8) < 3.5 * se, share


def test_a_stable_rate_has_no_drift_and_its_level_is_the_mean():
    rng = np.random.default_rng(8)
    v = rng.uniform(0.01, 0.04, 12)
    fit = local_level(1.5 + rng.normal(0, np.sqrt(v)), v)
    assert fit.q < 0.02
    assert abs(fit.m - 1.5) < 3 * math.sqrt(fit.variance(0))


def test_noise_around_a_steady_level_is_not_read_as_drift():
    rng = np.random.default_rng(9)
    hits, qs, rs = 0, [], []
    for _ in range(100):
        v = np.full(12, 0.01)
        fit = local_level(1.0 + rng.normal(0, 0.3, 12) + rng.normal(0, 0.1, 12), v)  # r = 0.09
        qs.append(fit.q)
        rs.append(fit.r)
        hits += abs(fit.m - 1.0) <= 1.2816 * math.sqrt(fit.variance(0))
    assert np.median(qs) < np.median(rs) / 2 and 0.04 < np.median(rs) < 0.15  # mostly noise, little drift
    assert hits / 100 > 0.7  # the level's own interval covers the truth


def test_a_jump_is_followed_and_months_without_data_are_skipped():
    v = np.full(7, 0.01)
    once = local_level([-3.5, -3.6, np.nan, -3.4, -3.5, -2.0], v[:6])
    assert -3.5 < once.m < -1.9 and abs(once.m + 2) < 1.28 * math.sqrt(once.variance(0))  # a shift, or an outlier?
    twice = local_level([-3.5, -3.6, np.nan, -3.4, -3.5, -2.0, -2.1], v)
    assert abs(twice.m + 2.05) < 0.2  # the level has moved
    assert twice.q < 0.1 and math.sqrt(twice.variance(1)) < 0.5  # a jump, not a wildly drifting level
    assert local_level([1.0, np.nan, 2.0], [0.1, 0.1, 0.1]) is None


def test_empirical_logit_and_its_variance():
    y, var = empirical_logit(30, 100)
    assert math.isclose(y, math.log(30.5 / 70.5)) and math.isclose(var, 1 / 30.5 + 1 / 70.5)


def test_with_one_offs_the_random_walk_is_still_covered():
    rng = np.random.default_rng(7)
    hits, n = 0, 400
    for _ in range(n):
        x = np.cumsum(rng.normal(0, math.sqrt(0.05), 19))
        v = rng.uniform(0.01, 0.05, 18)
        fit = local_level(x[:18] + rng.normal(0, np.sqrt(v)), v, outliers=True)
        hits += abs(x[18] - fit.m) <= 1.2816 * math.sqrt(fit.variance(1))
    share, se = hits / n, math.sqrt(0.8 * 0.2 / n)
    assert abs(share - 0.8) < 3.5 * se, share


def test_a_last_month_far_off_is_half_a_jump_half_a_one_off_until_the_next_tells():
    """A steady level at 0 (12 cohorts known to sd 0.1), then one at -0.85 (a conversion
    halved): without one-offs the level follows it; with them it goes about halfway, with
    an interval that holds both readings; a second month there moves it, one back at 0
    puts it back."""
    rng = np.random.default_rng(3)
    steady = rng.normal(0, 0.1, 12)
    v = np.full(14, 0.01)
    jump_only = local_level(np.r_[steady, -0.85], v[:13])
    hedged = local_level(np.r_[steady, -0.85], v[:13], outliers=True)
    assert jump_only.m < -0.7
    assert -0.6 < hedged.m < -0.25
    sd = math.sqrt(hedged.variance(1))
    assert hedged.m - 1.2816 * sd < -0.85 and hedged.m + 1.2816 * sd > 0  # both inside P10-P90
    moved = local_level(np.r_[steady, -0.85, -0.85], v, outliers=True)
    back = local_level(np.r_[steady, -0.85, 0.0], v, outliers=True)
    assert moved.m < -0.7 and abs(back.m) < 0.15



def test_the_month_after_a_far_off_one_tells_a_one_off_from_a_jump(monkeypatch):
    """A steady level at 0, a month at -0.85, then a month seen through a young cohort's
    large variance: back at 0 (the far-off month was a one-off) or still at -0.85 (a jump).
    Keeping the far-off month's readings apart until the next month weighs them (``LAG``)
    puts the level nearer the truth in both cases than merging them at once (LAG = 0), which
    left one wide Gaussian halfway that the young month could only pull back slowly."""
    import forecaster.history.drift as drift

    rng = np.random.default_rng(21)
    series = []
    for _ in range(300):
        v = np.r_[rng.uniform(0.01, 0.03, 13), rng.uniform(0.09, 0.36)]
        steady = rng.normal(0, np.sqrt(v[:12]))
        far = -0.85 + rng.normal(0, np.sqrt(v[12]))
        for truth in (0.0, -0.85):
            series.append((np.r_[steady, far, truth + rng.normal(0, np.sqrt(v[13]))], v, truth))

    def errors():
        return np.array([abs(local_level(y, v, outliers=True).m - truth) for y, v, truth in series])

    kept = errors()
    monkeypatch.setattr(drift, "LAG", 0)
    merged = errors()
    for case in (0, 1):  # one-offs (mean error 0.22 against 0.26 merged, z = -12), jumps (0.26 against 0.27, z = -5)
        d = kept[case::2] - merged[case::2]
        assert d.mean() + 3 * d.std() / math.sqrt(d.size) < 0, (case, kept[case::2].mean(), merged[case::2].mean())


def _one_grid_point(y, v, q, r, outliers):
    """The filter of :func:`forecaster.history.drift._filter` written out for one (q, r), scalar
    by scalar, with its components in a dict keyed by the readings of the last ``LAG``
    months, their weights as logarithms: (m_K, P_K, log-likelihood)."""
    from forecaster.history.drift import JUMP_PROB, JUMP_VAR, LAG, OUTLIER_PROB, OUTLIER_VAR

    seen = ((1 - OUTLIER_PROB, 0.0), (OUTLIER_PROB, OUTLIER_VAR)) if outliers else ((1.0, 0.0),)
    readings = [(math.log(prob * seen_prob), jump, extra)
                for prob, jump in ((1 - JUMP_PROB, 0.0), (JUMP_PROB, JUMP_VAR)) for seen_prob, extra in seen]
    comps, ll, started, gap = {(): (0.0, 0.0, math.inf)}, 0.0, False, 0  # key -> (log weight, m, P)
    for yk, vk in zip(y, v):
        if started:
            gap += 1
        if not np.isfinite(yk):
            continue
        vk = vk + r
        if not started:
            comps, started, gap = {(): (0.0, float(yk), vk)}, True, 0
            continue
        new = {}
        for key, (lw, m, P) in comps.items():
            for i, (log_prob, jump, extra) in enumerate(readings):
                var, e = P + gap * q + jump, yk - m
                F = max(var + vk + extra, 1e-12)
                new[key + (i,)] = (lw + log_prob - 0.5 * (math.log(2 * math.pi * F) + e * e / F),
                                   m + var / F * e, var * (vk + extra) / F)
        total = float(logsumexp([c[0] for c in new.values()]))
        ll += total
        groups: dict[tuple, list] = {}
        for key, comp in new.items():  # merge readings older than LAG months by their moments
            groups.setdefault(key[len(key) - LAG:] if LAG else (), []).append(comp)
        comps = {}
        for key, group in groups.items():
            lw = float(logsumexp([c[0] for c in group]))
            ws = [math.exp(c[0] - lw) for c in group]
            m = sum(w * c[1] for w, c in zip(ws, group))
            comps[key] = (lw - total, m, sum(w * (c[2] + (c[1] - m) ** 2) for w, c in zip(ws, group)))
        gap = 0
    ws = [math.exp(c[0]) for c in comps.values()]
    m = sum(w * c[1] for w, c in zip(ws, comps.values()))
    P = sum(w * (c[2] + (c[1] - m) ** 2) for w, c in zip(ws, comps.values()))
    return m, P + gap * q, ll


@pytest.mark.parametrize("lag", [0, 1, 2])
def test_the_grid_filter_is_the_one_point_filter_at_every_grid_point(lag, monkeypatch):
    import forecaster.history.drift as drift
    from forecaster.history.drift import GRID, _filter

    monkeypatch.setattr(drift, "LAG", lag)

    rng = np.random.default_rng(12)
    qs, rs = (g.ravel() for g in np.meshgrid(GRID, GRID))
    for case in range(14):
        k = int(rng.integers(3, 20))
        y = np.cumsum(rng.normal(0, 0.3, k)) + rng.normal(0, 0.1, k)
        v = rng.uniform(0.0, 0.1, k) * (rng.random(k) > 0.2)  # some months known exactly (v = 0)
        y[rng.integers(0, k)] = np.nan if case % 3 == 0 else y[0]  # gaps
        y[-1] += 2.0 if case % 4 == 1 else 0.0  # a last month far off
        if case >= 12:  # consecutive months known exactly, one far off: at q = r = 0 most readings weigh ~0
            k = 8
            y, v = np.r_[0.0, 0.1, -0.1, 0.0, 3.0, 3.1, -2.0, 0.05], np.r_[0.02, 0.0, 0.0, 0.0, 0.0, 0.01, 0.0, 0.0]
        outliers = bool(case % 2)
        ms, Ps, ll = _filter(y, v, qs, rs, outliers)
        assert np.all(np.isfinite(ms)) and np.all(np.isfinite(Ps)) and np.all(np.isfinite(ll)), case
        for i in np.r_[0, rng.choice(qs.size, 25, replace=False)]:  # always q = r = 0 (grid point 0)
            want = _one_grid_point(y, v, qs[i], rs[i], outliers)
            assert np.allclose((ms[i], Ps[i], ll[i]), want, rtol=1e-12, atol=1e-12), (case, i)


def _one_trend_point(y, v, q, r):
    """The filter of :func:`forecaster.history.drift._trend_filter` written out for one (q, r)
    with 2 x 2 matrices, as it was before it ran over the whole grid at once: (m, b, Pmm,
    Pmb, Pbb, log-likelihood)."""
    from forecaster.history.drift import JUMP_PROB, JUMP_VAR

    x, P, ll, seen = np.zeros(2), np.diag([1e6, 1e6]), 0.0, 0
    F = np.array([[1.0, 1.0], [0.0, 1.0]])
    for k, (yk, vk) in enumerate(zip(y, v)):
        if k > 0:
            x = F @ x
            P = F @ P @ F.T + np.diag([q, 0.0])
        if not np.isfinite(yk):
            continue
        e, comps = yk - x[0], []
        for prob, extra in ((1 - JUMP_PROB, 0.0), (JUMP_PROB, JUMP_VAR)):
            Pk = P + np.diag([extra, 0.0])
            S = Pk[0, 0] + (vk + r)
            K = Pk[:, 0] / S
            comps.append((math.log(prob) - 0.5 * (math.log(2 * math.pi * S) + e * e / S), x + K * e,
                          Pk - np.outer(K, Pk[0, :])))
        top = max(c[0] for c in comps)
        w = np.exp(np.array([c[0] for c in comps]) - top)
        if seen >= 2:  # the first two observations start the filter
            ll += top + math.log(w.sum())
        w /= w.sum()
        x_new = w[0] * comps[0][1] + w[1] * comps[1][1]
        P = sum(wi * (c[2] + np.outer(c[1] - x_new, c[1] - x_new)) for wi, c in zip(w, comps))
        x, seen = x_new, seen + 1
    return x[0], x[1], P[0, 0], P[0, 1], P[1, 1], ll


def test_the_grid_trend_filter_is_the_one_point_filter_at_every_grid_point():
    from forecaster.history.drift import GRID, _trend_filter

    rng = np.random.default_rng(13)
    qs, rs = (g.ravel() for g in np.meshgrid(GRID, GRID))
    for case in range(12):
        k = int(rng.integers(4, 24))
        y = np.cumsum(rng.normal(0, 0.3, k)) + 0.05 * np.arange(k) + rng.normal(0, 0.1, k)  # a slope, drift, noise
        v = rng.uniform(0.0, 0.1, k) * (rng.random(k) > 0.2)  # some months known exactly (v = 0)
        y[rng.integers(0, k)] = np.nan if case % 3 == 0 else y[0]  # a gap, or a month back at the first's level
        y[-1] += 2.0 if case % 4 == 1 else 0.0  # a last month far off (a jump)
        got = _trend_filter(y, v, qs, rs)
        for i in rng.choice(qs.size, 25, replace=False):
            want = _one_trend_point(y, v, qs[i], rs[i])
            assert np.allclose([g[i] for g in got], want, rtol=1e-12, atol=1e-12), (case, i)
