r"""Simulation kernels: arrays and generators in, arrays out; no I/O, no validation.

The model
---------
Time runs in days from the beginning of ``start`` (t = 0) to the end of ``end`` (t = D).
For a segment g and a trial, the *rates and probabilities* are drawn once:

    theta = (r, gamma, p_1, ..., p_S)     lead rate (or cost per lead), monthly growth, conversions

(slots ``THETA_LEADS``, ``THETA_GROWTH`` and ``THETA_CONVERT + s``, see
:mod:`forecaster.engine.interface`).

The mean number of leads arriving on day d is

    m_d = r * f_d * (1 + gamma)^{k_d}     (or  B * f_d / c * (1 + gamma)^{k_d}  for bought leads)

with f_d the day's share of the rate's unit times its seasonality, and k_d whole calendar
months since ``start``'s month. Day d's arrivals are N_d ~ Poisson(m_d G_d), where G_d = 1,
or G_d ~ Gamma(1/delta, delta) (mean 1, variance delta) for dispersion delta > 0, which
makes N_d negative binomial with variance m_d + delta m_d^2.

A lead converts through every stage with probability P = p_1 ... p_S, independently of
the others, and only such leads can touch an output. By Poisson thinning the leads of day
d that will be won are exactly

    W_d ~ Poisson(m_d G_d P),

so the kernel never draws the leads that are lost: its cost follows the won deals, not the
width of the funnel's mouth. A won lead spends X_s ~ ``days_s`` in each stage (drawn per
deal) and is won at time T = d + X_1 + ... + X_S, on day floor(T), which counts when
T < D. Its value V ~ ``deal_value`` and its rep is uniform among the segment's reps.
Drawing the X_s stops as soon as T >= D: the rest cannot change an output.

An open pipeline deal in stage s0 with age a (whole days) converts out of s0 with

    q = p S(a) / (p S(a) + (1 - p) S_lost(a)),

S and S_lost the survival functions of ``days`` and ``days_lost`` (prepared by the caller
as the odds ratio S_lost(a) / S(a) and a mode for the degenerate cases). If it converts,
its remaining time in s0 is X - a given X > a (drawn by :func:`draw_above`), and it goes on
through stages s0 + 1 ... S as a new deal would.

Two extensions of the format act on these. ``shocks`` (:func:`apply_shocks`) moves theta
after it is drawn, with one draw per trial shared by every segment: r times
exp(sigma Z - sigma^2 / 2) (c divided by it), and each p_s shifted on the log-odds scale
by sigma_s Z_s. ``closing`` (:func:`_slipped`) moves a won deal's time T: with the chance
of the month of the quarter that holds T, to a uniform time between max(T, the quarter's
end - w) and the quarter's end (w = ``window_days``), for new and pipeline deals alike.

Inputs are the records of :mod:`forecaster.engine.interface` (``Funnel``, ``Pipeline``,
``Closing``, ``Shocks``, ``Capacity``, ``Outputs``, ``Streams``), whose numba types do not
depend on the scenario: each kernel compiles once. Randomness enters only through
``Streams``: a ``numpy.random.Generator`` per role, reseeded from a stream's key and the
trial's index before the stream is drawn (:mod:`forecaster.engine._streams`), so a trial's
numbers depend on the seed, the stream and its index only, with or without the JIT. Each
kernel first checks that it was given the streams it draws from (``interface.STREAMS``).

Distribution encoding
---------------------
A distribution is a family code and four parameters ``par``:

============  ========================================================
FIXED         value
UNIFORM       low, high
TRIANGULAR    low, mode, high
PERT          low, high, alpha, beta   (beta shapes on [low, high])
NORMAL        mean, sd, a, b           (truncated to [mean + a sd, mean + b sd])
LOGNORMAL     mu = log(median), sigma
GAMMA         shape k, scale
EXPONENTIAL   mean
WEIBULL       shape, scale
BETA          alpha, beta
EMPIRICAL     offset, length           (into ``pool``, each run of values sorted)
============  ========================================================
"""
from __future__ import annotations

import math

import numpy as np

from forecaster.engine._numba import jit
from forecaster.engine._streams import expect, key_of, reseed, reseed_role
from forecaster.engine.interface import (  # noqa: F401 (codes and modes re-exported for tests)
    ARRIVAL,
    BETA,
    CAPACITY,
    CONVERT,
    COUNT,
    DAYS,
    DRIFT_CONVERT,
    DRIFT_LEADS,
    EMPIRICAL,
    EXPONENTIAL,
    FIXED,
    GAMMA,
    LOGNORMAL,
    LOST_ONLY,
    MIXING,
    NO_MASS,
    NORMAL,
    ORDINARY,
    PERT,
    QUANTITY,
    REP,
    SHOCK_CONVERT,
    SHOCK_LEADS,
    SLIP,
    THETA_CONVERT,
    THETA_GROWTH,
    THETA_LEADS,
    TRIANGULAR,
    UNIFORM,
    VALUE,
    WEIBULL,
    WON_ONLY,
)

_SQRT_HALF = math.sqrt(0.5)


# A generator's methods called from a large kernel: numba counts a reference to the
# generator (atomically) around each call it does not inline. Called through these small
# functions instead, nothing is counted around the call, and their own count is pruned.

@jit
def _std_normal(gen):
    return gen.standard_normal()


@jit
def _std_gamma(gen, k):
    return gen.standard_gamma(k)


@jit
def _std_exponential(gen):
    return gen.standard_exponential()


@jit
def _uniform(gen):
    return gen.random()


@jit(inline="always")
def _normal_mass(a, b):
    """P(a <= Z <= b) for a standard normal Z."""
    return 0.5 * (math.erfc(-b * _SQRT_HALF) - math.erfc(-a * _SQRT_HALF))


