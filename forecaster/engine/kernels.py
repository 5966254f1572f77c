r"""Simulation kernels: arrays and generators in, arrays out; no I/O, no validation.

The model
---------
Time runs in days from the beginning of ``start`` (t = 0) to the end of ``end`` (t = D).
For a segment g and a trial, the *rates and probabilities* are drawn once:

    theta = (r, gamma, p_1, ..., p_S)     lead rate (or cost per lead), monthly growth, conversions

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

Randomness enters only through the ``numpy.random.Generator`` arguments, each reseeded at
the start of every trial from a key and the trial's index (:mod:`forecaster.engine._streams`): a
trial's numbers depend on the seed, the stream and its index only, with or without the JIT.

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
from forecaster.engine._streams import reseed

FIXED, UNIFORM, TRIANGULAR, PERT, NORMAL, LOGNORMAL, GAMMA, EXPONENTIAL, WEIBULL, BETA, EMPIRICAL = range(11)

# pipeline deal modes (how the age conditions the conversion out of its stage)
ORDINARY = 0   # S(a) > 0 and S_lost(a) > 0: q = p / (p + (1 - p) * odds)
NO_MASS = 1    # S(a) = S_lost(a) = 0: leaves at time 0, converts with p
LOST_ONLY = 2  # S(a) = 0 < S_lost(a): cannot still be converting, so it is lost (unless p = 1)
WON_ONLY = 3   # S_lost(a) = 0 < S(a): cannot still be losing, so it converts (unless p = 0)

_SQRT_HALF = math.sqrt(0.5)


@jit(inline="always")
def _normal_mass(a, b):
    """P(a <= Z <= b) for a standard normal Z."""
    return 0.5 * (math.erfc(-b * _SQRT_HALF) - math.erfc(-a * _SQRT_HALF))


@jit(inline="always")
def truncated_standard_normal(gen, a, b):
    """Z ~ N(0, 1) conditioned on a <= Z <= b (either may be infinite). Exact.

    Naive rejection when [a, b] holds at least a quarter of the mass; otherwise a uniform
    proposal on a narrow interval, or Robert's (1995) exponential proposal in a tail. An
    interval left of 0 is mirrored to the right.
    """
    lo, hi = float(a), float(b)
    if lo == -math.inf and hi == math.inf:
        return gen.standard_normal()
    sign = 1.0
    if hi < 0.0:
        lo, hi, sign = -hi, -lo, -1.0
    if _normal_mass(lo, hi) >= 0.25:
        while True:
            z = gen.standard_normal()
            if lo <= z <= hi:
                return sign * z
    if lo <= 0.0:  # narrow interval around 0: density at most 1 (unnormalised)
        while True:
            z = lo + (hi - lo) * gen.random()
            if gen.random() <= math.exp(-0.5 * z * z):
                return sign * z
    if lo * (hi - lo) < 1.0:  # narrow interval in the right tail: density at most exp(-lo^2/2)
        while True:
            z = lo + (hi - lo) * gen.random()
            if gen.random() <= math.exp(0.5 * (lo - z) * (lo + z)):  # lo^2 - z^2, without overflowing
                return sign * z
    # Robert's optimal rate; far out (lo^2 would overflow) it is lo to within 1/lo
    lam = 0.5 * (lo + math.sqrt(lo * lo + 4.0)) if lo < 1e8 else lo + 1.0 / lo
    while True:
        z = lo + gen.standard_exponential() / lam
        if z <= hi and gen.random() <= math.exp(-0.5 * (z - lam) ** 2):
            return sign * z


@jit(inline="always")
def draw(gen, code, p0, p1, p2, p3, pool):
    """One draw from the distribution ``(code, par)``; see the module docstring."""
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


@jit(inline="always")
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
            x = draw(gen, code, p0, p1, p2, p3, pool)
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
        first = np.searchsorted(pool[off:off + n], a, side="right")
        i = first + int(gen.random() * (n - first))
        return pool[off + min(i, n - 1)]
    raise ValueError("unknown distribution code")


@jit
def draw_parameters(gens, addresses, keys, trial0, codes, pars, pool, theta, segment):
    """Per-trial draws of a segment's rates and probabilities, each from its own stream.

    Parameters
    ----------
    gens : tuple of k Generators
        One stream per quantity; reseeded for every trial from ``keys`` (see
        :func:`forecaster.engine._streams.reseed`), so a trial's draws depend only on the seed,
        the quantity and the trial's index.
    addresses, keys : int64, uint64 arrays, shape (k,)
        The streams' state addresses and keys.
    trial0 : int
        Index of the block's first trial in the run.
    codes : int64 array, shape (k,)
    pars : float64 array, shape (k, 4)
        The k quantities: rate (or cost per lead), growth, then each stage's convert.
    theta : float64 array, shape (trials, segments, k_max)
        Written: ``theta[:, segment, :k]``.
    """
    for t in range(theta.shape[0]):
        for j in range(codes.shape[0]):
            reseed(addresses[j], keys[j], trial0 + t)
            theta[t, segment, j] = draw(gens[j], codes[j], pars[j, 0], pars[j, 1], pars[j, 2], pars[j, 3], pool)


@jit
def apply_shocks(gen, address, keys, trial0, sigma_leads, sigma_convert, drift_leads, drift_convert, rate_is_cost,
                 theta, month_factor):
    """Shocks shared by every segment (the scenario's ``shocks``), applied to drawn theta.

    For each trial one standard normal Z_0 multiplies every segment's lead rate by
    exp(sigma_leads Z_0 - sigma_leads^2 / 2) (mean 1; a cost per lead is divided by it),
    and one Z_s per stage shifts every segment's conversion of stage s on the log-odds
    scale: p -> 1 / (1 + (1 - p) / p * exp(-sigma_s Z_s)). Each Z comes from its own stream
    (``keys``: leads, each stage, then the drift's leads and stages), reseeded per trial.

    With ``drift``, random walks by calendar month k after start's (k = 0 unmoved) go on
    from there: W_k = sum of k standard normals per walk. New leads of month k then arrive
    at exp(drift_leads W_k - k drift_leads^2 / 2) times the rate and convert through stage
    s with p_s shifted by drift_convert_s W_{s,k} on the log-odds scale; what that does to
    the won leads of month k is written as one factor into ``month_factor``.

    Parameters
    ----------
    sigma_convert, drift_convert : float64, shape (S,)
    rate_is_cost : bool, shape (segments,)
    theta : float64, shape (trials, segments, S + 2), changed in place
    month_factor : float64, shape (trials, segments, months), written (months = 0: no drift)
    """
    n_seg, n_stages, n_months = theta.shape[1], sigma_convert.shape[0], month_factor.shape[2]
    lead_walk = np.zeros(n_months)
    walks = np.zeros((n_stages, n_months))
    for t in range(theta.shape[0]):
        if sigma_leads > 0.0:
            reseed(address, keys[0], trial0 + t)
            factor = math.exp(sigma_leads * gen.standard_normal() - 0.5 * sigma_leads * sigma_leads)
            for g in range(n_seg):
                if rate_is_cost[g]:
                    theta[t, g, 0] /= factor
                else:
                    theta[t, g, 0] *= factor
        for s in range(n_stages):
            if sigma_convert[s] > 0.0:
                reseed(address, keys[1 + s], trial0 + t)
                odds = math.exp(sigma_convert[s] * gen.standard_normal())
                for g in range(n_seg):
                    p = theta[t, g, 2 + s]
                    if 0.0 < p < 1.0:
                        theta[t, g, 2 + s] = p * odds / (1.0 - p + p * odds)
        if n_months == 0:
            continue
        if drift_leads > 0.0:
            reseed(address, keys[1 + n_stages], trial0 + t)
        w = 0.0
        for k in range(n_months):
            if k > 0 and drift_leads > 0.0:
                w += gen.standard_normal()
            lead_walk[k] = math.exp(drift_leads * w - 0.5 * k * drift_leads * drift_leads)
        for s in range(n_stages):
            if drift_convert[s] > 0.0:
                reseed(address, keys[2 + n_stages + s], trial0 + t)
            w = 0.0
            for k in range(n_months):
                if k > 0 and drift_convert[s] > 0.0:
                    w += gen.standard_normal()
                walks[s, k] = drift_convert[s] * w
        for g in range(n_seg):
            for k in range(n_months):
                f = lead_walk[k]
                for s in range(n_stages):
                    p = theta[t, g, 2 + s]
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
def _book(t, day, segment, value, rep, period_of_day, cperiod_of_day, revenue, won, bookings):
    p = period_of_day[day]
    revenue[t, p, segment] += value
    won[t, p, segment] += 1
    if rep >= 0:
        bookings[t, cperiod_of_day[day], rep] += value


@jit
def simulate_new_leads(gen_count, gen_mixing, gen_arrival, gen_days, gen_value, gen_rep, gen_slip, addresses, keys,
                       trial0, theta, month_factor, segment, rate_is_cost, day_mean, elapsed_months, dispersion,
                       days_codes, days_pars, value_code, value_par, pool, reps, slip_prob, slip_lo, slip_hi,
                       period_of_day, cperiod_of_day, revenue, won, bookings):
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
    gen_count, gen_mixing, gen_arrival : Generator
        Streams of the won-lead counts, the daily gamma multipliers, the arrival days.
    gen_days : tuple of Generators, one per stage (in the order of ``days_codes``)
    gen_value, gen_rep, gen_slip : Generator
        Streams of deal values, rep assignments and quarter-end slips.
    addresses, keys : int64, uint64 arrays, shape (6 + stages,)
        State addresses and keys of the streams, in the order count, mixing, arrival,
        value, rep, slip, then each of ``gen_days``.
    trial0 : int
        Index of the block's first trial in the run.
    theta : float64, shape (trials, segments, k)
        Per-trial draws (see :func:`draw_parameters`).
    month_factor : float64, shape (trials, segments, months) or (trials, segments, 0)
        The drift's factor on the won leads of each calendar month (see :func:`apply_shocks`).
    rate_is_cost : bool
        theta[..., 0] is a cost per lead (mean = f_d / c) rather than a rate (r f_d).
    day_mean : float64, shape (days,)
        f_d: the day's share of the rate's unit times seasonality (times the budget for
        bought leads). [leads per rate unit]
    elapsed_months : int64, shape (days,)
        k_d, whole calendar months since start's month.
    days_codes, days_pars : shape (stages,), (stages, 4)
        Each stage's ``days``, longest mean first (the order draws are made in).
    reps : int64, shape (n,)
        Rep indices covering the segment (n = 0 without a team).
    slip_prob, slip_lo, slip_hi : float64, shape (days,) or (0,) without ``closing``
        Per day a deal is due: the chance it slips, and the window [lo, hi) it then
        lands in (uniformly from max(due, lo)). [days from start]
    period_of_day, cperiod_of_day : int64, shape (days,)
        Reporting and commission period of each day.
    revenue : float64, shape (trials, periods, segments)   [currency], added to
    won : int32, shape (trials, periods, segments)          [deals], added to
    bookings : float64, shape (trials, commission periods, reps)  [currency], added to
    """
    n_days = day_mean.shape[0]
    horizon = float(n_days)
    n_stages = days_codes.shape[0]
    n_reps = reps.shape[0]
    growth = np.empty(elapsed_months[n_days - 1] + 1)
    cum = np.empty(n_days)
    guide = np.empty(n_days, dtype=np.int64)
    arrivals = np.empty(256, dtype=np.int64)  # arrival day of each lead to be won, grown as needed
    times = np.empty(256)  # their time so far [days]
    for t in range(theta.shape[0]):
        for k in range(addresses.shape[0]):
            reseed(addresses[k], keys[k], trial0 + t)
        base = theta[t, segment, 0]
        p_win = 1.0
        for s in range(n_stages):
            p_win *= theta[t, segment, 2 + s]
        scale = (1.0 / base if rate_is_cost else base) * p_win
        if not scale > 0.0:
            continue
        growth[0] = 1.0
        for k in range(1, growth.shape[0]):
            growth[k] = growth[k - 1] * (1.0 + theta[t, segment, 1])
        if month_factor.shape[2] > 0:
            for k in range(growth.shape[0]):
                growth[k] *= month_factor[t, segment, k]
        n_won = 0
        if dispersion > 0.0:
            for d in range(n_days):
                lam = scale * day_mean[d] * growth[elapsed_months[d]]
                lam *= gen_mixing.standard_gamma(1.0 / dispersion) * dispersion
                count = gen_count.poisson(lam)
                if n_won + count > arrivals.shape[0]:
                    arrivals = _grown(arrivals, n_won + count)
                for _ in range(count):
                    arrivals[n_won] = d
                    n_won += 1
        else:
            total = 0.0
            for d in range(n_days):
                total += scale * day_mean[d] * growth[elapsed_months[d]]
                cum[d] = total
            n_won = gen_count.poisson(total)
            if n_won > arrivals.shape[0]:
                arrivals = _grown(arrivals, n_won)
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
                arrivals[i] = d
        # stage by stage over all of this trial's deals (independent draws pipeline well),
        # keeping only those still inside the horizon
        if n_won > times.shape[0]:
            times = np.empty(max(n_won, 2 * times.shape[0]))
        for i in range(n_won):
            times[i] = arrivals[i]
        alive = n_won
        for s in range(n_stages):
            c, q0, q1, q2, q3 = days_codes[s], days_pars[s, 0], days_pars[s, 1], days_pars[s, 2], days_pars[s, 3]
            gen = gen_days[s]
            kept = 0
            for i in range(alive):
                x = times[i] + draw(gen, c, q0, q1, q2, q3, pool)
                times[kept] = x
                kept += 0.0 <= x < horizon  # never an index out of the horizon, whatever a draw gives
            alive = kept
        closing = slip_prob.shape[0] > 0
        for i in range(alive):
            value = draw(gen_value, value_code, value_par[0], value_par[1], value_par[2], value_par[3], pool)
            rep = -1
            if n_reps > 0:
                rep = reps[min(int(gen_rep.random() * n_reps), n_reps - 1)]
            time = times[i]
            if closing:
                time = _slipped(gen_slip, time, slip_prob, slip_lo, slip_hi)
                if time >= horizon:
                    continue
            _book(t, int(time), segment, value, rep, period_of_day, cperiod_of_day, revenue, won, bookings)


@jit
def _grown(a, need):
    out = np.empty(max(need, 2 * a.shape[0]), dtype=a.dtype)
    out[:a.shape[0]] = a
    return out


@jit
def simulate_pipeline(gen_convert, gen_days, gen_value, gen_rep, gen_slip, addresses, keys, trial0, theta,
                      deal_segment, deal_stage, deal_age, deal_mode, deal_odds, deal_sf, deal_pending, pending_lo,
                      pending_hi, deal_amount, deal_owner, days_codes, days_pars, value_codes, value_pars, pool,
                      segment_reps, segment_n_reps, slip_prob, slip_lo, slip_hi, period_of_day, cperiod_of_day,
                      revenue, won, bookings):
    """Won deals from the open pipeline, for a block of trials.

    Every deal draws its conversion, its times through every remaining stage, its value
    (unless given) and its rep in every trial, whether it is won or not: then a change to
    one deal's chances cannot shift the draws of the deals after it (common random
    numbers between scenarios).

    Parameters
    ----------
    gen_convert, gen_days, gen_value, gen_rep, gen_slip : Generator
        Streams of the conversion uniforms, stage times, values, rep assignments and
        quarter-end slips.
    addresses, keys : int64, uint64 arrays, shape (5,)
        Their state addresses and keys; each is reseeded for every trial.
    trial0 : int
        Index of the block's first trial in the run.
    deal_segment, deal_stage : int64, shape (deals,)
    deal_age : float64, shape (deals,)
        Whole days each deal has been in its stage at start. [days]
    deal_mode : int64, shape (deals,)
        ORDINARY, NO_MASS, LOST_ONLY or WON_ONLY (see the module constants).
    deal_odds : float64, shape (deals,)
        S_lost(a) / S(a) for ORDINARY deals.
    deal_sf : float64, shape (deals,)
        S(a) = P(days > a) in the deal's stage.
    deal_pending : float64, shape (deals,)
        With ``closing``: the chance that a deal open at ``start`` that will be won is a win
        already due that slipped and still waits for its quarter's end (then it closes
        uniformly in [pending_lo, pending_hi) days from start, without slipping again); 0
        otherwise. The same two slip uniforms decide it, so a deal with 0 draws as before.
    deal_amount : float64, shape (deals,)
        The deal's value, or -1 to draw it. [currency]
    deal_owner : int64, shape (deals,)
        Rep index, or -1 to assign one as for a new deal.
    days_codes, days_pars : shape (segments, stages), (segments, stages, 4)
    value_codes, value_pars : shape (segments,), (segments, 4)
    segment_reps, segment_n_reps : shape (segments, max reps), (segments,)
    slip_prob, slip_lo, slip_hi : as in :func:`simulate_new_leads`
    revenue, won, bookings : as in :func:`simulate_new_leads`, added to
    """
    horizon = float(period_of_day.shape[0])
    closing = slip_prob.shape[0] > 0
    n_stages = days_codes.shape[1]
    for t in range(theta.shape[0]):
        for k in range(addresses.shape[0]):
            reseed(addresses[k], keys[k], trial0 + t)
        for i in range(deal_segment.shape[0]):
            g, s0, mode = deal_segment[i], deal_stage[i], deal_mode[i]
            p = theta[t, g, 2 + s0]
            if mode == ORDINARY:
                q = p / (p + (1.0 - p) * deal_odds[i])
            elif mode == WON_ONLY:
                q = 1.0 if p > 0.0 else 0.0
            elif mode == LOST_ONLY and p < 1.0:
                q = 0.0
            else:  # NO_MASS, or LOST_ONLY with p = 1: leaves at time 0 with its conversion
                q = p
                mode = NO_MASS
            for s in range(s0 + 1, n_stages):
                q *= theta[t, g, 2 + s]
            converts = gen_convert.random() < q
            u = v = 1.0
            if closing:  # the slip's two uniforms, drawn for every deal
                u = gen_slip.random()
                v = gen_slip.random()
            waiting = u < deal_pending[i]
            time = 0.0
            if mode != NO_MASS and not (waiting and deal_sf[i] <= 0.0):
                a = deal_age[i]
                time = draw_above(gen_days, days_codes[g, s0], days_pars[g, s0, 0], days_pars[g, s0, 1],
                                  days_pars[g, s0, 2], days_pars[g, s0, 3], pool, a, deal_sf[i]) - a
            for s in range(s0 + 1, n_stages):
                time += draw(gen_days, days_codes[g, s], days_pars[g, s, 0], days_pars[g, s, 1], days_pars[g, s, 2],
                             days_pars[g, s, 3], pool)
            value = deal_amount[i]
            if value < 0.0:
                value = draw(gen_value, value_codes[g], value_pars[g, 0], value_pars[g, 1], value_pars[g, 2],
                             value_pars[g, 3], pool)
            rep = deal_owner[i]
            n_reps = segment_n_reps[g]
            if n_reps > 0:
                pick = segment_reps[g, min(int(gen_rep.random() * n_reps), n_reps - 1)]
                if rep < 0:
                    rep = pick
            if waiting:  # a slipped win still to land in this quarter's window
                time = pending_lo + (pending_hi - pending_lo) * v
            elif closing:  # u is uniform again, given not waiting
                time = _slip_by(time, (u - deal_pending[i]) / (1.0 - deal_pending[i]), v, slip_prob, slip_lo, slip_hi)
            if converts and 0.0 <= time < horizon:
                _book(t, int(time), g, value, rep, period_of_day, cperiod_of_day, revenue, won, bookings)


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
def apply_capacity(gen, address, key, trial0, capacity_of_day, month_of_day, cv, day_revenue, day_won,
                   day_bookings, period_of_day, cperiod_of_day, revenue, won, bookings):
    """The team's capacity (``capacity``): deals due beyond a month's room wait, oldest first.

    The kernels booked each trial's won deals by the day they were due (``day_*``). Day by
    day, deals carried over from earlier days are won first, then the day's own, while the
    month has room: C_k = capacity_k * Gamma(1/cv^2, cv^2) (drawn per trial and month, from
    its own stream), rounded to whole deals. The rest are carried to the next day. When
    only some of the waiting deals fit, they are shared among segments in proportion
    (whole deals); each segment's value moves with its share taken, and each rep's bookings
    with the share of the value taken (so bookings still add up to revenue). What still
    waits at ``end`` is not won within the horizon.

    Parameters
    ----------
    capacity_of_day : float64, shape (days,)   the capacity of the day's month [deals]
    month_of_day : int64, shape (days,)        the day's month, counted from start's
    day_revenue, day_won : shape (trials, days, segments); day_bookings : (trials, days, reps)
    period_of_day, cperiod_of_day : int64, shape (days,)
    revenue, won, bookings : the outputs, added to
    """
    n_days, n_seg, n_reps = day_won.shape[1], day_won.shape[2], day_bookings.shape[2]
    carry_n, carry_v, carry_b = np.zeros(n_seg, dtype=np.int64), np.zeros(n_seg), np.zeros(n_reps)
    old_n, old_v, old_b = np.zeros(n_seg, dtype=np.int64), np.zeros(n_seg), np.zeros(n_reps)
    due = np.zeros(n_seg, dtype=np.int64)
    take = np.zeros(n_seg, dtype=np.int64)
    for t in range(day_won.shape[0]):
        reseed(address, key, trial0 + t)
        carry_n[:] = 0
        carry_v[:] = 0.0
        carry_b[:] = 0.0
        room = 0
        for d in range(n_days):
            if d == 0 or month_of_day[d] != month_of_day[d - 1]:
                c = capacity_of_day[d]
                if cv > 0.0:
                    c *= gen.standard_gamma(1.0 / (cv * cv)) * cv * cv
                room = int(c + 0.5)
            p, cp = period_of_day[d], cperiod_of_day[d]
            # the deals already waiting go first, then the day's own; what is not taken waits
            old_n[:] = carry_n
            old_v[:] = carry_v
            old_b[:] = carry_b
            carry_n[:] = 0
            carry_v[:] = 0.0
            carry_b[:] = 0.0
            room -= _admit(room, old_n, old_v, old_b, take, t, p, cp, won, revenue, bookings,
                           carry_n, carry_v, carry_b)
            for g in range(n_seg):
                due[g] = day_won[t, d, g]
            room -= _admit(room, due, day_revenue[t, d], day_bookings[t, d], take, t, p, cp, won, revenue, bookings,
                           carry_n, carry_v, carry_b)


@jit(inline="always")
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


@jit
def draw_many(gen, code, par, pool, out):
    """Fill ``out`` with independent draws of ``(code, par)`` (tests and benchmarks)."""
    for i in range(out.shape[0]):
        out[i] = draw(gen, code, par[0], par[1], par[2], par[3], pool)


@jit
def draw_above_many(gen, code, par, pool, a, sf, out):
    """Fill ``out`` with draws conditioned on exceeding ``a`` (tests and benchmarks)."""
    for i in range(out.shape[0]):
        out[i] = draw_above(gen, code, par[0], par[1], par[2], par[3], pool, a, sf)


@jit
def truncated_standard_normal_many(gen, a, b, out):
    """Fill ``out`` with standard normals conditioned on [a, b] (tests)."""
    for i in range(out.shape[0]):
        out[i] = truncated_standard_normal(gen, a, b)
