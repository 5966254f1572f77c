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
from forecaster.engine._streams import expect, key_of, python_of, reseed, reseed_role
from forecaster.engine.interface import (  # noqa: F401 (codes and modes re-exported for tests)
    ARRIVAL,
    BETA,
    CANCEL,
    CANCEL_PROBABILITY,
    CAPACITY,
    CLAWBACK,
    CONVERT,
    COUNT,
    COUNTS_DRIFT_CONVERT,
    COUNTS_DRIFT_LEADS,
    COUNTS_MIXING,
    CUSTOMER,
    DAYS,
    DRIFT_CONVERT,
    DRIFT_LEADS,
    DROPOUT,
    EMPIRICAL,
    EXPANSION,
    EXPONENTIAL,
    FIXED,
    GAMMA,
    LOGNORMAL,
    LOST,
    LOST_ONLY,
    MIXING,
    NO_MASS,
    NO_RESPONSE,
    NONE,
    NORMAL,
    ORDINARY,
    PER_MONTH,
    PERT,
    PIPELINE_COUNTS,
    PIPELINE_STAGE_VALUE,
    POWER,
    QUANTITY,
    RENEW,
    RENEWAL,
    REP,
    REPEAT,
    REPEAT_BUYER,
    REPEAT_VALUE,
    RESPONSE_ELASTICITY,
    RESPONSE_HALF_SATURATION,
    RESPONSE_SLOPE,
    SHOCK_CONVERT,
    SHOCK_LEADS,
    SLIP,
    STAGE_COUNTS,
    STAGE_VALUE,
    SUBSCRIPTION,
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

_LOOPS_WRITTEN_OUT = None
"""(A marker for the comments that point here.) A won deal's booking (its period's revenue
and count, its rep's bookings) and its rep's pick are written out in each per-deal loop
(new leads, pipeline, the moves kernels, events), with the output arrays taken out of the
record before the loop and reps indexed in the (segments, reps) table. As ``inline="always"``
helpers taking the record, a rep row and the generator (258da96), numba counted references
to them on every deal: r1 on one thread fell from 42,000-43,700 to 33,600-38,300 trials/s
(interleaved runs, benchmarks/RESULTS.md). The slip helpers (``_slipped``, ``_slip_by``) are
still inlined per deal where a scenario has quarter-end slips; not measured."""

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
def softplus(z):
    """log(1 + e^z) without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@jit
def response_log(curve, log_x, beta, log_kappa, n):
    """log(g(B) / g(B0)) of a response curve (v2 C.2) at log x = log(B / B0): beta log x for
    ``POWER``; for ``HILL``, log(x^n (kappa^n + 1) / (kappa^n + x^n)) with log kappa = log(K /
    B0), in logs so that no power overflows or underflows. Exactly 0 at x = 1; -inf at x = 0."""
    if curve == NO_RESPONSE:
        return 0.0
    if log_x == -math.inf:
        return -math.inf
    if curve == POWER:
        return beta * log_x
    a, b = n * log_kappa, n * log_x
    if a == math.inf:  # K far above every budget: x^n
        return b
    if a == -math.inf:  # K far below: flat at the ceiling
        return 0.0
    return b + softplus(-a) - softplus(b - a)


@jit
def response_factor(curve, x, beta, kappa, n):
    """g(B) / g(B0) at budget ratio ``x`` = B / B0 and ``kappa`` = K / B0 (see
    :func:`response_log`): 1 without a response, 0 at x = 0."""
    if curve == NO_RESPONSE:
        return 1.0
    if not x > 0.0:
        return 0.0
    return math.exp(response_log(curve, math.log(x), beta, math.log(kappa) if kappa > 0.0 else -math.inf, n))


@jit
def lead_growth(funnel, theta, t, segment, growth):
    """Month k's factor on a segment's lead rate in trial ``t``, into ``growth[k]``:
    (1 + growth_per_month)^k, times the response of month k's budget (v2 C), g(B_k) / g(B0)
    with the trial's draws of the curve (1 without a response)."""
    growth[0] = 1.0
    for k in range(1, growth.shape[0]):
        growth[k] = growth[k - 1] * (1.0 + theta[t, segment, THETA_GROWTH])
    curve = funnel.response_curve[segment]
    if curve != NO_RESPONSE:
        j = funnel.response_slot[segment]
        beta = theta[t, segment, j + RESPONSE_ELASTICITY]
        half = theta[t, segment, j + RESPONSE_HALF_SATURATION]
        log_kappa = math.log(half) - funnel.log_reference_budget[segment] if half > 0.0 else -math.inf
        n = theta[t, segment, j + RESPONSE_SLOPE]
        for k in range(growth.shape[0]):
            growth[k] *= math.exp(response_log(curve, funnel.log_budget_ratio[segment, k], beta, log_kappa, n))


@jit(inline="always")
def arrival_growth(funnel, theta, month_factor, t, segment, growth):
    """:func:`lead_growth`, times the trial's month factors ``month_factor[t, segment, k]``
    (the shocks' drift and seasonality, :func:`apply_shocks`; shape (trials, segments, 0)
    without): month k's factor on the segment's arrivals in trial ``t``, into ``growth[k]``."""
    lead_growth(funnel, theta, t, segment, growth)
    if month_factor.shape[2] > 0:
        for k in range(growth.shape[0]):
            growth[k] *= month_factor[t, segment, k]


@jit(inline="always")
def cumulate(values, out):
    """Running sums of ``values`` into ``out`` (the same shape; it may be ``values`` itself);
    returns the total."""
    total = 0.0
    for d in range(values.shape[0]):
        total += values[d]
        out[d] = total
    return total


@jit
def lead_growths(funnel, theta, segment, out):
    """:func:`lead_growth` of every trial of ``theta`` (trials, segments, K) into ``out``
    (trials, months), for the results layer (the expected arrivals of the summary's funnel)."""
    for t in range(theta.shape[0]):
        lead_growth(funnel, theta, t, segment, out[t])


@jit
def day_means(scale, day_mean, growth, elapsed_months, dispersion, gen_mixing, out):
    """Each day's mean arrivals of a segment in one trial, into ``out`` (shape (days,)):
    ``scale`` (leads a day's unit, times whatever share is counted) x ``day_mean[d]`` x
    ``growth[month of d]`` (:func:`lead_growth`), times, with ``dispersion`` > 0, the day's
    gamma multiplier (mean 1, variance ``dispersion``) drawn from ``gen_mixing`` day by day.
    Every kernel that splits a segment's arrivals (won, lost, not won, stage values) draws the
    multipliers this way from the same mixing stream, so they share each day's."""
    for d in range(day_mean.shape[0]):
        m = scale * day_mean[d] * growth[elapsed_months[d]]
        if dispersion > 0.0:
            m *= gen_mixing.standard_gamma(1.0 / dispersion) * dispersion
        out[d] = m


def draw_parameters(streams, trial0, funnel, segment, theta):
    """Per-trial draws of a segment's rates and probabilities, each from its own stream.

    Python around the kernel :func:`draws`, once per quantity (as :func:`simulate_new_leads`
    is around :func:`new_leads_trials`: compiled, this loop would have numba optimise
    ``draws`` again inside it, about 1 s of a first run).

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
    python_of(expect)(streams, QUANTITY, codes.shape[0])
    gen, address = streams.gens[QUANTITY], streams.addresses[QUANTITY]
    n = theta.shape[0]
    column = np.empty(n)
    for j in range(codes.shape[0]):  # quantity by quantity, a draw per trial from its stream
        draws(gen, codes[j], pars[j, 0], pars[j, 1], pars[j, 2], pars[j, 3], pool, column, n, address,
              python_of(key_of)(streams, QUANTITY, j), trial0)
        theta[:, segment, j] = column


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


_ROOM: dict[tuple[str, int], int] = {}
"""Where the arrays of :func:`simulate_new_leads` and :func:`simulate_pipeline` start, by
array and segment index [deals], at most :data:`ROOM_CAP`: for the new leads' scratch arrays
the most won deals a trial of that segment index has asked room for in this process (it
only grows, up to the cap); for the logs, what the last block with trials booked, and a
quarter more. Only a starting size: a trial that needs more runs again with larger
arrays, the same draws."""
ROOM_CAP = {"new leads": 1 << 16, "new leads' log": 1 << 20, "pipeline's log": 1 << 20}
"""The largest starting size of each array [deals]: past it a block's few calls to grow
cost nothing beside its trials, and one extreme scenario does not make every later block
of the process allocate its size."""


def _remember_room(array: str, segment: int, deals: int) -> None:
    """Start the next block's ``array`` (:data:`_ROOM`) with room for ``deals``."""
    _ROOM[(array, segment)] = max(256, min(deals, ROOM_CAP[array]))


def simulate_new_leads(streams, trial0, funnel, segment, closing, theta, month_factor, out, keep_log, stage_values,
                       stage_revenue, count_streams, counts):
    """Won deals from one segment's new leads, for a block of trials.

    Python around the kernel :func:`new_leads_trials`, which runs the trials: this function
    makes its arrays and grows them when a trial needs more room, once a block or so. It is
    not compiled: numba links a compiled caller's callees into its code and optimises them
    again there, which cost a first run about 4 s for this loop (and 3 s for
    :func:`simulate_pipeline`'s) and bought nothing.

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
    keep_log : bool
        Also return every deal booked, in order (the customers it creates, see
        :func:`simulate_customers`); otherwise the log is empty.
    stage_values : StageValues
        With a value on some stage of this segment (v2 F11), every lead to be won books it in
        ``stage_revenue`` (trials, periods, segments) on the day it converts out of that
        stage: its exit time is its arrival plus its times through the stages up to there,
        in stage order; the times the loop above did not draw (it stops a deal once it is
        past the horizon) and the values come from the ``STAGE_VALUE`` stream, deal by deal.
    count_streams, counts : Streams, StageCounts
        With ``counts.on`` (v2 F1), every lead to be won enters each stage the segment passes
        at its arrival plus its times through the stages before, in stage order, counted in
        ``counts.entries`` when inside the horizon; the times the loop did not draw come from
        ``count_streams`` (``entries_of_won``: one stream, ``STAGE_COUNTS``), deal by deal.

    Returns
    -------
    (trial, day, segment, value, rep) : the deal log, five arrays of equal length (empty
        without ``keep_log``)
    (cycle_trial, cycle) : with ``counts.cycle`` (v2 F1), each deal booked inside the horizon:
        its trial and its time from arrival to win [days] (slips included); else empty
    """
    n_stages = funnel.lead_days_codes.shape[1]
    for role in (COUNT, MIXING, ARRIVAL, VALUE, REP, SLIP, STAGE_VALUE):
        python_of(expect)(streams, role, 1)
    python_of(expect)(streams, DAYS, n_stages)
    valued = stage_values.valued[segment, 0] != 0  # read from the data: a literal False would compile apart
    for k in range(1, n_stages):
        valued = valued or stage_values.valued[segment, k] != 0
    counting = counts.on != 0
    cycling = counts.cycle != 0  # v2 F1: each booked deal's time from arrival to win
    record = valued or counting or cycling  # keep each lead's arrival and stage times
    if counting:
        python_of(expect)(count_streams, STAGE_COUNTS, 1)
    logging = keep_log or cycling  # the cycle times go with the deal log
    # The trials run in new_leads_trials, which returns early when a trial has more won
    # deals than ``times`` holds; the trial then runs again (its streams are reseeded, and
    # nothing is booked before the count is known) with larger arrays. Only here are arrays
    # reassigned: numba would count references to such an array on every use in a loop.
    # They start at the most room a trial of the segment has asked for (_ROOM): each return costs
    # a call from Python (about 0.25 ms), and arrays grown from 256 in every block cost r1
    # 10% of its trials' time.
    size = _ROOM.get(("new leads", segment), 256)
    times = np.empty(size)  # arrival day, then time so far, of each lead to be won [days]
    drawn = np.empty(size)  # a batch of draws, one per deal
    room = _ROOM.get(("new leads' log", segment), 256) if logging else 0
    log_trial, log_day = np.empty(room, dtype=np.int64), np.empty(room, dtype=np.int64)
    log_segment, log_value, log_rep = np.empty(room, dtype=np.int64), np.empty(room), np.empty(room, dtype=np.int64)
    log_n = np.zeros(1, dtype=np.int64)
    log_cycle = np.empty(room if cycling else 0)
    # with stage values: each lead's arrival, its index before the loop over stages dropped
    # deals, and its time in each stage (NaN where not drawn)
    arrival, orig = np.empty(size if record else 0), np.empty(size if record else 0, dtype=np.int64)
    stage_t = np.empty((size if record else 0, n_stages))
    t, most = 0, 0  # the most won deals a trial of the block needed room for
    while True:  # at least one call, even without trials: a block of 0 trials loads the kernel (blocks.prepare)
        t, need, need_log = new_leads_trials(streams, trial0, t, funnel, segment, closing, theta, month_factor, out,
                                             times, drawn, logging, log_trial, log_day, log_segment, log_value,
                                             log_rep, log_n, valued, stage_values, stage_revenue, arrival, orig,
                                             stage_t, record, count_streams, counts, cycling, log_cycle)
        if t >= theta.shape[0]:
            break
        most = max(most, need)
        if need > times.shape[0]:
            times = np.empty(max(need, 2 * times.shape[0]))
            drawn = np.empty(times.shape[0])
            if record:
                arrival, orig = np.empty(times.shape[0]), np.empty(times.shape[0], dtype=np.int64)
                stage_t = np.empty((times.shape[0], n_stages))
        if need_log > log_trial.shape[0]:
            longer = max(need_log, 2 * log_trial.shape[0])
            log_trial, log_day, log_segment, log_value, log_rep = _grown(
                log_trial, log_day, log_segment, log_value, log_rep, log_n[0], longer)
            if cycling:
                grown = np.empty(longer)
                grown[:log_n[0]] = log_cycle[:log_n[0]]
                log_cycle = grown
    n = log_n[0]
    if theta.shape[0] > 0:
        _remember_room("new leads", segment, max(most, size))  # the most asked for, this block or before
        if logging:
            _remember_room("new leads' log", segment, int(n * 1.25))
    k = n if keep_log else 0  # the deal log only when asked for; the cycle times with their trials
    return (log_trial[:k], log_day[:k], log_segment[:k], log_value[:k], log_rep[:k], log_trial[:n] if cycling
            else log_trial[:0], log_cycle[:n])


@jit
def _grown(log_trial, log_day, log_segment, log_value, log_rep, n, room):
    """A deal log's arrays with room for ``room`` deals, the first ``n`` kept."""
    a, b, c = np.empty(room, dtype=np.int64), np.empty(room, dtype=np.int64), np.empty(room, dtype=np.int64)
    d, e = np.empty(room), np.empty(room, dtype=np.int64)
    a[:n], b[:n], c[:n], d[:n], e[:n] = log_trial[:n], log_day[:n], log_segment[:n], log_value[:n], log_rep[:n]
    return a, b, c, d, e


@jit
def new_leads_trials(streams, trial0, first, funnel, segment, closing, theta, month_factor, out, times, drawn,
                     keep_log, log_trial, log_day, log_segment, log_value, log_rep, log_n, valued, stage_values,
                     stage_revenue, arrival, orig, stage_t, record, count_streams, tally, cycling, log_cycle):
    """Trials ``first`` .. of :func:`simulate_new_leads` (see there), until one has more won
    deals than ``times`` (or, with ``keep_log``, the log) holds. Returns the trial it stopped
    at (the block's length when done), the room that trial needs in ``times`` and in the log
    (0 when done).

    The loops over deals draw in line for lognormal stage times and values, the usual case,
    and through :func:`draws` for the other families: a call passing arrays costs an atomic
    reference count per array, shared between threads for the scenario's arrays.
    """
    day_mean, elapsed_months, pool = funnel.day_mean[segment], funnel.elapsed_months, funnel.pool
    rate_is_cost, dispersion = funnel.rate_is_cost[segment], funnel.dispersion[segment]
    days_codes, days_pars = funnel.lead_days_codes[segment], funnel.lead_days_pars[segment]
    value_code, value_par = funnel.value_codes[segment], funnel.value_pars[segment]
    reps, n_reps = funnel.reps, funnel.n_reps[segment]
    slip_prob, slip_lo, slip_hi = closing.slip_prob, closing.slip_lo, closing.slip_hi
    out_period, out_quota_period = out.period_of_day, out.quota_period_of_day
    out_revenue, out_won, out_bookings = out.revenue, out.won, out.bookings
    n_days = day_mean.shape[0]
    horizon = float(n_days)
    n_stages = days_codes.shape[0]
    gen_count, gen_mixing, gen_arrival = streams.gens[COUNT], streams.gens[MIXING], streams.gens[ARRIVAL]
    gen_value, gen_rep, gen_slip = streams.gens[VALUE], streams.gens[REP], streams.gens[SLIP]
    gen_days = streams.gens[DAYS]
    growth = np.empty(elapsed_months[n_days - 1] + 1)
    cum, mean = np.empty(n_days), np.empty(n_days)
    guide = np.empty(n_days, dtype=np.int64)
    counts = np.empty(n_days, dtype=np.int64)
    in_turn, no_key = np.int64(0), np.uint64(0)  # draws without reseeding (see draws)
    closing_on = slip_prob.shape[0] > 0
    room = times.shape[0]
    lead_period = tally.period_of_day
    arrived = np.zeros(tally.arrivals.shape[1], dtype=np.int64)
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
        arrival_growth(funnel, theta, month_factor, t, segment, growth)
        n_won = 0
        day_means(scale, day_mean, growth, elapsed_months, dispersion, gen_mixing, mean)
        if dispersion > 0.0:
            for d in range(n_days):
                counts[d] = gen_count.poisson(mean[d])
                n_won += counts[d]
            if n_won > room:
                return t, n_won, 0
            i = 0
            for d in range(n_days):
                for _ in range(counts[d]):
                    times[i] = d
                    i += 1
        else:
            total = cumulate(mean, cum)
            n_won = gen_count.poisson(total)
            if n_won > room:
                return t, n_won, 0
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
        if tally.leads != 0:  # v2 E.3: the won leads by arrival period, added once the trial is booked
            for p in range(arrived.shape[0]):
                arrived[p] = 0
            for i in range(n_won):
                arrived[lead_period[int(times[i])]] += 1
        # stage by stage over all of this trial's deals (independent draws pipeline well),
        # keeping only those still inside the horizon; each stage's stream in turn
        alive = n_won
        if record:
            for i in range(n_won):
                arrival[i] = times[i]
                orig[i] = i
                for k in range(n_stages):
                    stage_t[i, k] = math.nan
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
            if record:
                column = stage_values.lead_stage[segment, s]
                for i in range(alive):
                    stage_t[orig[i], column] = drawn[i]
                    orig[kept] = orig[i]
                    x = times[i] + drawn[i]
                    times[kept] = x
                    kept += 0.0 <= x < horizon
            else:
                for i in range(alive):
                    x = times[i] + drawn[i]
                    times[kept] = x
                    kept += 0.0 <= x < horizon  # never an index out of the horizon, whatever a draw gives
            alive = kept
        if keep_log and log_n[0] + alive > log_trial.shape[0]:
            return t, 0, log_n[0] + alive  # nothing of this trial is booked yet: it runs again
        if tally.leads != 0:
            for p in range(arrived.shape[0]):
                tally.arrivals[t, p, segment] += arrived[p]
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
                rep = reps[segment, min(int(gen_rep.random() * n_reps), n_reps - 1)]
            time = times[i]
            if closing_on:
                time = _slipped(gen_slip, time, slip_prob, slip_lo, slip_hi)
                if time >= horizon:
                    continue
            day = int(time)
            won_period = out_period[day]  # booked in line: see _LOOPS_WRITTEN_OUT
            out_revenue[t, won_period, segment] += value
            out_won[t, won_period, segment] += 1
            if rep >= 0:
                out_bookings[t, out_quota_period[day], rep] += value
            if keep_log:
                k = log_n[0]
                log_trial[k], log_day[k], log_segment[k], log_value[k], log_rep[k] = t, day, segment, value, rep
                if cycling:  # v2 F1: the time from arrival to win, slips included [days]
                    log_cycle[k] = time - arrival[orig[i]]
                log_n[0] = k + 1
        if valued:
            _stage_values_of_won(streams, trial0 + t, t, n_won, segment, funnel, stage_values, stage_revenue, arrival,
                                 stage_t, horizon)
        if record and tally.on != 0:  # v2 F1 (``tally``: the StageCounts record)
            entries_of_won(count_streams, trial0 + t, t, n_won, segment, funnel, tally, arrival, stage_t, horizon)
    return theta.shape[0], 0, 0


@jit
def entries_of_won(streams, trial, t, n_won, segment, funnel, counts, arrival, stage_t, horizon):
    """Entries (v2 F1) of one trial's leads to be won: each enters stage s at its arrival plus
    its times through the stages before s, counted while inside the horizon; the times the
    won kernel did not draw come from the ``STAGE_COUNTS`` stream, deal by deal, in stage order."""
    reseed_role(streams, STAGE_COUNTS, 0, trial)
    gen = streams.gens[STAGE_COUNTS]
    days_codes, days_pars, pool = funnel.days_codes[segment], funnel.days_pars[segment], funnel.pool
    passes, period_of_day, entries = counts.passes[segment], counts.period_of_day, counts.entries
    for j in range(n_won):
        x = arrival[j]
        for k in range(days_codes.shape[0]):
            if not x < horizon:
                break
            if passes[k] != 0:
                entries[t, period_of_day[int(x)], segment, k] += 1
            st = stage_t[j, k]
            if st != st:  # not drawn: the deal was past the horizon before this stage's turn
                st = draw_one(gen, days_codes[k], days_pars[k, 0], days_pars[k, 1], days_pars[k, 2],
                              days_pars[k, 3], pool)
            x += st


@jit
def _stage_values_of_won(streams, trial, t, n_won, segment, funnel, stage_values, stage_revenue, arrival, stage_t,
                         horizon):
    """Stage values (v2 F11) of one trial's leads to be won: each books each valued stage's
    value on the day it converts out of it, if inside the horizon (see :func:`simulate_new_leads`)."""
    reseed_role(streams, STAGE_VALUE, 0, trial)
    gen = streams.gens[STAGE_VALUE]
    valued, codes, pars, pool = stage_values.valued[segment], stage_values.codes[segment], \
        stage_values.pars[segment], stage_values.pool
    days_codes, days_pars = funnel.days_codes[segment], funnel.days_pars[segment]
    period_of_day = stage_values.period_of_day
    last = -1
    for k in range(valued.shape[0]):
        if valued[k] != 0:
            last = k
    for j in range(n_won):
        x = arrival[j]
        for k in range(last + 1):
            st = stage_t[j, k]
            if st != st:  # not drawn: the deal was past the horizon before this stage's turn
                st = draw_one(gen, days_codes[k], days_pars[k, 0], days_pars[k, 1], days_pars[k, 2],
                              days_pars[k, 3], pool)
            x += st
            if valued[k] != 0:
                v = draw_one(gen, codes[k], pars[k, 0], pars[k, 1], pars[k, 2], pars[k, 3], pool)
                if 0.0 <= x < horizon:
                    stage_revenue[t, period_of_day[int(x)], segment] += v


def simulate_pipeline(streams, trial0, funnel, pipeline, closing, theta, out, keep_log, stage_values, stage_revenue,
                      count_streams, counts):
    """Won deals from the open pipeline, for a block of trials: Python around the kernel
    :func:`pipeline_trials`, which runs them (as :func:`simulate_new_leads` is around
    :func:`new_leads_trials`).

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
    keep_log : bool
        As in :func:`simulate_new_leads` (and the same log is returned).
    stage_values, stage_revenue : StageValues, float64 (trials, periods, segments)
        A deal in a valued stage or an earlier one books the value (v2 F11) on the day it
        converts out of that stage: it does when its conversion uniform is below its chance
        of converting out of that stage (the same uniform that decides its win, so a won
        deal converts out of every stage); its exit time is a partial sum of the times it
        draws anyway. Values come from the ``PIPELINE_STAGE_VALUE`` stream, one per deal
        and valued stage ahead of it, whether booked or not.
    count_streams, counts : Streams, StageCounts
        With ``counts.on`` (v2 F1): a deal enters each later stage it reaches (its conversion
        uniform below its chance of converting out of every stage before) at the partial sum
        of its times, and is lost at the first stage it does not convert out of (the same
        uniform): at its own stage after ``days_lost`` given that it exceeds its age (at
        time 0 where no law has mass above it), at a later one after a ``days_lost`` from its
        entry; a share ``stalled`` of those never leave. Those draws come from
        ``count_streams`` (``pipeline_loss``), reseeded for every trial.
    """
    for role in (CONVERT, DAYS, VALUE, REP, SLIP, PIPELINE_STAGE_VALUE):
        python_of(expect)(streams, role, 1)
    room = _ROOM.get(("pipeline's log", 0), 256) if keep_log else 0  # as in simulate_new_leads
    log_trial, log_day = np.empty(room, dtype=np.int64), np.empty(room, dtype=np.int64)
    log_segment, log_value, log_rep = np.empty(room, dtype=np.int64), np.empty(room), np.empty(room, dtype=np.int64)
    log_n = np.zeros(1, dtype=np.int64)
    n_deals = pipeline.segment.shape[0]
    t = 0
    while True:  # at least one call, as in simulate_new_leads
        t = pipeline_trials(streams, trial0, t, funnel, pipeline, closing, theta, out, keep_log, log_trial, log_day,
                            log_segment, log_value, log_rep, log_n, stage_values, stage_revenue, count_streams,
                            counts)
        if t >= theta.shape[0]:
            break
        log_trial, log_day, log_segment, log_value, log_rep = _grown(
            log_trial, log_day, log_segment, log_value, log_rep, log_n[0],
            max(log_n[0] + n_deals, 2 * log_trial.shape[0]))
    n = log_n[0]
    if keep_log and theta.shape[0] > 0:
        _remember_room("pipeline's log", 0, int(n * 1.25))
    return log_trial[:n], log_day[:n], log_segment[:n], log_value[:n], log_rep[:n]


@jit
def pipeline_trials(streams, trial0, first, funnel, pipeline, closing, theta, out, keep_log, log_trial, log_day,
                    log_segment, log_value, log_rep, log_n, stage_values, stage_revenue, count_streams, counts):
    """Trials ``first`` .. of :func:`simulate_pipeline` (see there), until the log (with
    ``keep_log``) may not hold a trial's deals; returns the trial it stopped at (the
    block's length when done)."""
    days_codes, days_pars, value_codes, value_pars = funnel.days_codes, funnel.days_pars, funnel.value_codes, \
        funnel.value_pars
    pool, segment_reps, segment_n_reps = funnel.pool, funnel.reps, funnel.n_reps
    out_period, out_quota_period = out.period_of_day, out.quota_period_of_day
    out_revenue, out_won, out_bookings = out.revenue, out.won, out.bookings
    slip_prob, slip_lo, slip_hi = closing.slip_prob, closing.slip_lo, closing.slip_hi
    pending_lo, pending_hi = closing.pending_lo, closing.pending_hi
    horizon = float(out.period_of_day.shape[0])
    closing_on = slip_prob.shape[0] > 0
    n_stages = days_codes.shape[1]
    gen_convert, gen_days, gen_value = streams.gens[CONVERT], streams.gens[DAYS], streams.gens[VALUE]
    gen_rep, gen_slip = streams.gens[REP], streams.gens[SLIP]
    gen_stage_value = streams.gens[PIPELINE_STAGE_VALUE]
    n_deals = pipeline.segment.shape[0]
    valued_any = False
    for g in range(stage_values.valued.shape[0]):
        for k in range(stage_values.valued.shape[1]):
            valued_any = valued_any or stage_values.valued[g, k] != 0
    sv_codes, sv_pars, sv_valued = stage_values.codes, stage_values.pars, stage_values.valued
    report_period = stage_values.period_of_day
    counting = counts.on != 0
    if counting:
        expect(count_streams, PIPELINE_COUNTS, 1)
    gen_counts = count_streams.gens[PIPELINE_COUNTS]
    for t in range(first, theta.shape[0]):
        if keep_log and log_n[0] + n_deals > log_trial.shape[0]:
            return t
        for role in (CONVERT, DAYS, VALUE, REP, SLIP):
            reseed_role(streams, role, 0, trial0 + t)
        if valued_any:
            reseed_role(streams, PIPELINE_STAGE_VALUE, 0, trial0 + t)
        if counting:
            reseed_role(count_streams, PIPELINE_COUNTS, 0, trial0 + t)
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
            q_out = q  # the chance to convert out of s0
            for s in range(s0 + 1, n_stages):
                q *= theta[t, g, THETA_CONVERT + s]
            uc = gen_convert.random()
            converts = uc < q
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
            reach = q_out  # v2 F1: the chance to convert out of every stage before the next
            if counting and not uc < reach:
                pipeline_loss(gen_counts, counts, t, i, g, s0, mode == NO_MASS, pipeline.age[i], horizon)
            if valued_any and sv_valued[g, s0] != 0:
                sv = draw_one(gen_stage_value, sv_codes[g, s0], sv_pars[g, s0, 0], sv_pars[g, s0, 1],
                              sv_pars[g, s0, 2], sv_pars[g, s0, 3], pool)
                if uc < q_out and 0.0 <= time < horizon:
                    stage_revenue[t, report_period[int(time)], g] += sv
            for s in range(s0 + 1, n_stages):
                entered = time
                if counting and uc < reach and time < horizon and counts.passes[g, s] != 0:
                    counts.entries[t, counts.period_of_day[int(time)], g, s] += 1
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
                if counting:
                    if uc < reach and not uc < reach * theta[t, g, THETA_CONVERT + s]:
                        _later_loss(gen_counts, counts, t, g, s, entered, horizon)
                    reach *= theta[t, g, THETA_CONVERT + s]
                if valued_any:
                    q_out *= theta[t, g, THETA_CONVERT + s]
                    if sv_valued[g, s] != 0:
                        sv = draw_one(gen_stage_value, sv_codes[g, s], sv_pars[g, s, 0], sv_pars[g, s, 1],
                                      sv_pars[g, s, 2], sv_pars[g, s, 3], pool)
                        if uc < q_out and 0.0 <= time < horizon:
                            stage_revenue[t, report_period[int(time)], g] += sv
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
            n_reps_g = segment_n_reps[g]
            pick = -1
            if n_reps_g > 0:  # drawn whether or not the deal has an owner
                pick = segment_reps[g, min(int(gen_rep.random() * n_reps_g), n_reps_g - 1)]
            if rep < 0:
                rep = pick
            if waiting:  # a slipped win still to land in this quarter's window
                time = pending_lo + (pending_hi - pending_lo) * v
            elif closing_on:  # u is uniform again, given not waiting
                time = _slip_by(time, (u - pending) / (1.0 - pending), v, slip_prob, slip_lo, slip_hi)
            if converts and 0.0 <= time < horizon:
                day = int(time)
                won_period = out_period[day]  # booked in line: see _LOOPS_WRITTEN_OUT
                out_revenue[t, won_period, g] += value
                out_won[t, won_period, g] += 1
                if rep >= 0:
                    out_bookings[t, out_quota_period[day], rep] += value
                if keep_log:
                    k = log_n[0]
                    log_trial[k], log_day[k], log_segment[k], log_value[k], log_rep[k] = t, int(time), g, value, rep
                    log_n[0] = k + 1
    return theta.shape[0]


@jit
def pipeline_loss(gen, counts, t, i, g, s0, no_mass, a, horizon):
    """v2 F1: open deal ``i`` (segment g, age ``a``) is not converting out of its stage s0:
    stalled with its chance (never lost), else lost after ``days_lost`` given that it exceeds
    ``a`` (at time 0 without mass above it), counted when inside the horizon."""
    if counts.deal_stalled[i] > 0.0 and gen.random() < counts.deal_stalled[i]:
        return
    sf = counts.deal_lost_sf[i]
    lost = 0.0
    if not no_mass and sf > 0.0:
        code, par = counts.lost_codes[g, s0], counts.lost_pars[g, s0]
        lost = draw_above(gen, code, par[0], par[1], par[2], par[3], counts.pool, a, sf) - a
    if 0.0 <= lost < horizon and counts.passes[g, s0] != 0:
        counts.losses[t, counts.period_of_day[int(lost)], g, s0] += 1


@jit
def _later_loss(gen, counts, t, g, s, entered, horizon):
    """v2 F1: a lead or deal that entered stage s at ``entered`` and does not convert out of
    it: stalled with the stage's share (never lost), else lost a ``days_lost`` later, counted
    when inside the horizon."""
    if not entered < horizon:
        return
    if counts.stalled[s] > 0.0 and gen.random() < counts.stalled[s]:
        return
    par = counts.lost_pars[g, s]
    x = entered + draw_one(gen, counts.lost_codes[g, s], par[0], par[1], par[2], par[3], counts.pool)
    if x < horizon and counts.passes[g, s] != 0:
        counts.losses[t, counts.period_of_day[int(x)], g, s] += 1


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


# --- after the sale (scenario-format-v2.md, section A) ---------------------------------------

CUSTOMER_MONTH = 365.25 / 12
"""Days in a customer month: the clock of a repeat buyer's purchase rate."""


@jit(inline="always")
def _days_from_civil(y, m, d):
    """Days from 1970-01-01 to the proleptic Gregorian date (y, m, d) (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@jit(inline="always")
def _civil_from_days(z):
    """(y, m, d) of the day ``z`` days from 1970-01-01."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


@jit
def add_months(day, n, start_days):
    """The day ``n`` calendar months after ``day`` (days from start; start is ``start_days``
    from 1970-01-01): the same day of the month, or the month's last day when it is shorter."""
    y, m, d = _civil_from_days(start_days + day)
    k = y * 12 + (m - 1) + n
    y2, m2 = k // 12, k % 12 + 1
    last = _days_from_civil(y2 + (m2 == 12), m2 % 12 + 1, 1) - _days_from_civil(y2, m2, 1)
    return _days_from_civil(y2, m2, min(d, last)) - start_days


@jit(inline="always")
def _spread(arr, t, g, lo, hi, per_day, period_start, period_of_day):
    """Add ``per_day`` for each day of [lo, hi) inside the horizon to its period's row of ``arr``."""
    n_days = period_of_day.shape[0]
    lo, hi = max(lo, 0), min(hi, n_days)
    while lo < hi:
        p = period_of_day[lo]
        e = min(period_start[p + 1], hi)
        arr[t, p, g] += per_day * (e - lo)
        lo = e


@jit(inline="always")
def _on_day(arr, t, g, day, amount, period_of_day):
    """Add ``amount`` on ``day`` if it is inside the horizon."""
    if 0 <= day < period_of_day.shape[0]:
        arr[t, period_of_day[day], g] += amount


@jit(inline="always")
def _stock(arr, t, g, lo, hi, amount, period_start, period_of_day):
    """Add ``amount`` to each period whose last day inside the horizon lies in [lo, hi)."""
    n_days = period_of_day.shape[0]
    if hi <= lo or lo >= n_days:
        return
    p = period_of_day[max(lo, 0)]
    n_periods = period_start.shape[0] - 1
    while p < n_periods and period_start[p + 1] - 1 < hi:
        arr[t, p, g] += amount
        p += 1


@jit(inline="always")
def _ratable_until(value, w, length, x, t, g, refund, rec, period_start, period_of_day):
    """Recognise ``value`` per day over [w, w + length) (on day w when length is 0), or, with a
    cancellation taking effect on day ``x`` >= w (x < 0: none), up to day x and then the
    adjustment that leaves (1 - refund) value recognised in all."""
    if x < 0:
        if length == 0:
            _on_day(rec, t, g, w, value, period_of_day)
        else:
            _spread(rec, t, g, w, w + length, value / length, period_start, period_of_day)
        return
    if length == 0:
        before = value if x > w else 0.0
        if x > w:
            _on_day(rec, t, g, w, value, period_of_day)
    else:
        end = min(x, w + length)
        before = value / length * (end - w)
        _spread(rec, t, g, w, end, value / length, period_start, period_of_day)
    _on_day(rec, t, g, x, (1.0 - refund) * value - before, period_of_day)


@jit
def _own_probability(gen, a, b, mean):
    """A customer's own probability ~ Beta(a, b) of mean ``mean``. Where the shapes vanish (a
    concentration of 1e-300 or less, whose products underflow), the limit law: both tiny,
    1 with chance ``mean`` and 0 otherwise (one uniform); one tiny, the other's end."""
    tiny = 1e-300
    if a >= tiny and b >= tiny:
        return _beta(gen, a, b)
    if a < tiny and b < tiny:
        return 1.0 if _uniform(gen) < mean else 0.0
    return 1.0 if b < tiny else 0.0


@jit
def _purchase(t, g, day, value, purchases, rep, customers, out):
    """A renewal's or a repeat purchase's bookings by the rep (``rep`` >= 0) and the
    customer's purchase count reaching 2 or ``regular_from`` on ``day``; returns the count."""
    if rep >= 0:
        out.rep_bookings[t, out.quota_period_of_day[day], rep] += value
    purchases += 1
    if purchases == 2:
        _on_day(out.repeat_customers, t, g, day, 1.0, customers.period_of_day)
    if purchases == customers.regular_from:
        _on_day(out.regular_customers, t, g, day, 1.0, customers.period_of_day)
    return purchases


@jit
def _renewals(gen_renewal, t, g, lo, anchor, k, value, rho, growth, tau, purchases, rep, customers, out):
    """A subscriber's terms from [lo, add_months(anchor, k tau)) on, term j + 1 ending at
    add_months(anchor, (k + j + 1) tau): each recognised per day (inside the horizon), active
    and in MRR through it; at its end one uniform below ``rho`` renews at value x ``growth``
    (a renewal booking), otherwise the customer churns that day. Followed to the horizon's end.

    Returns (churn day or -1, hi, k): with no churn inside the horizon, the next decision is
    on day hi = add_months(anchor, k tau), on or after the horizon's end.
    """
    period_start, period_of_day = customers.period_start, customers.period_of_day
    n_days = period_of_day.shape[0]
    hi, v = add_months(anchor, k * tau, customers.start_days), value
    while True:
        _spread(out.recognised, t, g, max(lo, 0), hi, v / (hi - lo), period_start, period_of_day)
        _stock(out.active, t, g, max(lo, 0), hi, 1.0, period_start, period_of_day)
        _stock(out.mrr, t, g, max(lo, 0), hi, v / tau, period_start, period_of_day)
        if hi >= n_days:
            return -1, hi, k
        if not _uniform(gen_renewal) < rho:
            _on_day(out.churned, t, g, hi, 1.0, period_of_day)
            return hi, hi, k
        k += 1
        lo, hi, v = hi, add_months(anchor, k * tau, customers.start_days), v * growth
        _on_day(out.renewal, t, g, lo, v, period_of_day)
        purchases = _purchase(t, g, lo, v, purchases, rep, customers, out)


@jit
def _repeat_purchases(gen_repeat, gen_value, t, g, s, ends, lam, drop, purchases, rep, customers, out):
    """A repeat buyer's purchases from moment ``s`` [days from start] while before ``ends``:
    exponential gaps of mean 1 / ``lam`` customer months (stream ``REPEAT``), each with a value
    (``REPEAT_VALUE``) booked and recognised on its day, then a dropout uniform (``REPEAT``)
    below ``drop``. Returns the day it became inactive by dropping out, or -1."""
    period_of_day, pool = customers.period_of_day, customers.pool
    code, par = customers.repeat_value_codes[g], customers.repeat_value_pars[g]
    while True:
        s += _std_exponential(gen_repeat) / lam * CUSTOMER_MONTH
        if not s < ends:
            return -1
        day = int(s)
        pv = draw_one(gen_value, code, par[0], par[1], par[2], par[3], pool)
        _on_day(out.repeat, t, g, day, pv, period_of_day)
        _on_day(out.recognised, t, g, day, pv, period_of_day)
        purchases = _purchase(t, g, day, pv, purchases, rep, customers, out)
        if _uniform(gen_repeat) < drop:
            return day


@jit
def simulate_customers(streams, trial0, log_trial, log_day, log_segment, log_value, log_rep, customers, theta, out,
                       loss, window):
    """The customers a source's won deals create, and their lives to the horizon's end.

    The i-th deal of the log (booked by :func:`simulate_new_leads` or
    :func:`simulate_pipeline`, in order) is won on day w with value V by a rep (or -1). In a
    segment with a ``customer`` block it creates a customer on day w (kind ONE_OFF,
    SUBSCRIPTION or REPEAT_BUYER; v2 A.2):

    * per customer (stream ``CUSTOMER``), in this order: a subscriber's renewal probability
      ρ ~ Beta(renew κ, (1 - renew) κ) with a concentration κ; a repeat buyer's rate
      multiplier G ~ Gamma(1/c², c²) with ``rate_cv`` c, then its dropout
      p ~ Beta(dropout κ_d, (1 - dropout) κ_d) with ``dropout_concentration`` κ_d;
    * per deal (stream ``CANCEL``), with ``cancel``: a uniform and the days d, always both;
      the deal is cancelled on day x = w + floor(d) when the uniform is below the trial's
      ``cancel.probability``; for a subscriber only if x < t_1;
    * subscription: terms [t_k, t_{k+1}), t_k = add_months(w, k τ), value V (1 + e)^k
      recognised per day over its term; at t_{k+1} one uniform (stream ``RENEWAL``) below ρ
      renews (a renewal booking), otherwise the customer churns on that day;
    * repeat: purchases at the times of a Poisson process of rate λ per customer month from
      the beginning of day w (exponential gaps, stream ``REPEAT``), each with a value
      (stream ``REPEAT_VALUE``) booked and recognised on its day, then a dropout uniform
      (stream ``REPEAT``) below p makes the customer inactive from that moment;
    * a one-off or repeat buyer's first deal is recognised on day w, or per day over
      add_months(w, n) - w days with ``recognition_months`` n.

    Everything is followed to the horizon's end only; each stream is reseeded at each
    trial's first deal. ``theta[t, g, customers.theta_after + i]`` holds the trial's
    ``AFTER_SALE`` quantities. Outputs (:class:`CustomerOutputs`) are added to.

    v2 D.2: when ``loss`` (int64, one slot per deal, filled with -1) is not empty, the day
    each deal's customer is lost is written there: its cancellation's, or the day a
    subscriber churns by not renewing; a repeat buyer's dropout is not a loss. A subscriber
    still active at the horizon's end has its renewal decisions on days d <= w + ``window``
    drawn too, from a stream of their own (``CLAWBACK``), so that nothing inside the horizon
    changes.
    """
    for role in (CUSTOMER, RENEWAL, REPEAT, REPEAT_VALUE, CANCEL, CLAWBACK):
        expect(streams, role, 1)
    gen_claw = streams.gens[CLAWBACK]
    losing = loss.shape[0] > 0
    gen_customer, gen_renewal, gen_repeat = streams.gens[CUSTOMER], streams.gens[RENEWAL], streams.gens[REPEAT]
    gen_value, gen_cancel = streams.gens[REPEAT_VALUE], streams.gens[CANCEL]
    period_start, period_of_day = customers.period_start, customers.period_of_day
    n_days = period_of_day.shape[0]
    start_days, after, pool = customers.start_days, customers.theta_after, customers.pool
    rec, cancel_out = out.recognised, out.cancellations
    new_out, churn_out, active_out, mrr_out = out.new, out.churned, out.active, out.mrr
    current = -1
    for i in range(log_trial.shape[0]):
        g = log_segment[i]
        kind = customers.kind[g]
        if kind == NONE:
            continue
        t, w, value, rep = log_trial[i], log_day[i], log_value[i], log_rep[i]
        if t != current:
            for role in (CUSTOMER, RENEWAL, REPEAT, REPEAT_VALUE, CANCEL):
                reseed_role(streams, role, 0, trial0 + t)
            if losing:
                reseed_role(streams, CLAWBACK, 0, trial0 + t)
            current = t
        _on_day(new_out, t, g, w, 1.0, period_of_day)
        # the customer's own draws
        rho, lam, drop = 0.0, 0.0, 0.0
        if kind == SUBSCRIPTION:
            rho = theta[t, g, after + RENEW]
            kappa = customers.renew_concentration[g]
            if kappa > 0.0 and 0.0 < rho < 1.0:
                rho = _own_probability(gen_customer, rho * kappa, (1.0 - rho) * kappa, rho)
        elif kind == REPEAT_BUYER:
            lam = theta[t, g, after + PER_MONTH]
            cv = customers.rate_cv[g]
            if cv > 0.0:
                lam *= _std_gamma(gen_customer, 1.0 / (cv * cv)) * cv * cv
            drop = theta[t, g, after + DROPOUT]
            kappa = customers.dropout_concentration[g]
            if kappa > 0.0 and 0.0 < drop < 1.0:
                drop = _own_probability(gen_customer, drop * kappa, (1.0 - drop) * kappa, drop)
        # its cancellation
        x = -1
        refund = customers.refund[g]
        if customers.cancel[g]:
            u = _uniform(gen_cancel)
            d = draw_one(gen_cancel, customers.cancel_days_codes[g], customers.cancel_days_pars[g, 0],
                         customers.cancel_days_pars[g, 1], customers.cancel_days_pars[g, 2],
                         customers.cancel_days_pars[g, 3], pool)
            if u < theta[t, g, after + CANCEL_PROBABILITY]:
                x = w + int(math.floor(min(d, 1e15)))  # beyond the horizon, however far
        purchases = np.int64(1)  # not a literal 1: the helpers below compile for one type only
        if kind == SUBSCRIPTION:
            tau = customers.term_months[g]
            growth = 1.0 + theta[t, g, after + EXPANSION]
            t1 = add_months(w, tau, start_days)
            if x >= t1:
                x = -1  # later, a subscriber leaves by not renewing
            if x >= 0:
                _ratable_until(value, w, t1 - w, x, t, g, refund, rec, period_start, period_of_day)
                _on_day(cancel_out, t, g, x, refund * value, period_of_day)
                _stock(active_out, t, g, w, x, 1.0, period_start, period_of_day)
                _stock(mrr_out, t, g, w, x, value / tau, period_start, period_of_day)
                _on_day(churn_out, t, g, x, 1.0, period_of_day)
                if losing:
                    loss[i] = x
                continue
            churn, hi, k = _renewals(gen_renewal, t, g, w, w, np.int64(1), value, rho, growth, tau, purchases, rep,
                                     customers, out)
            if losing:
                while churn < 0 and hi - w <= window:  # v2 D.2: decisions after end, within the window
                    if not _uniform(gen_claw) < rho:
                        churn = hi
                    k += 1
                    hi = add_months(w, k * tau, start_days)
                loss[i] = churn
            continue
        # a one-off or repeat buyer's first deal
        length = 0
        if customers.recognition_months[g] > 0:
            length = add_months(w, customers.recognition_months[g], start_days) - w
        _ratable_until(value, w, length, x, t, g, refund, rec, period_start, period_of_day)
        if x >= 0:
            _on_day(cancel_out, t, g, x, refund * value, period_of_day)
            if losing:
                loss[i] = x
        ends = n_days if x < 0 else min(x, n_days)  # no purchase from the cancellation's day on
        inactive = -1  # the day it becomes inactive by dropping out
        if kind == REPEAT_BUYER and lam > 0.0:
            inactive = _repeat_purchases(gen_repeat, gen_value, t, g, float(w), ends, lam, drop, purchases, rep,
                                         customers, out)
        if inactive >= 0:
            end_active = inactive
        elif x >= 0:
            end_active = x
        else:
            end_active = n_days
        _stock(active_out, t, g, w, end_active, 1.0, period_start, period_of_day)
        if end_active < n_days:
            _on_day(churn_out, t, g, end_active, 1.0, period_of_day)


@jit
def simulate_installed(streams, trial0, installed, customers, funnel, theta, out):
    """The installed base (v2 A.5) from ``start``, each customer conditioned on its history.

    Per customer (stream ``CUSTOMER``), in this order: a repeat buyer's uniform that decides
    whether it is still alive, then its rate multiplier and dropout from their posteriors
    (Gamma(r + x, rate α + T) and Beta(a, b + x) with heterogeneity); a subscriber's renewal
    probability from Beta(renew κ + renewals, (1 - renew) κ) with a concentration, then its
    value when the file leaves it empty (the segment's ``deal_value``); then, without an
    owner and with reps, its rep (uniform among the segment's). Renewals (stream
    ``RENEWAL``) and repeat purchases (``REPEAT``, ``REPEAT_VALUE``) then follow as for a new
    customer. Nothing before ``start`` is reported; installed customers are never new.
    """
    for role in (CUSTOMER, RENEWAL, REPEAT, REPEAT_VALUE, CANCEL):
        expect(streams, role, 1)
    gen_customer, gen_renewal, gen_repeat = streams.gens[CUSTOMER], streams.gens[RENEWAL], streams.gens[REPEAT]
    gen_value = streams.gens[REPEAT_VALUE]
    period_start, period_of_day = customers.period_start, customers.period_of_day
    n_days = period_of_day.shape[0]
    after, pool = customers.theta_after, customers.pool
    churn_out, active_out = out.churned, out.active
    for t in range(theta.shape[0]):
        for role in (CUSTOMER, RENEWAL, REPEAT, REPEAT_VALUE, CANCEL):
            reseed_role(streams, role, 0, trial0 + t)
        for i in range(installed.segment.shape[0]):
            g = installed.segment[i]
            kind = customers.kind[g]
            purchases = 1 + installed.purchases[i]
            if kind == SUBSCRIPTION:
                rho = theta[t, g, after + RENEW]
                kappa = customers.renew_concentration[g]
                if kappa > 0.0 and 0.0 < rho < 1.0:
                    rho = _own_probability(gen_customer, rho * kappa + installed.purchases[i], (1.0 - rho) * kappa, rho)
                v = installed.value[i]
                if v < 0.0:
                    v = draw_one(gen_customer, funnel.value_codes[g], funnel.value_pars[g, 0], funnel.value_pars[g, 1],
                                 funnel.value_pars[g, 2], funnel.value_pars[g, 3], pool)
            else:
                x = installed.purchases[i]
                lam_bar, drop_bar = theta[t, g, after + PER_MONTH], theta[t, g, after + DROPOUT]
                cv, kappa = customers.rate_cv[g], customers.dropout_concentration[g]
                big_t = -installed.first_day[i] / CUSTOMER_MONTH   # months from the first purchase to start
                t_x = (installed.last_day[i] - installed.first_day[i]) / CUSTOMER_MONTH
                u_alive = _uniform(gen_customer)
                alive = True
                if x > 0 and lam_bar > 0.0:
                    # odds of having dropped out at the last purchase against being alive (v2 A.5)
                    if kappa > 0.0 and 0.0 < drop_bar < 1.0:
                        a, b = drop_bar * kappa, (1.0 - drop_bar) * kappa
                        log_odds = math.log(a / (b + x - 1.0)) if b + x - 1.0 > 0.0 else math.inf
                    elif drop_bar >= 1.0:
                        log_odds = math.inf
                    elif drop_bar <= 0.0:
                        log_odds = -math.inf
                    else:
                        log_odds = math.log(drop_bar / (1.0 - drop_bar))
                    if cv > 0.0:
                        r = 1.0 / (cv * cv)
                        alpha = r / lam_bar
                        log_odds += (r + x) * math.log((alpha + big_t) / (alpha + t_x))
                    else:
                        log_odds += lam_bar * (big_t - t_x)
                    alive = u_alive * (1.0 + math.exp(min(log_odds, 700.0))) < 1.0 if log_odds < math.inf else False
                lam, drop = lam_bar, drop_bar
                if cv > 0.0 and lam_bar > 0.0:
                    r = 1.0 / (cv * cv)
                    lam = _std_gamma(gen_customer, r + x) / (r / lam_bar + big_t)
                if kappa > 0.0 and 0.0 < drop_bar < 1.0:
                    drop = _own_probability(gen_customer, drop_bar * kappa, (1.0 - drop_bar) * kappa + x, drop_bar)
            rep = installed.owner[i]
            n_reps = funnel.n_reps[g]
            if rep < 0 and n_reps > 0:
                rep = funnel.reps[g, min(int(_uniform(gen_customer) * n_reps), n_reps - 1)]
            if kind == SUBSCRIPTION:
                tau = customers.term_months[g]
                growth = 1.0 + theta[t, g, after + EXPANSION]
                _renewals(gen_renewal, t, g, installed.term_start[i], installed.term_end[i], np.int64(0), v, rho, growth,
                          tau, purchases, rep, customers, out)
                continue
            if not alive:
                continue
            end_active = n_days
            if lam > 0.0:
                inactive = _repeat_purchases(gen_repeat, gen_value, t, g, 0.0, n_days, lam, drop, purchases, rep,
                                             customers, out)
                if inactive >= 0:
                    end_active = inactive
            _stock(active_out, t, g, 0, end_active, 1.0, period_start, period_of_day)
            if end_active < n_days:
                _on_day(churn_out, t, g, end_active, 1.0, period_of_day)


@jit
def apply_capacity_deals(streams, trial0, capacity, n_trials, log_trial, log_day, log_segment, log_value, log_rep,
                         out, admitted):
    """The team's capacity deal by deal, for scenarios whose won deals create customers (v2 A.6).

    The same months' room as :func:`apply_capacity` (the same draws of the ``CAPACITY``
    stream), and the same number of deals won each day; but the deals due are admitted one
    by one, the earliest due first (ties in the order of the log, the engine's deal order),
    each booked with its own value and rep on the day it is admitted, so that the customer
    it creates starts that day. ``log_*``: every source's due deals, sorted by trial and
    due day (stably). ``admitted`` (n,): written, the day each deal is won, or -1 when it
    still waits at the horizon's end.
    """
    capacity_of_day, month_of_day, cv = capacity.of_day, capacity.month_of_day, capacity.cv
    period_of_day, cperiod_of_day = out.period_of_day, out.quota_period_of_day
    expect(streams, CAPACITY, 1)
    gen = streams.gens[CAPACITY]
    n_days = capacity_of_day.shape[0]
    n = log_trial.shape[0]
    i = 0
    for t in range(n_trials):
        reseed_role(streams, CAPACITY, 0, trial0 + t)
        first = i
        while i < n and log_trial[i] == t:
            admitted[i] = -1
            i += 1
        nxt = first  # the earliest deal still waiting
        room = 0
        for d in range(n_days):
            if d == 0 or month_of_day[d] != month_of_day[d - 1]:
                c = capacity_of_day[d]
                if cv > 0.0:
                    c *= gen.standard_gamma(1.0 / (cv * cv)) * cv * cv
                room = int(c + 0.5)
            while room > 0 and nxt < i and log_day[nxt] <= d:
                g, v, rep = log_segment[nxt], log_value[nxt], log_rep[nxt]
                p = period_of_day[d]
                out.revenue[t, p, g] += v
                out.won[t, p, g] += 1
                if rep >= 0:
                    out.bookings[t, cperiod_of_day[d], rep] += v
                admitted[nxt] = d
                nxt += 1
                room -= 1


@jit
def simulate_lost_stage_values(streams, trial0, funnel, segment, stage_values, theta, month_factor, stage_revenue):
    """Stage values (v2 F11) of the new leads that convert out of a valued stage and are lost
    later, which :func:`simulate_new_leads` never draws.

    By Poisson splitting, the leads arriving on day d and lost at stage k (after converting
    out of stages 0 .. k - 1) are Poisson(m_d G_d P_{<k} (1 - p_k)), independent of the won
    ones and of each other; G_d is the day's gamma multiplier with dispersion, redrawn from
    the new leads' own ``MIXING`` stream, so both share it. For each k past the first valued
    stage, the count, each lead's arrival day, its times through the stages up to the last
    valued one before k (``days``, stage order) and each value come from the ``LOST`` stream;
    a value is booked on the day the lead converts out of its stage, if inside the horizon.
    (Conversion drift is not applied: validation refuses stage values with it.)
    """
    expect(streams, LOST, 1)
    expect(streams, MIXING, 1)
    gen, gen_mixing = streams.gens[LOST], streams.gens[MIXING]
    valued, codes, pars, pool = stage_values.valued[segment], stage_values.codes[segment], \
        stage_values.pars[segment], stage_values.pool
    period_of_day = stage_values.period_of_day
    days_codes, days_pars = funnel.days_codes[segment], funnel.days_pars[segment]
    day_mean, elapsed_months = funnel.day_mean[segment], funnel.elapsed_months
    rate_is_cost, dispersion = funnel.rate_is_cost[segment], funnel.dispersion[segment]
    n_days, n_stages = day_mean.shape[0], days_codes.shape[0]
    horizon = float(n_days)
    first_valued, last_valued = -1, -1
    for k in range(n_stages):
        if valued[k] != 0:
            last_valued = k
            if first_valued < 0:
                first_valued = k
    if first_valued < 0:
        return
    growth = np.empty(elapsed_months[n_days - 1] + 1)
    cum = np.empty(n_days)
    for t in range(theta.shape[0]):
        reseed_role(streams, LOST, 0, trial0 + t)
        reseed_role(streams, MIXING, 0, trial0 + t)
        base = theta[t, segment, THETA_LEADS]
        rate = 1.0 / base if rate_is_cost else base
        if not rate > 0.0:
            continue
        arrival_growth(funnel, theta, month_factor, t, segment, growth)
        day_means(rate, day_mean, growth, elapsed_months, dispersion, gen_mixing, cum)
        total = cumulate(cum, cum)
        if not total > 0.0:
            continue
        reach = 1.0  # P_{<k}: the chance to convert out of every stage before k
        for k in range(n_stages):
            p = theta[t, segment, THETA_CONVERT + k]
            if k > first_valued:
                n_lost = gen.poisson(total * reach * (1.0 - p))
                top = min(k - 1, last_valued)
                for _ in range(n_lost):
                    u = gen.random() * total
                    lo, hi = 0, n_days - 1  # the first day whose cumulative mean passes u
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if cum[mid] <= u:
                            lo = mid + 1
                        else:
                            hi = mid
                    x = float(lo)
                    for j in range(top + 1):
                        x += draw_one(gen, days_codes[j], days_pars[j, 0], days_pars[j, 1], days_pars[j, 2],
                                      days_pars[j, 3], pool)
                        if valued[j] != 0:
                            v = draw_one(gen, codes[j], pars[j, 0], pars[j, 1], pars[j, 2], pars[j, 3], pool)
                            if 0.0 <= x < horizon:
                                stage_revenue[t, period_of_day[int(x)], segment] += v
            reach *= p


# --- v2 F12: the pipeline's share of the deals a team's capacity admits --------------------------

@jit
def capacity_pipeline_share(streams, trial0, capacity, due, pipeline_won, pipeline_revenue, period_of_day, won_out,
                            revenue_out):
    """The deals of the open pipeline among those :func:`apply_capacity` admits (v2 F12).

    Replays :func:`apply_capacity` (the same ``CAPACITY`` draws, rooms and shares between
    segments: this kernel changes none of its outputs) and follows, within each segment's
    queue, the deals that came from the pipeline: when ``take`` of a segment's ``n`` waiting
    deals are admitted, the pipeline's ``n_p`` of them give their share of ``take`` (whole
    deals, by largest remainder, ties to the new leads) and the same fraction ``take / n``
    of their value, as the segment's value moves in :func:`_admit`.

    Parameters
    ----------
    due : Outputs
        Every source's deals by the day they were due (as for :func:`apply_capacity`).
    pipeline_won : int32, shape (trials, days, segments); pipeline_revenue : float64, same shape
        The pipeline's part of ``due.won`` and ``due.revenue`` [deals, currency].
    period_of_day : int64, shape (days,)
        The reporting period of each day.
    won_out : int32, shape (trials, periods); revenue_out : float64, shape (trials, periods)
        The pipeline's deals admitted and their value, by period, added to.
    """
    capacity_of_day, month_of_day, cv = capacity.of_day, capacity.month_of_day, capacity.cv
    day_won = due.won
    expect(streams, CAPACITY, 1)
    gen = streams.gens[CAPACITY]
    n_days, n_seg = day_won.shape[1], day_won.shape[2]
    carry_n, carry_p, carry_pv = np.zeros(n_seg, dtype=np.int64), np.zeros(n_seg, dtype=np.int64), np.zeros(n_seg)
    old_n, old_p, old_pv = np.zeros(n_seg, dtype=np.int64), np.zeros(n_seg, dtype=np.int64), np.zeros(n_seg)
    due_n, due_p, due_pv = np.zeros(n_seg, dtype=np.int64), np.zeros(n_seg, dtype=np.int64), np.zeros(n_seg)
    take = np.zeros(n_seg, dtype=np.int64)
    pair, split = np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64)
    for t in range(day_won.shape[0]):
        reseed_role(streams, CAPACITY, 0, trial0 + t)
        for g in range(n_seg):
            carry_n[g], carry_p[g], carry_pv[g] = 0, 0, 0.0
        room = 0
        for d in range(n_days):
            if d == 0 or month_of_day[d] != month_of_day[d - 1]:
                c = capacity_of_day[d]
                if cv > 0.0:
                    c *= gen.standard_gamma(1.0 / (cv * cv)) * cv * cv
                room = int(c + 0.5)
            p = period_of_day[d]
            for g in range(n_seg):
                old_n[g], old_p[g], old_pv[g] = carry_n[g], carry_p[g], carry_pv[g]
                carry_n[g], carry_p[g], carry_pv[g] = 0, 0, 0.0
                due_n[g], due_p[g], due_pv[g] = day_won[t, d, g], pipeline_won[t, d, g], pipeline_revenue[t, d, g]
            for queue in range(2):  # the deals already waiting first, then the day's own (as _admit is called)
                counts, pn, pv = (old_n, old_p, old_pv) if queue == 0 else (due_n, due_p, due_pv)
                total = 0
                for g in range(n_seg):
                    total += counts[g]
                if total == 0:
                    continue
                taken = min(room, total)
                _share_out(taken, counts, take)
                for g in range(n_seg):
                    if counts[g] == 0:
                        continue
                    frac = take[g] / counts[g]
                    pair[0], pair[1] = counts[g] - pn[g], pn[g]
                    _share_out(take[g], pair, split)
                    won_out[t, p] += split[1]
                    revenue_out[t, p] += pv[g] * frac
                    carry_n[g] += counts[g] - take[g]
                    carry_p[g] += pn[g] - split[1]
                    carry_pv[g] += pv[g] * (1.0 - frac)
                room -= taken