@jit
def truncated_standard_normal(gen, a, b):
    """Z ~ N(0, 1) conditioned on a <= Z <= b (either may be infinite). Exact.

    Naive rejection when [a, b] holds at least a quarter of the mass; otherwise a uniform
    proposal on a narrow interval, or Robert's (1995) exponential proposal in a tail. An
    interval left of 0 is mirrored to the right.
    """
    lo, hi = float(a), float(b)
    if lo == -math.inf and hi == math.inf:
        return _std_normal(gen)
    sign = 1.0
    if hi < 0.0:
        lo, hi, sign = -hi, -lo, -1.0
    if _normal_mass(lo, hi) >= 0.25:
        while True:
            z = _std_normal(gen)
            if lo <= z <= hi:
                return sign * z
    if lo <= 0.0:  # narrow interval around 0: density at most 1 (unnormalised)
        while True:
            z = lo + (hi - lo) * _uniform(gen)
            if _uniform(gen) <= math.exp(-0.5 * z * z):
                return sign * z
    if lo * (hi - lo) < 1.0:  # narrow interval in the right tail: density at most exp(-lo^2/2)
        while True:
            z = lo + (hi - lo) * _uniform(gen)
            if _uniform(gen) <= math.exp(0.5 * (lo - z) * (lo + z)):  # lo^2 - z^2, without overflowing
                return sign * z
    # Robert's optimal rate; far out (lo^2 would overflow) it is lo to within 1/lo
    lam = 0.5 * (lo + math.sqrt(lo * lo + 4.0)) if lo < 1e8 else lo + 1.0 / lo
    while True:
        z = lo + _std_exponential(gen) / lam
        if z <= hi and _uniform(gen) <= math.exp(-0.5 * (z - lam) ** 2):
            return sign * z


@jit(inline="always")
def draw(gen, code, p0, p1, p2, p3, pool):
    """One draw from the distribution ``(code, par)``; see the module docstring.

    Compiled into :func:`draws` (a batch) and :func:`draw_one` only: kernels call those,
    rather than inline the whole switch at each call site (seconds to compile, per site).
    """
    if code == FIXED:
        return p0
    if code == LOGNORMAL:
        return math.exp(p0 + p1 * gen.standard_normal())
    if code == GAMMA:
        return p1 * gen.standard_gamma(p0)
    if code == EXPONENTIAL:
        return p0 * gen.standard_exponential()
    if code == UNIFORM:
        return p0 + (p1 - p0) * gen.random()
    if code == TRIANGULAR:
        return _triangular_quantile(p0, p1, p2, gen.random())
    if code == PERT:
        return p0 + (p1 - p0) * gen.beta(p2, p3)
    if code == NORMAL:
        return p0 + p1 * truncated_standard_normal(gen, p2, p3)
    if code == WEIBULL:
        return p1 * gen.standard_exponential() ** (1.0 / p0)
    if code == BETA:
        return _beta(gen, p0, p1)
    if code == EMPIRICAL:
        n = int(p1)
        i = int(gen.random() * n)
        return pool[int(p0) + min(i, n - 1)]
    raise ValueError("unknown distribution code")


@jit
def draws(gen, code, p0, p1, p2, p3, pool, out, n, address, key, trial0):
    """``out[:n]``: n independent draws of ``(code, par)``, in order: one call per batch.

    With ``address`` 0, n draws in a row from ``gen`` (a stage's times for every new deal,
    their values). Otherwise one draw per trial: before draw i, ``gen`` (whose state is at
    ``address``) is reseeded to the stream ``key`` at trial ``trial0 + i`` (a quantity of
    theta for every trial of a block).
    """
    # One loop per family: with the switch of draw inside the loop, numba counts references
    # to gen and pool (atomically) around every draw.
    if code == LOGNORMAL:
        for i in range(n):
            if address != 0:
                reseed(address, key, trial0 + i)
            out[i] = math.exp(p0 + p1 * gen.standard_normal())
    elif code == BETA:
        for i in range(n):
            if address != 0:
                reseed(address, key, trial0 + i)
            out[i] = _beta(gen, p0, p1)
    elif code == GAMMA:
        for i in range(n):
            if address != 0:
                reseed(address, key, trial0 + i)
            out[i] = p1 * gen.standard_gamma(p0)
    elif code == EXPONENTIAL:
        for i in range(n):
            if address != 0:
                reseed(address, key, trial0 + i)
            out[i] = p0 * gen.standard_exponential()
    elif code == FIXED:
        for i in range(n):
            if address != 0:
                reseed(address, key, trial0 + i)
            out[i] = p0
    else:
        for i in range(n):
            if address != 0:
                reseed(address, key, trial0 + i)
            out[i] = draw(gen, code, p0, p1, p2, p3, pool)


@jit
def draw_one(gen, code, p0, p1, p2, p3, pool):
    """One draw of ``(code, par)``: for the pipeline's deals, whose draws change family
    from one to the next (compiled only for scenarios with a pipeline)."""
    return draw(gen, code, p0, p1, p2, p3, pool)


@jit(inline="always")
def _beta(gen, a, b):
    """Beta(a, b). Exact at any shapes: for a, b <= 1, Johnk's algorithm on the log scale
    (X = U^(1/a), Y = V^(1/b), kept when X + Y <= 1, returns X / (X + Y)): numba's
    version draws X and Y directly, which underflow to 0 for small shapes, and then rejects
    for ever (a concentration of 1e-300) or is biased; larger shapes through two gammas."""
    if a > 1.0 or b > 1.0:
        return gen.beta(a, b)
    while True:
        lx = math.log(gen.random()) / a if a > 0.0 else -math.inf
        ly = math.log(gen.random()) / b if b > 0.0 else -math.inf
        m = max(lx, ly)
        if m == -math.inf:  # both underflow in any precision: a, b astronomically small
            continue
        lse = m + math.log(math.exp(lx - m) + math.exp(ly - m))  # log(X + Y)
        if lse <= 0.0:
            return math.exp(lx - lse)


@jit(inline="always")
def _triangular_quantile(low, mode, high, u):
    # square roots taken factor by factor: (high - low) (high - mode) overflows for high near 1e308
    c = (mode - low) / (high - low)
    if u < c:
        return low + math.sqrt(u) * math.sqrt(high - low) * math.sqrt(mode - low)
    return high - math.sqrt(1.0 - u) * math.sqrt(high - low) * math.sqrt(high - mode)


@jit(inline="always")
def _triangular_cdf(low, mode, high, x):
    if x <= low:
        return 0.0
    if x >= high:
        return 1.0
    if x <= mode:
        return (x - low) ** 2 / ((high - low) * (mode - low))
    return 1.0 - (high - x) ** 2 / ((high - low) * (high - mode))


@jit(inline="always")
def _beta_log_kernel(y, al, be):
    """log(y^(al-1) (1-y)^(be-1)), with 0 log 0 = 0."""
    out = 0.0
    if al != 1.0:
        out += (al - 1.0) * math.log(y)
    if be != 1.0:
        out += (be - 1.0) * math.log1p(-y)
    return out


@jit
def draw_above(gen, code, p0, p1, p2, p3, pool, a, sf):
    """One draw of X conditioned on X > a, where P(X > a) = ``sf`` > 0. Exact.

    Rejection from the unconditional law while ``sf`` >= 0.25 (at most 4 tries on average);
    in the tail, a method of the family: truncated normal (normal, lognormal on the log
    scale), memorylessness (exponential), closed-form inversion (Weibull, uniform,
    triangular), an exponential proposal (gamma), a uniform proposal under the bounded
    density (PERT), or resampling the values above a (empirical).
    """
    if sf >= 0.25 or code == FIXED or code == BETA:
        while True:
            x = draw_one(gen, code, p0, p1, p2, p3, pool)
            if x > a:
                return x
    if code == LOGNORMAL:
        z = truncated_standard_normal(gen, (math.log(a) - p0) / p1, math.inf)
        return max(math.exp(p0 + p1 * z), a)
    if code == NORMAL:
        lo = max(p2, (a - p0) / p1)
        return max(p0 + p1 * truncated_standard_normal(gen, lo, p3), a)
    if code == EXPONENTIAL:
        return a + p0 * gen.standard_exponential()
    if code == WEIBULL:
        k, scale = p0, p1
        return scale * ((a / scale) ** k + gen.standard_exponential()) ** (1.0 / k)
    if code == UNIFORM:
        lo = max(a, p0)
        return lo + (p1 - lo) * gen.random()
    if code == TRIANGULAR:
        fa = _triangular_cdf(p0, p1, p2, a)
        return max(_triangular_quantile(p0, p1, p2, fa + (1.0 - fa) * gen.random()), a)
    if code == GAMMA:
        k, x0 = p0, a / p1  # in units of the scale; target density ~ x^(k-1) e^(-x) on x > x0
        if k < 1.0:  # (x / x0)^(k-1) <= 1 bounds the ratio to the Exp(1) tail
            while True:
                x = x0 + gen.standard_exponential()
                if gen.random() <= (x / x0) ** (k - 1.0):
                    return x * p1
        lam = 1.0 - (k - 1.0) / x0 if x0 > k - 1.0 else 0.5  # ratio maximal at x0 for this rate
        if lam < 1e-3:
            lam = 1e-3
        xm = max(x0, (k - 1.0) / (1.0 - lam)) if lam < 1.0 else x0
        log_m = (k - 1.0) * math.log(xm) - (1.0 - lam) * xm
        while True:
            x = x0 + gen.standard_exponential() / lam
            if math.log(gen.random()) <= (k - 1.0) * math.log(x) - (1.0 - lam) * x - log_m:
                return x * p1
    if code == PERT:
        low, high, al, be = p0, p1, p2, p3
        y0 = (a - low) / (high - low)
        ym = max(y0, (al - 1.0) / (al + be - 2.0))  # alpha, beta >= 1: density largest at ym on [y0, 1]
        log_m = _beta_log_kernel(ym, al, be)
        while True:
            y = y0 + (1.0 - y0) * gen.random()
            if y >= 1.0 or y <= 0.0:
                continue
            if math.log(gen.random()) <= _beta_log_kernel(y, al, be) - log_m:
                return low + (high - low) * y
    if code == EMPIRICAL:
        off, n = int(p0), int(p1)
        # first: how many of the sorted values are <= a (np.searchsorted(side="right") on
        # the run, NaN sorting last as numpy has it), searched by hand: numba's searchsorted
        # makes every run that loads this code import numba.np.arraymath (~55 ms)
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            x = pool[off + mid]
            if a < x or (x != x and a == a):
                hi = mid
            else:
                lo = mid + 1
        first = lo
        i = first + int(gen.random() * (n - first))
        return pool[off + min(i, n - 1)]
    raise ValueError("unknown distribution code")


@jit
def draw_parameters(streams, trial0, funnel, segment, theta):
    """Per-trial draws of a segment's rates and probabilities, each from its own stream.

    Parameters
    ----------
    streams : Streams
        One ``QUANTITY`` stream per slot of theta, reseeded for every trial from its key
        (see :func:`forecaster.engine._streams.reseed`), so a trial's draws depend only on
        the seed, the quantity and the trial's index.
    trial0 : int
        Index of the block's first trial in the run.
    funnel : Funnel
        ``param_codes[segment]``, ``param_pars[segment]``: the K quantities, in theta's
        layout (``THETA_LEADS``, ``THETA_GROWTH``, then ``THETA_CONVERT + s``).
    theta : float64 array, shape (trials, segments, K)
        Written: ``theta[:, segment, :]``.
    """
    codes, pars, pool = funnel.param_codes[segment], funnel.param_pars[segment], funnel.pool
    expect(streams, QUANTITY, codes.shape[0])
    gen, address = streams.gens[QUANTITY], streams.addresses[QUANTITY]
    n = theta.shape[0]
    column = np.empty(n)
    for j in range(codes.shape[0]):  # quantity by quantity, a draw per trial from its stream
        draws(gen, codes[j], pars[j, 0], pars[j, 1], pars[j, 2], pars[j, 3], pool, column, n, address,
              key_of(streams, QUANTITY, j), trial0)
        for t in range(n):
            theta[t, segment, j] = column[t]