# --- v2 F1: the new leads that are lost --------------------------------------------------------

@jit(inline="always")
def _stage_time(gen, code, p0, p1, p2, p3, pool):
    """A time drawn from a stage's law: the usual families in line (a call passing arrays
    counts references on every draw), the others through :func:`draw_one`."""
    if code == LOGNORMAL:
        return math.exp(p0 + p1 * _std_normal(gen))
    if code == GAMMA:
        return p1 * _std_gamma(gen, p0)
    if code == EXPONENTIAL:
        return p0 * _std_exponential(gen)
    if code == FIXED:
        return p0
    if code == WEIBULL:
        return p1 * _std_exponential(gen) ** (1.0 / p0)
    return draw_one(gen, code, p0, p1, p2, p3, pool)


@jit
def period_ends(period_of_day):
    """Day after the last of each day's reporting period, shape (D,) int64 [days]."""
    n_days = period_of_day.shape[0]
    ends = np.empty(n_days, dtype=np.int64)
    end = n_days
    for d in range(n_days - 1, -1, -1):
        if d + 1 < n_days and period_of_day[d + 1] != period_of_day[d]:
            end = d + 1
        ends[d] = end
    return ends


@jit
def lost_on_entry(gen, counts, t, g, k, d, n, ends):
    """v2 F1: ``n`` leads of segment g that entered stage k, the first it passes
    (``counts.first[g]``), on day d and do not leave it forward or by a move: a share
    ``stalled[k]`` stays open for ever (one binomial), the others are given up X days later,
    X from the stage's ``days_lost``. Their loss days are counted all at once: by period from
    d's on, and beyond the horizon, they are multinomial with the masses of
    ``counts.first_below`` shifted by d (P(d + X in a period) = P(X < its end - d) - P(X < its
    start - d)), drawn from ``gen`` as one binomial per period given the ones before, until
    none is left. Exact, as drawing each lead's X; ``ends``: :func:`period_ends`."""
    stalled = counts.stalled[k]
    if stalled > 0.0:
        n -= gen.binomial(n, stalled)
    if n <= 0 or counts.passes[g, k] == 0:
        return
    below = counts.first_below[g]
    n_days = ends.shape[0]
    start, done = d, 0.0  # the period's first day (from d's on), P(X < start - d)
    while n > 0 and start < n_days:
        stop = ends[start]
        upto = below[stop - d]
        left = 1.0 - done
        if not left > 0.0:
            return
        x = gen.binomial(n, min(max((upto - done) / left, 0.0), 1.0))
        if x > 0:
            counts.losses[t, counts.period_of_day[start], g, k] += x
            n -= x
        start, done = stop, upto