@jit
def apply_shocks(streams, trial0, shocks, funnel, theta, month_factor):
    """Shocks shared by every segment (the scenario's ``shocks``), applied to drawn theta.

    For each trial one standard normal Z_0 multiplies every segment's lead rate by
    exp(sigma_leads Z_0 - sigma_leads^2 / 2) (mean 1; a cost per lead is divided by it),
    and one Z_s per stage shifts every segment's conversion of stage s on the log-odds
    scale: p -> 1 / (1 + (1 - p) / p * exp(-sigma_s Z_s)). Each Z comes from its own stream
    (``SHOCK_LEADS``, ``SHOCK_CONVERT`` per stage), reseeded per trial.

    With ``drift``, random walks by calendar month k after start's (k = 0 unmoved) go on
    from there: W_k = sum of k standard normals per walk (``DRIFT_LEADS``, and
    ``DRIFT_CONVERT`` per stage). New leads of month k then arrive at
    exp(drift_leads W_k - k drift_leads^2 / 2) times the rate and convert through stage s
    with p_s shifted by drift_convert_s W_{s,k} on the log-odds scale; what that does to
    the won leads of month k is written as one factor into ``month_factor``.

    Parameters
    ----------
    shocks : Shocks
        sigma_leads, sigma_convert (S,), drift_leads, drift_convert (S,).
    funnel : Funnel
        ``rate_is_cost``, shape (segments,).
    theta : float64, shape (trials, segments, K), changed in place
    month_factor : float64, shape (trials, segments, months), written (months = 0: no drift)
    """
    sigma_leads, sigma_convert = shocks.leads, shocks.convert
    drift_leads, drift_convert = shocks.drift_leads, shocks.drift_convert
    rate_is_cost = funnel.rate_is_cost
    n_seg, n_stages, n_months = theta.shape[1], sigma_convert.shape[0], month_factor.shape[2]
    expect(streams, SHOCK_LEADS, 1)
    expect(streams, SHOCK_CONVERT, n_stages)
    expect(streams, DRIFT_LEADS, 1)
    expect(streams, DRIFT_CONVERT, n_stages)
    lead_walk = np.zeros(n_months)
    walks = np.zeros((n_stages, n_months))
    for t in range(theta.shape[0]):
        if sigma_leads > 0.0:
            reseed_role(streams, SHOCK_LEADS, 0, trial0 + t)
            z = streams.gens[SHOCK_LEADS].standard_normal()
            factor = math.exp(sigma_leads * z - 0.5 * sigma_leads * sigma_leads)
            for g in range(n_seg):
                if rate_is_cost[g]:
                    theta[t, g, THETA_LEADS] /= factor
                else:
                    theta[t, g, THETA_LEADS] *= factor
        for s in range(n_stages):
            if sigma_convert[s] > 0.0:
                reseed_role(streams, SHOCK_CONVERT, s, trial0 + t)
                odds = math.exp(sigma_convert[s] * streams.gens[SHOCK_CONVERT].standard_normal())
                for g in range(n_seg):
                    p = theta[t, g, THETA_CONVERT + s]
                    if 0.0 < p < 1.0:
                        theta[t, g, THETA_CONVERT + s] = p * odds / (1.0 - p + p * odds)
        if n_months == 0:
            continue
        if drift_leads > 0.0:
            reseed_role(streams, DRIFT_LEADS, 0, trial0 + t)
        w = 0.0
        for k in range(n_months):
            if k > 0 and drift_leads > 0.0:
                w += streams.gens[DRIFT_LEADS].standard_normal()
            lead_walk[k] = math.exp(drift_leads * w - 0.5 * k * drift_leads * drift_leads)
        for s in range(n_stages):
            if drift_convert[s] > 0.0:
                reseed_role(streams, DRIFT_CONVERT, s, trial0 + t)
            w = 0.0
            for k in range(n_months):
                if k > 0 and drift_convert[s] > 0.0:
                    w += streams.gens[DRIFT_CONVERT].standard_normal()
                walks[s, k] = drift_convert[s] * w
        for g in range(n_seg):
            for k in range(n_months):
                f = lead_walk[k]
                for s in range(n_stages):
                    p = theta[t, g, THETA_CONVERT + s]
                    if 0.0 < p < 1.0 and walks[s, k] != 0.0:
                        odds = math.exp(walks[s, k])
                        f *= odds / (1.0 - p + p * odds)  # (p shifted) / p
                month_factor[t, g, k] = f


@jit(inline="always")
def _slipped(gen, time, slip_prob, slip_lo, slip_hi):
    """A deal's time after quarter-end slipping (``closing``); two uniforms always drawn, so
    the draws of later deals do not depend on this one. Times past the horizon stay."""
    u = gen.random()
    v = gen.random()
    return _slip_by(time, u, v, slip_prob, slip_lo, slip_hi)


@jit(inline="always")
def _slip_by(time, u, v, slip_prob, slip_lo, slip_hi):
    """``time`` slipped with the uniforms ``u`` (whether) and ``v`` (where in the window)."""
    if 0.0 <= time < slip_prob.shape[0] and u < slip_prob[int(time)]:
        day = int(time)
        lo = max(time, slip_lo[day])
        return lo + (slip_hi[day] - lo) * v
    return time


@jit(inline="always")
def _book(t, day, segment, value, rep, out):
    p = out.period_of_day[day]
    out.revenue[t, p, segment] += value
    out.won[t, p, segment] += 1
    if rep >= 0:
        out.bookings[t, out.quota_period_of_day[day], rep] += value


@jit
def simulate_new_leads(streams, trial0, funnel, segment, closing, theta, month_factor, out):
    """Won deals from one segment's new leads, for a block of trials.

    Without dispersion the won leads of the whole horizon are one Poisson draw,
    W ~ Poisson(sum_d m_d P), each given its arrival day d with probability
    m_d / sum_d m_d (by Poisson superposition this is exactly independent daily counts);
    the day is found through a guide table in O(1). With dispersion each day draws its own
    gamma multiplier and count.

    Each kind of draw has its own stream, reseeded for every trial from the seed, the
    stream and the trial's index; within a trial the i-th lead to be won draws its arrival
    day and stage times in index order. Two scenarios run with the same seed therefore
    share, trial by trial, every draw of every lead they both win (common random numbers).

    Parameters
    ----------
    streams : Streams
        ``COUNT``, ``MIXING``, ``ARRIVAL`` (won-lead counts, daily gamma multipliers,
        arrival days), ``VALUE``, ``REP``, ``SLIP`` (deal values, rep assignments,
        quarter-end slips), and one ``DAYS`` stream per stage in the order of
        ``funnel.lead_days_codes`` (drawn stage after stage, each reseeded in turn).
    trial0 : int
        Index of the block's first trial in the run.
    funnel : Funnel
        Row ``segment`` of: ``rate_is_cost`` (theta[THETA_LEADS] is a cost per lead, mean
        f_d / c, rather than a rate, r f_d), ``day_mean`` (f_d [leads per rate unit]),
        ``dispersion``, ``lead_days_codes``/``lead_days_pars`` (each stage's ``days``,
        longest mean first), ``value_codes``/``value_pars``, ``reps``/``n_reps``; and
        ``elapsed_months`` (k_d) and ``pool``.
    closing : Closing
        Per day a deal is due, the chance it slips and the window [lo, hi) it then lands
        in (uniformly from max(due, lo)) [days from start]; 0 days without ``closing``.
    theta : float64, shape (trials, segments, K)
        Per-trial draws (see :func:`draw_parameters`).
    month_factor : float64, shape (trials, segments, months) or (trials, segments, 0)
        The drift's factor on the won leads of each calendar month (see :func:`apply_shocks`).
    out : Outputs
        Reporting and commission period of each day; revenue, won (trials, periods,
        segments) and bookings (trials, commission periods, reps), added to.
    """
    n_stages = funnel.lead_days_codes.shape[1]
    for role in (COUNT, MIXING, ARRIVAL, VALUE, REP, SLIP):
        expect(streams, role, 1)
    expect(streams, DAYS, n_stages)
    # The trials run in _new_leads_trials, which returns early when a trial has more won
    # deals than ``times`` holds; the trial then runs again (its streams are reseeded, and
    # nothing is booked before the count is known) with larger arrays. Only here are arrays
    # reassigned: numba would count references to such an array on every use in a loop.
    times = np.empty(256)  # arrival day, then time so far, of each lead to be won [days]
    drawn = np.empty(256)  # a batch of draws, one per deal
    t = np.int64(0)  # not a literal 0: _new_leads_trials compiles for one type only
    while t < theta.shape[0]:
        t, need = _new_leads_trials(streams, trial0, t, funnel, segment, closing, theta, month_factor, out, times,
                                    drawn)
        if need > times.shape[0]:
            times = np.empty(max(need, 2 * times.shape[0]))
            drawn = np.empty(times.shape[0])