@jit
def _unwon_arrivals(gen, t, segment, means, elapsed_months, dispersion, not_won, period_of_day, arrivals, record):
    """One trial's leads that are not won (v2 E.3), from each day's mean arrivals ``means``
    (:func:`day_means`: m_d G_d, G_d the day's gamma multiplier from the won leads' mixing
    stream, so both share it): with dispersion, a Poisson per day of m_d G_d (1 - P); without,
    a Poisson per period of the sum over its days of m_d (1 - P). Added into
    ``arrivals[t, period, segment]`` (when it has trials) and written into ``record[t, day]``
    (when it has trials): each day's count with dispersion, each period's at its first day
    without (0 on its other days), for :func:`_unwon_days` to split."""
    mean, period, start = 0.0, period_of_day[0], 0
    adding, recording = arrivals.shape[0] > 0, record.shape[0] > 0
    for d in range(means.shape[0]):
        m = means[d]
        if recording:
            record[t, d] = 0
        if dispersion > 0.0:
            lam = m * not_won[elapsed_months[d]]
            if lam > 0.0:
                n = gen.poisson(lam)
                if adding:
                    arrivals[t, period_of_day[d], segment] += n
                if recording:
                    record[t, d] = n
            continue
        if period_of_day[d] != period:
            if mean > 0.0:
                n = gen.poisson(mean)
                if adding:
                    arrivals[t, period, segment] += n
                if recording:
                    record[t, start] = n
            mean, period, start = 0.0, period_of_day[d], d
        lam = m * not_won[elapsed_months[d]]
        if lam > 0.0:
            mean += lam
    if mean > 0.0:
        n = gen.poisson(mean)
        if adding:
            arrivals[t, period, segment] += n
        if recording:
            record[t, start] = n