@jit
def _new_leads_trials(streams, trial0, first, funnel, segment, closing, theta, month_factor, out, times, drawn):
    """Trials ``first`` .. of :func:`simulate_new_leads` (see there), until one has more won
    deals than ``times`` holds. Returns the trial it stopped at (the block's length when
    done) and the room that trial needs (0 when done).

    The loops over deals draw in line for lognormal stage times and values, the usual case,
    and through :func:`draws` for the other families: a call passing arrays costs an atomic
    reference count per array, shared between threads for the scenario's arrays.
    """
    day_mean, elapsed_months, pool = funnel.day_mean[segment], funnel.elapsed_months, funnel.pool
    rate_is_cost, dispersion = funnel.rate_is_cost[segment], funnel.dispersion[segment]
    days_codes, days_pars = funnel.lead_days_codes[segment], funnel.lead_days_pars[segment]
    value_code, value_par = funnel.value_codes[segment], funnel.value_pars[segment]
    reps, n_reps = funnel.reps[segment], funnel.n_reps[segment]
    slip_prob, slip_lo, slip_hi = closing.slip_prob, closing.slip_lo, closing.slip_hi
    period_of_day, quota_period_of_day = out.period_of_day, out.quota_period_of_day
    revenue, won, bookings = out.revenue, out.won, out.bookings
    n_days = day_mean.shape[0]
    horizon = float(n_days)
    n_stages = days_codes.shape[0]
    gen_count, gen_mixing, gen_arrival = streams.gens[COUNT], streams.gens[MIXING], streams.gens[ARRIVAL]
    gen_value, gen_rep, gen_slip = streams.gens[VALUE], streams.gens[REP], streams.gens[SLIP]
    gen_days = streams.gens[DAYS]
    growth = np.empty(elapsed_months[n_days - 1] + 1)
    cum = np.empty(n_days)
    guide = np.empty(n_days, dtype=np.int64)
    counts = np.empty(n_days, dtype=np.int64)
    in_turn, no_key = np.int64(0), np.uint64(0)  # draws without reseeding (see draws)
    closing_on = slip_prob.shape[0] > 0
    room = times.shape[0]
    for t in range(first, theta.shape[0]):
        for role in (COUNT, MIXING, ARRIVAL, VALUE, REP, SLIP):
            reseed_role(streams, role, 0, trial0 + t)
        base = theta[t, segment, THETA_LEADS]
        p_win = 1.0
        for s in range(n_stages):
            p_win *= theta[t, segment, THETA_CONVERT + s]
        scale = (1.0 / base if rate_is_cost else base) * p_win
        if not scale > 0.0:
            continue
        growth[0] = 1.0
        for k in range(1, growth.shape[0]):
            growth[k] = growth[k - 1] * (1.0 + theta[t, segment, THETA_GROWTH])
        if month_factor.shape[2] > 0:
            for k in range(growth.shape[0]):
                growth[k] *= month_factor[t, segment, k]
        n_won = 0
        if dispersion > 0.0:
            for d in range(n_days):
                lam = scale * day_mean[d] * growth[elapsed_months[d]]
                lam *= gen_mixing.standard_gamma(1.0 / dispersion) * dispersion
                counts[d] = gen_count.poisson(lam)
                n_won += counts[d]
            if n_won > room:
                return t, n_won
            i = 0
            for d in range(n_days):
                for _ in range(counts[d]):
                    times[i] = d
                    i += 1
        else:
            total = 0.0
            for d in range(n_days):
                total += scale * day_mean[d] * growth[elapsed_months[d]]
                cum[d] = total
            n_won = gen_count.poisson(total)
            if n_won > room:
                return t, n_won
            if n_won > 0:
                d = 0
                for j in range(n_days):  # guide[j]: first day whose cumulative mean passes j / n_days of it
                    while d < n_days - 1 and cum[d] <= j * total / n_days:
                        d += 1
                    guide[j] = d
            for i in range(n_won):
                u = gen_arrival.random() * total
                d = guide[min(int(u / total * n_days), n_days - 1)]
                while d < n_days - 1 and cum[d] <= u:
                    d += 1
                times[i] = d
        # stage by stage over all of this trial's deals (independent draws pipeline well),
        # keeping only those still inside the horizon; each stage's stream in turn
        alive = n_won
        for s in range(n_stages):
            reseed_role(streams, DAYS, s, trial0 + t)
            # the draws first, then the deals kept: the draws do not wait on one another
            code = days_codes[s]
            if code == LOGNORMAL:
                mu, sigma = days_pars[s, 0], days_pars[s, 1]
                for i in range(alive):
                    drawn[i] = math.exp(mu + sigma * gen_days.standard_normal())
            else:
                draws(gen_days, code, days_pars[s, 0], days_pars[s, 1], days_pars[s, 2], days_pars[s, 3], pool,
                      drawn, alive, in_turn, no_key, trial0)
            kept = 0
            for i in range(alive):
                x = times[i] + drawn[i]
                times[kept] = x
                kept += 0.0 <= x < horizon  # never an index out of the horizon, whatever a draw gives
            alive = kept
        # every deal still alive draws its value, in order (its own stream: the reps' and
        # slips' draws in between do not touch it)
        lognormal_value = value_code == LOGNORMAL
        if not lognormal_value:
            draws(gen_value, value_code, value_par[0], value_par[1], value_par[2], value_par[3], pool, drawn, alive,
                  in_turn, no_key, trial0)
        for i in range(alive):
            if lognormal_value:
                value = math.exp(value_par[0] + value_par[1] * gen_value.standard_normal())
            else:
                value = drawn[i]
            rep = -1
            if n_reps > 0:
                rep = reps[min(int(gen_rep.random() * n_reps), n_reps - 1)]
            time = times[i]
            if closing_on:
                time = _slipped(gen_slip, time, slip_prob, slip_lo, slip_hi)
                if time >= horizon:
                    continue
            day = int(time)
            p = period_of_day[day]
            revenue[t, p, segment] += value
            won[t, p, segment] += 1
            if rep >= 0:
                bookings[t, quota_period_of_day[day], rep] += value
    return theta.shape[0], 0


@jit
def simulate_pipeline(streams, trial0, funnel, pipeline, closing, theta, out):
    """Won deals from the open pipeline, for a block of trials.

    Every deal draws its conversion, its times through every remaining stage, its value
    (unless given) and its rep in every trial, whether it is won or not: then a change to
    one deal's chances cannot shift the draws of the deals after it (common random
    numbers between scenarios).

    Parameters
    ----------
    streams : Streams
        ``CONVERT``, ``DAYS``, ``VALUE``, ``REP``, ``SLIP``: the conversion uniforms,
        stage times, values, rep assignments and quarter-end slips; each is reseeded for
        every trial.
    trial0 : int
        Index of the block's first trial in the run.
    funnel : Funnel
        ``days_codes``/``days_pars`` (segments, stages) in stage order,
        ``value_codes``/``value_pars``, ``reps``/``n_reps``, ``pool``.
    pipeline : Pipeline
        The deals: segment and stage; age (whole days in its stage at start); mode
        (ORDINARY, NO_MASS, LOST_ONLY or WON_ONLY, see the constants); odds
        S_lost(a) / S(a) for ORDINARY deals; sf S(a) = P(days > a); pending: with
        ``closing``, the chance that a deal open at ``start`` that will be won is a win
        already due that slipped and still waits for its quarter's end (then it closes
        uniformly in [closing.pending_lo, closing.pending_hi) days from start, without
        slipping again), 0 otherwise (the same two slip uniforms decide it, so a deal with
        0 draws as before); amount, the deal's value or -1 to draw it; owner, a rep index
        or -1 to assign one as for a new deal.
    closing : Closing
        As in :func:`simulate_new_leads`.
    out : Outputs
        As in :func:`simulate_new_leads`, added to.
    """
    days_codes, days_pars, value_codes, value_pars = funnel.days_codes, funnel.days_pars, funnel.value_codes, \
        funnel.value_pars
    pool, segment_reps, segment_n_reps = funnel.pool, funnel.reps, funnel.n_reps
    slip_prob, slip_lo, slip_hi = closing.slip_prob, closing.slip_lo, closing.slip_hi
    pending_lo, pending_hi = closing.pending_lo, closing.pending_hi
    horizon = float(out.period_of_day.shape[0])
    closing_on = slip_prob.shape[0] > 0
    n_stages = days_codes.shape[1]
    for role in (CONVERT, DAYS, VALUE, REP, SLIP):
        expect(streams, role, 1)
    gen_convert, gen_days, gen_value = streams.gens[CONVERT], streams.gens[DAYS], streams.gens[VALUE]
    gen_rep, gen_slip = streams.gens[REP], streams.gens[SLIP]
    for t in range(theta.shape[0]):
        for role in (CONVERT, DAYS, VALUE, REP, SLIP):
            reseed_role(streams, role, 0, trial0 + t)
        for i in range(pipeline.segment.shape[0]):
            g, s0, mode = pipeline.segment[i], pipeline.stage[i], pipeline.mode[i]
            p = theta[t, g, THETA_CONVERT + s0]
            if mode == ORDINARY:
                q = p / (p + (1.0 - p) * pipeline.odds[i])
            elif mode == WON_ONLY:
                q = 1.0 if p > 0.0 else 0.0
            elif mode == LOST_ONLY and p < 1.0:
                q = 0.0
            else:  # NO_MASS, or LOST_ONLY with p = 1: leaves at time 0 with its conversion
                q = p
                mode = NO_MASS
            for s in range(s0 + 1, n_stages):
                q *= theta[t, g, THETA_CONVERT + s]
            converts = gen_convert.random() < q
            u = v = 1.0
            if closing_on:  # the slip's two uniforms, drawn for every deal
                u = gen_slip.random()
                v = gen_slip.random()
            pending = pipeline.pending[i]
            waiting = u < pending
            # The usual families are drawn in line, as draw_one and draw_above would draw them:
            # a call to those counts references to gen and pool (atomically) on every draw.
            time = 0.0
            sf = pipeline.sf[i]
            if mode != NO_MASS and not (waiting and sf <= 0.0):
                a = pipeline.age[i]
                code = days_codes[g, s0]
                p0, p1 = days_pars[g, s0, 0], days_pars[g, s0, 1]
                if code == LOGNORMAL and sf >= 0.25:  # rejection from the unconditional law
                    x = math.exp(p0 + p1 * _std_normal(gen_days))
                    while not x > a:
                        x = math.exp(p0 + p1 * _std_normal(gen_days))
                elif code == LOGNORMAL:  # the tail: a truncated normal on the log scale
                    z = truncated_standard_normal(gen_days, (math.log(a) - p0) / p1, math.inf)
                    x = max(math.exp(p0 + p1 * z), a)
                elif code == WEIBULL and sf >= 0.25:
                    x = p1 * _std_exponential(gen_days) ** (1.0 / p0)
                    while not x > a:
                        x = p1 * _std_exponential(gen_days) ** (1.0 / p0)
                elif code == WEIBULL:  # the tail, by inversion
                    x = p1 * ((a / p1) ** p0 + _std_exponential(gen_days)) ** (1.0 / p0)
                else:
                    x = draw_above(gen_days, code, p0, p1, days_pars[g, s0, 2], days_pars[g, s0, 3], pool, a, sf)
                time = x - a
            for s in range(s0 + 1, n_stages):
                code = days_codes[g, s]
                p0, p1 = days_pars[g, s, 0], days_pars[g, s, 1]
                if code == LOGNORMAL:
                    time += math.exp(p0 + p1 * _std_normal(gen_days))
                elif code == GAMMA:
                    time += p1 * _std_gamma(gen_days, p0)
                elif code == WEIBULL:
                    time += p1 * _std_exponential(gen_days) ** (1.0 / p0)
                else:
                    time += draw_one(gen_days, code, p0, p1, days_pars[g, s, 2], days_pars[g, s, 3], pool)
            value = pipeline.amount[i]
            if value < 0.0:
                code = value_codes[g]
                p0, p1 = value_pars[g, 0], value_pars[g, 1]
                if code == LOGNORMAL:
                    value = math.exp(p0 + p1 * _std_normal(gen_value))
                elif code == EMPIRICAL:
                    n = int(p1)
                    value = pool[int(p0) + min(int(_uniform(gen_value) * n), n - 1)]
                else:
                    value = draw_one(gen_value, code, p0, p1, value_pars[g, 2], value_pars[g, 3], pool)
            rep = pipeline.owner[i]
            n_reps = segment_n_reps[g]
            if n_reps > 0:
                pick = segment_reps[g, min(int(gen_rep.random() * n_reps), n_reps - 1)]
                if rep < 0:
                    rep = pick
            if waiting:  # a slipped win still to land in this quarter's window
                time = pending_lo + (pending_hi - pending_lo) * v
            elif closing_on:  # u is uniform again, given not waiting
                time = _slip_by(time, (u - pending) / (1.0 - pending), v, slip_prob, slip_lo, slip_hi)
            if converts and 0.0 <= time < horizon:
                _book(t, int(time), g, value, rep, out)


@jit(inline="always")
def _share_out(taken, counts, out):
    """Split ``taken`` deals among segments holding ``counts`` (sum >= taken): in proportion,
    whole deals by largest remainder, ties to the first segment. Writes ``out``."""
    total = 0
    for g in range(counts.shape[0]):
        total += counts[g]
    given = 0
    for g in range(counts.shape[0]):
        out[g] = (taken * counts[g]) // total if total > 0 else 0
        given += out[g]
    while given < taken:
        best, best_rem = -1, -1.0
        for g in range(counts.shape[0]):
            if out[g] < counts[g]:
                rem = taken * counts[g] / total - out[g]
                if rem > best_rem:
                    best, best_rem = g, rem
        out[best] += 1
        given += 1