@jit
def _unwon_days(gen, recorded, weights, per_day, ends, out):
    """Each day's leads that are not won, ``out`` (D,), from one trial's ``recorded`` counts
    (:func:`_unwon_arrivals`' ``record`` row): as recorded when drawn per day (``per_day``);
    else each period's count, at its first day, split over its days in proportion to
    ``weights`` (D,), each day's mean m_d (1 - P) (binomials in day order, from ``gen``: a
    multinomial). Given the period's Poisson count, the days' counts are then independent
    Poissons of those means, as drawing them day by day would make them."""
    n_days = out.shape[0]
    if per_day:
        for d in range(n_days):
            out[d] = recorded[d]
        return
    d = 0
    while d < n_days:
        stop = ends[d]
        n = recorded[d]
        total = 0.0
        for e in range(d, stop):
            if weights[e] > 0.0:
                total += weights[e]
        for e in range(d, stop):
            w = weights[e] if weights[e] > 0.0 else 0.0
            if n <= 0 or not total > 0.0:
                out[e] = 0
            elif e == stop - 1 or w >= total:
                out[e], n = n, 0
            else:
                x = gen.binomial(n, min(max(w / total, 0.0), 1.0))
                out[e], n = x, n - x
            total -= w
        d = stop


@jit
def simulate_lost_leads(streams, trial0, funnel, segment, counts, shocks, theta, unwon, not_won_of, record):
    """Entries and losses (v2 F1) of one segment's new leads that are not won, which
    :func:`simulate_new_leads` never draws.

    By Poisson splitting, the leads arriving on day d that convert out of stages 1 .. k - 1
    and not out of k are Poisson(m_d G_d P_{<k} (1 - p_k)), independent of the won ones and
    of each other; G_d is the day's gamma multiplier with dispersion, redrawn from the new
    leads' own mixing stream (``COUNTS_MIXING``), so both share it. They are drawn as the
    leads that are not won (``record``: :func:`_unwon_arrivals`' counts, the same draws as the
    ``leads`` output's, v2 E.3), each day's split over the stages they are lost at in
    proportion to P_{<k} (1 - p_k) (binomials, from ``STAGE_COUNTS``): the same law, and in
    every trial the leads counted as arriving are those entering the first stage. With ``drift``, month j's
    leads arrive at the lead walk's factor and convert with month j's shifted p (the walks
    redrawn from the drift's own streams, as :func:`apply_shocks` draws them). Day by day and
    stage by stage, the count, then each lead's times through stages 1 .. k - 1 (``days``) and
    at k (``days_lost``) come from the ``STAGE_COUNTS`` stream: it enters each stage on its way
    and is lost at the end, each counted while inside the horizon (a share ``stalled`` of the
    leads that do not convert out of k never leave it: they enter, and are not lost). The
    leads lost at the first stage they enter (usually most of them) are not drawn one by one:
    their loss periods are one multinomial per day (:func:`lost_on_entry`). The cost of the
    others follows their number, every one of which is drawn: that is why the output is
    asked for.

    Parameters
    ----------
    counts : StageCounts
        Where entries and losses are added (stages the segment does not pass convert 1, so
        no lead is lost there, and are not counted).
    shocks : Shocks
        The drift's sds (its walks are redrawn; the one-off shocks are already in theta).
    theta : float64, shape (trials, segments, K)
        The trials' draws after shocks.
    unwon : int64
        1: instead, the leads that are not won (v2 E.3), Poisson(sum over the period's days of
        m_d G_d (1 - P)) (P the month's product of the conversions), counted by the period they
        arrive in into ``counts.arrivals``, from their own stream (``streams``' ``STAGE_COUNTS``
        role, keyed apart); per day with dispersion, per period without.
    not_won_of : float64, shape (trials, months) or (0, 0)
        With ``unwon``, for a segment with moves (v2 B): each trial's and month's 1 - h_1 of its
        chain (drifted), in place of 1 - P; empty otherwise.
    record : int64, shape (trials, D) or (0, D)
        With ``unwon``, written with the counts drawn (:func:`_unwon_arrivals`; not written when
        it has no trials); without, read: the leads not won that are split over the stages.
    """
    expect(streams, STAGE_COUNTS, 1)
    expect(streams, COUNTS_MIXING, 1)
    n_stages = funnel.days_codes.shape[1]
    expect(streams, COUNTS_DRIFT_LEADS, 1)
    expect(streams, COUNTS_DRIFT_CONVERT, n_stages)
    gen, gen_mixing = streams.gens[STAGE_COUNTS], streams.gens[COUNTS_MIXING]
    days_codes, days_pars, pool = funnel.days_codes[segment], funnel.days_pars[segment], funnel.pool
    day_mean, elapsed_months = funnel.day_mean[segment], funnel.elapsed_months
    rate_is_cost, dispersion = funnel.rate_is_cost[segment], funnel.dispersion[segment]
    passes, period_of_day, entries, losses = counts.passes[segment], counts.period_of_day, counts.entries, \
        counts.losses
    lost_codes, lost_pars, stalled = counts.lost_codes[segment], counts.lost_pars[segment], counts.stalled
    drift_leads, drift_convert = shocks.drift_leads, shocks.drift_convert
    drifting = drift_leads > 0.0
    for s in range(n_stages):
        drifting = drifting or drift_convert[s] > 0.0
    n_days = day_mean.shape[0]
    horizon = float(n_days)
    n_months = elapsed_months[n_days - 1] + 1
    growth = np.empty(n_months)
    convert = np.empty((n_months, n_stages))  # month j's conversions (drifted)
    walks = np.zeros(n_months)
    weight = np.empty((n_months, n_stages))
    last_lost = np.empty(n_months, dtype=np.int64)  # month j's last stage a lead can be lost at
    not_won = np.empty(n_months)
    means = np.empty(n_days)  # each day's mean arrivals (day_means)
    day_weight, day_count = np.empty(n_days), np.empty(n_days, dtype=np.int64)  # the leads not won, by day
    first, ends = counts.first[segment], period_ends(period_of_day)
    for t in range(theta.shape[0]):
        reseed_role(streams, STAGE_COUNTS, 0, trial0 + t)
        reseed_role(streams, COUNTS_MIXING, 0, trial0 + t)
        base = theta[t, segment, THETA_LEADS]
        rate = 1.0 / base if rate_is_cost else base
        if not rate > 0.0:
            continue
        lead_growth(funnel, theta, t, segment, growth)
        for j in range(n_months):
            for s in range(n_stages):
                convert[j, s] = theta[t, segment, THETA_CONVERT + s]
        if drifting:  # the walks of apply_shocks, redrawn from its streams
            if drift_leads > 0.0:
                reseed_role(streams, COUNTS_DRIFT_LEADS, 0, trial0 + t)
            w = 0.0
            for j in range(n_months):
                if j > 0 and drift_leads > 0.0:
                    w += streams.gens[COUNTS_DRIFT_LEADS].standard_normal()
                growth[j] *= math.exp(drift_leads * w - 0.5 * j * drift_leads * drift_leads)
            for s in range(n_stages):
                if drift_convert[s] > 0.0:
                    reseed_role(streams, COUNTS_DRIFT_CONVERT, s, trial0 + t)
                w = 0.0
                for j in range(n_months):
                    if j > 0 and drift_convert[s] > 0.0:
                        w += streams.gens[COUNTS_DRIFT_CONVERT].standard_normal()
                    walks[j] = drift_convert[s] * w
                for j in range(n_months):
                    p = convert[j, s]
                    if 0.0 < p < 1.0 and walks[j] != 0.0:
                        odds = math.exp(walks[j])
                        convert[j, s] = p * odds / (1.0 - p + p * odds)
        for j in range(n_months):  # weight[j, k] = P_{<k} (1 - p_k) with month j's conversions
            reach = 1.0
            last_lost[j] = -1
            for k in range(n_stages):
                weight[j, k] = reach * (1.0 - convert[j, k])
                reach *= convert[j, k]
                if weight[j, k] > 0.0:
                    last_lost[j] = k
            not_won[j] = 1.0 - reach if not_won_of.shape[0] == 0 else not_won_of[t, j]
        day_means(rate, day_mean, growth, elapsed_months, dispersion, gen_mixing, means)
        if unwon != 0:
            _unwon_arrivals(gen, t, segment, means, elapsed_months, dispersion, not_won, period_of_day,
                            counts.arrivals, record)
            continue
        for d in range(n_days):
            lam = means[d] * not_won[elapsed_months[d]]
            day_weight[d] = lam if lam > 0.0 else 0.0
        _unwon_days(gen, record[t], day_weight, dispersion > 0.0, ends, day_count)
        for d in range(n_days):
            n_left = day_count[d]
            if n_left <= 0:
                continue
            day_period = period_of_day[d]
            j = elapsed_months[d]
            left = not_won[j]
            for k in range(n_stages):
                if n_left <= 0:
                    break
                w = weight[j, k]
                if not w > 0.0:
                    continue
                if k == last_lost[j] or w >= left:
                    n_lost = n_left
                else:
                    n_lost = gen.binomial(n_left, min(max(w / left, 0.0), 1.0))
                n_left -= n_lost
                left -= w
                if n_lost == 0:
                    continue
                if passes[0] != 0:  # every one of them enters the first stage on arrival
                    entries[t, day_period, segment, 0] += n_lost
                if k == first:  # lost at the stage they enter on arrival: their loss days at once
                    if k > 0:  # (the stages before, not passed, take no time)
                        entries[t, day_period, segment, k] += n_lost
                    lost_on_entry(gen, counts, t, segment, k, d, n_lost, ends)
                    continue
                for _ in range(n_lost):
                    x = float(d)
                    for s in range(k + 1):
                        if s > 0:
                            if not x < horizon:
                                break
                            if passes[s] != 0:
                                entries[t, period_of_day[int(x)], segment, s] += 1
                        if s < k:
                            x += _stage_time(gen, days_codes[s], days_pars[s, 0], days_pars[s, 1], days_pars[s, 2],
                                             days_pars[s, 3], pool)
                        elif stalled[k] == 0.0 or gen.random() >= stalled[k]:  # lost, unless stalled for ever
                            x += _stage_time(gen, lost_codes[k], lost_pars[k, 0], lost_pars[k, 1], lost_pars[k, 2],
                                             lost_pars[k, 3], pool)
                            if x < horizon and passes[k] != 0:
                                losses[t, period_of_day[int(x)], segment, k] += 1


def simulate_unwon_leads(streams, trial0, funnel, segment, counts, shocks, theta, not_won_of, record):
    """The new leads of a segment that are not won (v2 E.3), into ``counts.arrivals`` (when
    the leads are counted) and ``record`` (when it has trials: the counts the stage counts
    split, v2 F1): see :func:`simulate_lost_leads` with ``unwon`` 1 (``streams``: its own,
    keyed apart; ``not_won_of``: a segment with moves' 1 - h_1 by trial and month, else
    (0, 0)). Python, as :func:`simulate_new_leads` is: compiled, it would hold the kernel's
    code optimised again."""
    simulate_lost_leads(streams, trial0, funnel, segment, counts, shocks, theta, np.int64(1), not_won_of, record)