@jit
def apply_capacity(streams, trial0, capacity, due, out):
    """The team's capacity (``capacity``): deals due beyond a month's room wait, oldest first.

    The kernels booked each trial's won deals by the day they were due (``due``). Day by
    day, deals carried over from earlier days are won first, then the day's own, while the
    month has room: C_k = capacity_k * Gamma(1/cv^2, cv^2) (drawn per trial and month, from
    the ``CAPACITY`` stream), rounded to whole deals. The rest are carried to the next day.
    When only some of the waiting deals fit, they are shared among segments in proportion
    (whole deals); each segment's value moves with its share taken, and each rep's bookings
    with the share of the value taken (so bookings still add up to revenue). What still
    waits at ``end`` is not won within the horizon.

    Parameters
    ----------
    capacity : Capacity
        ``of_day`` (days,): the capacity of the day's month [deals]; ``month_of_day``
        (days,): the day's month, counted from start's; ``cv``.
    due : Outputs
        Deals by the day they were due: revenue, won (trials, days, segments), bookings
        (trials, days, reps).
    out : Outputs
        The outputs, by reporting and commission period, added to.
    """
    capacity_of_day, month_of_day, cv = capacity.of_day, capacity.month_of_day, capacity.cv
    day_revenue, day_won, day_bookings = due.revenue, due.won, due.bookings
    period_of_day, cperiod_of_day = out.period_of_day, out.quota_period_of_day
    revenue, won, bookings = out.revenue, out.won, out.bookings
    expect(streams, CAPACITY, 1)
    gen = streams.gens[CAPACITY]
    n_days, n_seg, n_reps = day_won.shape[1], day_won.shape[2], day_bookings.shape[2]
    carry_n, carry_v, carry_b = np.zeros(n_seg, dtype=np.int64), np.zeros(n_seg), np.zeros(n_reps)
    old_n, old_v, old_b = np.zeros(n_seg, dtype=np.int64), np.zeros(n_seg), np.zeros(n_reps)
    due_n = np.zeros(n_seg, dtype=np.int64)
    take = np.zeros(n_seg, dtype=np.int64)
    for t in range(day_won.shape[0]):
        reseed_role(streams, CAPACITY, 0, trial0 + t)
        _move(carry_n, carry_v, carry_b, old_n, old_v, old_b)  # nothing carried into a trial
        room = 0
        for d in range(n_days):
            if d == 0 or month_of_day[d] != month_of_day[d - 1]:
                c = capacity_of_day[d]
                if cv > 0.0:
                    c *= gen.standard_gamma(1.0 / (cv * cv)) * cv * cv
                room = int(c + 0.5)
            p, cp = period_of_day[d], cperiod_of_day[d]
            # the deals already waiting go first, then the day's own; what is not taken waits
            _move(carry_n, carry_v, carry_b, old_n, old_v, old_b)
            room -= _admit(room, old_n, old_v, old_b, take, t, p, cp, won, revenue, bookings,
                           carry_n, carry_v, carry_b)
            for g in range(n_seg):
                due_n[g] = day_won[t, d, g]
            room -= _admit(room, due_n, day_revenue[t, d], day_bookings[t, d], take, t, p, cp, won, revenue, bookings,
                           carry_n, carry_v, carry_b)


@jit(inline="always")
def _move(n, v, b, to_n, to_v, to_b):
    """Copy a queue (deals ``n`` and values ``v`` by segment, bookings ``b`` by rep) into
    ``to_*`` and empty it. Loops: slice assignments compile numba's string formatting."""
    for g in range(n.shape[0]):
        to_n[g] = n[g]
        to_v[g] = v[g]
        n[g] = 0
        v[g] = 0.0
    for r in range(b.shape[0]):
        to_b[r] = b[r]
        b[r] = 0.0


@jit
def _admit(room, counts, values, rep_values, take, t, p, cp, won, revenue, bookings, left_n, left_v, left_b):
    """Win up to ``room`` of a queue of deals (``counts`` and ``values`` by segment, the reps'
    bookings ``rep_values``) in reporting period ``p`` and commission period ``cp``: in
    proportion among segments (whole deals), values with their share, reps' bookings with
    the share of the value taken. What is not taken is added to ``left_*``. Returns how
    many deals were taken."""
    n_seg = counts.shape[0]
    total = 0
    for g in range(n_seg):
        total += counts[g]
    if total == 0:
        return 0
    taken = min(room, total)
    _share_out(taken, counts, take)
    queued_value, taken_value = 0.0, 0.0
    for g in range(n_seg):
        if counts[g] > 0:
            queued_value += values[g]
            taken_value += values[g] * take[g] / counts[g]
    # reps' bookings move with the value taken, so that they still add up to revenue
    frac_all = taken_value / queued_value if queued_value > 0.0 else taken / total
    for g in range(n_seg):
        if counts[g] == 0:
            continue
        frac = take[g] / counts[g]
        won[t, p, g] += take[g]
        revenue[t, p, g] += values[g] * frac
        left_n[g] += counts[g] - take[g]
        left_v[g] += values[g] * (1.0 - frac)
    for r in range(rep_values.shape[0]):
        if rep_values[r] != 0.0:
            bookings[t, cp, r] += rep_values[r] * frac_all
            left_b[r] += rep_values[r] * (1.0 - frac_all)
    return taken


# The test helpers below coerce their scalars, so that the functions they call compile for
# the kernels' types only (one signature each, whatever a test passes).

@jit
def draw_many(gen, code, par, pool, out):
    """Fill ``out`` with independent draws of ``(code, par)`` (tests and benchmarks)."""
    draws(gen, np.int64(code), par[0], par[1], par[2], par[3], pool, out, out.shape[0], np.int64(0), np.uint64(0),
          np.int64(0))


@jit
def draw_above_many(gen, code, par, pool, a, sf, out):
    """Fill ``out`` with draws conditioned on exceeding ``a`` (tests and benchmarks)."""
    for i in range(out.shape[0]):
        out[i] = draw_above(gen, np.int64(code), par[0], par[1], par[2], par[3], pool, float(a), float(sf))


@jit
def truncated_standard_normal_many(gen, a, b, out):
    """Fill ``out`` with standard normals conditioned on [a, b] (tests)."""
    for i in range(out.shape[0]):
        out[i] = truncated_standard_normal(gen, float(a), float(b))
