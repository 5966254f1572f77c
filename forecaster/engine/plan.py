"""The kernels' view of a scenario: every quantity encoded as flat numpy arrays.

Built once per run by :func:`build_plan`; the kernels read nothing else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forecaster.calendar import Periods, day_calendar, periods
from forecaster.engine import kernels
from forecaster.scenario.distributions import Distribution, beta_shapes, pert_shapes
from forecaster.scenario.model import Scenario, Shocks


def encode(dist: Distribution) -> tuple[int, np.ndarray, np.ndarray]:
    """A distribution's encoding for the kernels: family code, 4 parameters, and the empirical values.

    See :mod:`forecaster.engine.kernels` for what each parameter slot holds.
    """
    p, d = dist.params, dist.dist
    par = np.zeros(4)
    values = np.zeros(0)
    if d == "fixed":
        code, par[0] = kernels.FIXED, p["value"]
    elif d == "uniform":
        code, par[:2] = kernels.UNIFORM, (p["low"], p["high"])
    elif d == "triangular":
        code, par[:3] = kernels.TRIANGULAR, (p["low"], p["mode"], p["high"])
    elif d == "pert":
        code, par[:4] = kernels.PERT, (p["low"], p["high"], *pert_shapes(p["low"], p["mode"], p["high"]))
    elif d == "normal":
        m, s = p["mean"], p["sd"]
        code, par[:4] = kernels.NORMAL, (m, s, (dist.lower - m) / s, (dist.upper - m) / s)
    elif d == "lognormal":
        code, par[:2] = kernels.LOGNORMAL, (math.log(p["median"]), p["sigma"])
    elif d == "gamma":
        shape = 1.0 / p["cv"] ** 2
        code, par[:2] = kernels.GAMMA, (shape, p["mean"] / shape)
    elif d == "exponential":
        code, par[0] = kernels.EXPONENTIAL, p["mean"]
    elif d == "weibull":
        code, par[:2] = kernels.WEIBULL, (p["shape"], p["scale"])
    elif d == "beta":
        code, par[:2] = kernels.BETA, beta_shapes(p["mean"], p["concentration"])
    elif d == "empirical":
        code, values = kernels.EMPIRICAL, np.sort(np.asarray(p["values"], dtype=float))
    else:  # pragma: no cover
        raise ValueError(d)
    return code, par, values


class _Encoder:
    """Encodes distributions, appending empirical values to one shared pool."""

    def __init__(self):
        self.pool: list[np.ndarray] = []
        self.size = 0

    def __call__(self, dist: Distribution) -> tuple[int, np.ndarray]:
        code, par, values = encode(dist)
        if code == kernels.EMPIRICAL:
            par[0], par[1] = self.size, len(values)
            self.pool.append(values)
            self.size += len(values)
        return code, par

    def pool_array(self) -> np.ndarray:
        return np.concatenate(self.pool) if self.pool else np.zeros(1)


@dataclass
class Plan:
    """Arrays for the kernels. Shapes: G segments, S stages, D days, R reps, N pipeline deals.

    ``param_codes``/``param_pars`` (G, S+2)/(G, S+2, 4): per-trial quantities of each segment
    in the order rate (or cost per lead), growth, convert of each stage.
    """

    days: int
    periods: Periods
    quota_periods: Periods          # commission periods with a plan, else the reporting periods
    earn_period: np.ndarray         # (C,) reporting period in which each commission period pays
    segment_names: tuple
    stage_names: tuple
    quantity_names: tuple           # (S+2,) per-trial quantities: leads, growth_per_month, convert.<stage>
    rep_names: tuple
    quotas: np.ndarray              # (R,)
    pool: np.ndarray
    param_codes: np.ndarray
    param_pars: np.ndarray
    rate_is_cost: np.ndarray        # (G,) bool
    day_mean: np.ndarray            # (G, D)
    elapsed_months: np.ndarray      # (D,)
    dispersion: np.ndarray          # (G,)
    days_codes: np.ndarray          # (G, S) in stage order (the pipeline's view)
    days_pars: np.ndarray           # (G, S, 4)
    lead_days_codes: np.ndarray     # (G, S) the same, longest mean first (the new leads' view)
    lead_days_pars: np.ndarray      # (G, S, 4)
    lead_days_order: np.ndarray     # (G, S) stage index of each column of lead_days_*
    value_codes: np.ndarray         # (G,)
    value_pars: np.ndarray          # (G, 4)
    segment_reps: np.ndarray        # (G, max(1, max reps per segment))
    segment_n_reps: np.ndarray      # (G,)
    deal_segment: np.ndarray        # (N,) and the rest of the pipeline arrays
    deal_stage: np.ndarray
    deal_age: np.ndarray
    deal_mode: np.ndarray
    deal_odds: np.ndarray
    deal_sf: np.ndarray
    deal_pending: np.ndarray        # (N,) P(slipped win waiting for its quarter's end | won, open)
    deal_amount: np.ndarray
    deal_owner: np.ndarray
    shock_leads: float = 0.0        # sigma of the shared lead-rate shock (0: none)
    shock_convert: np.ndarray | None = None  # (S,) sigma of each stage's shared log-odds shock
    drift_leads: float = 0.0                 # sd per month of the lead rates' shared random walk (log)
    drift_convert: np.ndarray | None = None  # (S,) sd per month of each stage's walk (log-odds)
    slip_prob: np.ndarray | None = None      # (D,) chance a deal due that day slips (closing), or None
    slip_lo: np.ndarray | None = None        # (D,) start of that day's quarter-end window [days from start]
    slip_hi: np.ndarray | None = None        # (D,) end of that day's quarter [days from start]
    pending_lo: float = 0.0                  # a waiting slipped win closes uniformly in [lo, hi) [days from start]
    pending_hi: float = 0.0
    capacity_of_day: np.ndarray | None = None  # (D,) capacity of the day's month, pro rata [deals], or None
    month_of_day: np.ndarray | None = None     # (D,) index of the day's calendar month in the horizon
    capacity_cv: float = 0.0

    @property
    def has_shocks(self) -> bool:
        return self.shock_leads > 0 or bool(np.any(self.shock_convert > 0)) or self.has_drift

    @property
    def has_drift(self) -> bool:
        return self.drift_leads > 0 or bool(np.any(self.drift_convert > 0))

    @property
    def months(self) -> int:
        """Calendar months the horizon touches."""
        return int(self.elapsed_months[-1]) + 1

    @property
    def has_closing(self) -> bool:
        return self.slip_prob is not None

    @property
    def has_capacity(self) -> bool:
        return self.capacity_of_day is not None

    def kernel_buffers(self, n: int) -> tuple[np.ndarray, ...]:
        """Zeroed arrays the kernels write a block or chunk of ``n`` trials into.

        Returns
        -------
        revenue : float64, shape (n, periods, segments)  [currency]
        won : int32, shape (n, periods, segments)        [deals]
        bookings : float64, shape (n, quota periods, reps)  [currency]
        inputs : float64, shape (n, segments, S + 2)     the per-trial draws (theta)
        """
        P, G = len(self.periods), len(self.segment_names)
        return (np.zeros((n, P, G)), np.zeros((n, P, G), dtype=np.int32),
                np.zeros((n, len(self.quota_periods), len(self.rep_names))),
                np.zeros((n, G, len(self.quantity_names))))

    def month_factors(self, n: int) -> np.ndarray:
        """Buffer of the drift's factor on each month's won new leads, shape (n, segments,
        months), or (n, segments, 0) without drift."""
        return np.ones((n, len(self.segment_names), self.months if self.has_drift else 0))


def build_plan(sc: Scenario) -> Plan:
    """Encode a scenario for the kernels."""
    enc = _Encoder()
    G, S, D = len(sc.segments), len(sc.stages), sc.days
    rep_index = {name: i for i, name in enumerate(sc.rep_names)}
    month, month_len, elapsed = day_calendar(sc.start, sc.end)
    report = periods(sc.start, sc.end, sc.report_by)
    quota = periods(sc.start, sc.end, sc.commission.period) if sc.commission else report

    param_codes = np.zeros((G, S + 2), dtype=np.int64)
    param_pars = np.zeros((G, S + 2, 4))
    rate_is_cost = np.zeros(G, dtype=np.bool_)
    day_mean = np.zeros((G, D))
    dispersion = np.zeros(G)
    days_codes = np.zeros((G, S), dtype=np.int64)
    days_pars = np.zeros((G, S, 4))
    value_codes = np.zeros(G, dtype=np.int64)
    value_pars = np.zeros((G, 4))
    covering = [[rep_index[r.name] for r in sc.reps if seg in r.segments] for seg in sc.segments]
    segment_reps = np.full((G, max([1, *map(len, covering)])), -1, dtype=np.int64)
    segment_n_reps = np.zeros(G, dtype=np.int64)

    for g, (name, seg) in enumerate(sc.segments.items()):
        leads = seg.leads
        source = leads.source
        rate = leads.cost_per_lead if source == "budget_per_month" else getattr(leads, source)
        growth = leads.growth_per_month or Distribution.fixed(0.0)
        quantities = [rate, growth, *(stage.convert for stage in seg.funnel.values())]
        for j, q in enumerate(quantities):
            param_codes[g, j], param_pars[g, j] = enc(q)
        rate_is_cost[g] = source == "budget_per_month"
        unit = {"per_day": np.ones(D), "per_week": np.full(D, 1 / 7), "per_month": 1.0 / month_len,
                "budget_per_month": leads.budget_per_month / month_len if leads.budget_per_month else
                np.zeros(D)}[source]
        season = np.array([leads.seasonality.get(int(m), 1.0) for m in month])
        day_mean[g] = unit * season
        dispersion[g] = leads.dispersion
        for s, stage in enumerate(seg.funnel.values()):
            days_codes[g, s], days_pars[g, s] = enc(stage.days)
        value_codes[g], value_pars[g] = enc(seg.deal_value)
        segment_n_reps[g] = len(covering[g])
        segment_reps[g, :len(covering[g])] = covering[g]

    # A new lead's time to win is a sum over stages, so the order of its draws does not
    # matter; drawing the longest stage first lets the kernel stop sooner for deals that
    # end after the horizon.
    order = np.array([np.argsort([-st.days.mean() for st in seg.funnel.values()], kind="stable")
                      for seg in sc.segments.values()])
    lead_days_codes = np.take_along_axis(days_codes, order, axis=1)
    lead_days_pars = np.take_along_axis(days_pars, order[:, :, None], axis=1)
    pipe = _pipeline_arrays(sc, enc, rep_index)
    shocks = sc.shocks or Shocks()
    extensions = {"shock_leads": shocks.leads, "drift_leads": shocks.drift_leads,
                  "shock_convert": np.array([shocks.convert.get(s, 0.0) for s in sc.stages]),
                  "drift_convert": np.array([shocks.drift_convert.get(s, 0.0) for s in sc.stages])}
    if sc.closing is not None:
        extensions["slip_prob"], extensions["slip_lo"], extensions["slip_hi"] = _closing_arrays(sc)
        extensions["pending_lo"], extensions["pending_hi"] = _pending_window(sc)
    if sc.capacity is not None:
        cap = sc.capacity
        shape = np.array([cap.quarter_shape.get((int(m) - 1) % 3 + 1, 1.0) for m in month])
        extensions["capacity_of_day"] = cap.won_per_month * shape * (
            np.bincount(elapsed)[elapsed] / month_len)  # pro rata: the month's days inside the horizon
        extensions["month_of_day"] = elapsed.astype(np.int64)
        extensions["capacity_cv"] = cap.cv
    return Plan(
        days=D, periods=report, quota_periods=quota,
        earn_period=report.of_day[quota.last_day], segment_names=sc.segment_names, stage_names=sc.stages,
        quantity_names=("leads", "growth_per_month", *(f"convert.{s}" for s in sc.stages)),
        rep_names=sc.rep_names, quotas=np.array([r.quota for r in sc.reps], dtype=float),
        pool=enc.pool_array(), param_codes=param_codes, param_pars=param_pars, rate_is_cost=rate_is_cost,
        day_mean=day_mean, elapsed_months=elapsed, dispersion=dispersion, days_codes=days_codes,
        days_pars=days_pars, lead_days_codes=lead_days_codes, lead_days_pars=lead_days_pars, lead_days_order=order, value_codes=value_codes, value_pars=value_pars,
        segment_reps=segment_reps, segment_n_reps=segment_n_reps, **pipe, **extensions)


def _closing_arrays(sc: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per day: the chance a deal due then slips, and its quarter's end window [days from start]."""
    from datetime import timedelta

    from forecaster.calendar import period_end

    D, slip, window = sc.days, sc.closing.slip, sc.closing.window_days
    prob, lo, hi = np.zeros(D), np.zeros(D), np.zeros(D)
    for d in range(D):
        day = sc.start + timedelta(days=d)
        end = (period_end(day, "quarter") - sc.start).days + 1.0  # the quarter's end, exclusive
        prob[d] = slip.get((day.month - 1) % 3 + 1, 0.0)
        hi[d] = end
        lo[d] = end - window
    return prob, lo, hi


def _pending_window(sc: Scenario) -> tuple[float, float]:
    """Where a slipped win still waiting on ``start`` closes: uniformly in [lo, hi) days
    from start, the part after ``start`` of the window of the quarter holding the day before
    (hi = lo = 0 when ``start`` opens a quarter: every slip before it has landed)."""
    from datetime import timedelta

    from forecaster.calendar import period_end

    end = (period_end(sc.start - timedelta(days=1), "quarter") - sc.start).days + 1.0  # exclusive
    return (max(0.0, end - sc.closing.window_days), end) if end > 0 else (0.0, 0.0)


def _pending_slips(sc: Scenario, stage, ages: np.ndarray) -> np.ndarray:
    """P(T <= a and the win slipped to a time at or after ``start``) for deals of age ``a``
    in the last stage, under ``closing``: shape of ``ages``.

    A win due on day d (T in [d - e, d - e + 1) for a deal that entered on e) in the
    quarter holding ``start - 1`` slips with the chance of its month of the quarter to a
    time uniform on [max(d, quarter end - window), quarter end); the part of that interval
    from ``start`` on is still to come. Such a deal is open on ``start`` although its time
    to win has passed, so it counts toward its survival.
    """
    from datetime import timedelta

    from forecaster.calendar import period_start

    lo, end = _pending_window(sc)
    if end <= 0:
        return np.zeros(ages.shape)
    first = period_start(sc.start - timedelta(days=1), "quarter")
    back = (sc.start - first).days                        # due days d = start - back .. start - 1
    offsets = np.arange(-back, 0, dtype=float)            # d - start
    slip = np.array([sc.closing.slip.get(((sc.start + timedelta(days=int(o))).month - 1) % 3 + 1, 0.0)
                     for o in offsets])
    window_lo = np.maximum(offsets, end - sc.closing.window_days)
    still = np.clip((end - np.maximum(0.0, window_lo)) / (end - window_lo), 0.0, 1.0)
    t = ages[:, None] + offsets[None, :]                  # T of a deal due on d, shape (deals, days)
    mass = np.where(t >= 0, stage.days.survival(np.maximum(t, 0)) - stage.days.survival(t + 1), 0.0)
    return np.maximum(mass, 0.0) @ (slip * still)


_UNBOUNDED = ("lognormal", "gamma", "exponential", "weibull")


def _log_survival(dist: Distribution, x: np.ndarray) -> np.ndarray:
    """log P(X > x) for an unbounded family far in its tail, where P underflows (shape of
    ``x``); -inf or NaN where it cannot be told (then the contract's "no mass" case)."""
    from scipy import special

    p = dist.params
    x = np.asarray(x, dtype=float)
    if dist.dist == "gamma":  # log Gamma(k, y) ~ (k - 1) log y - y - log Gamma(k) + log(1 + (k - 1) / y)
        k = 1.0 / p["cv"] ** 2
        y = x * k / p["mean"]
        return (k - 1) * np.log(y) - y - special.gammaln(k) + np.log1p(np.maximum((k - 1) / y, -0.5))
    with np.errstate(divide="ignore"):
        return np.asarray(dist._scipy().logsf(x), dtype=float)


def _pipeline_arrays(sc: Scenario, enc: _Encoder, rep_index: dict) -> dict:
    """Pipeline deals as arrays, with the survival of each stage's times at the deal's age.

    With the extension ``stalled`` (a share sigma of the leads that do not convert out of a
    stage never leave it: they stay open for ever), the leads that do not convert are open at
    age a with S_lost'(a) = sigma + (1 - sigma) S_lost(a), so a deal of age a converts with
    p S(a) / (p S(a) + (1 - p) S_lost'(a)): old stuck deals stop looking like wins.
    """
    seg_index = {n: i for i, n in enumerate(sc.segments)}
    stage_index = {n: i for i, n in enumerate(sc.stages)}
    n = len(sc.pipeline)
    out = {"deal_segment": np.zeros(n, dtype=np.int64), "deal_stage": np.zeros(n, dtype=np.int64),
           "deal_age": np.zeros(n), "deal_mode": np.zeros(n, dtype=np.int64), "deal_odds": np.zeros(n),
           "deal_sf": np.zeros(n), "deal_pending": np.zeros(n), "deal_amount": np.full(n, -1.0), "deal_owner": np.full(n, -1, dtype=np.int64)}
    ages = np.array([(sc.start - d.entered_stage).days for d in sc.pipeline], dtype=float)
    s_won, s_lost, pending = np.zeros(n), np.zeros(n), np.zeros(n)
    keys = [(d.segment, d.stage) for d in sc.pipeline]
    for key in set(keys):  # one vectorised survival per (segment, stage)
        rows = np.array([i for i, k in enumerate(keys) if k == key])
        stage = sc.segments[key[0]].funnel[key[1]]
        s_won[rows] = stage.days.survival(ages[rows])
        if sc.closing is not None and key[1] == sc.stages[-1]:  # slips act on the time to win
            pending[rows] = _pending_slips(sc, stage, ages[rows])
        # a share ``stalled`` of the stage's leads neither convert nor are given up: they
        # are open at every age, as if their days_lost were infinite
        stalled = sc.stalled.get(key[1], 0.0)
        s_lost[rows] = stalled + (1.0 - stalled) * stage.lost_days.survival(ages[rows])
    # both survivals underflow: unbounded families still have mass above a, so the odds come
    # from their log-survivals (the contract's "no mass" case is for bounded times)
    underflow = {}
    won_open = s_won + pending  # P(not won yet | won in the end): not due yet, or a slip still to land
    both = (won_open == 0) & (s_lost == 0)
    for key in {keys[i] for i in np.flatnonzero(both)}:
        stage = sc.segments[key[0]].funnel[key[1]]
        if stage.days.dist not in _UNBOUNDED or stage.lost_days.dist not in _UNBOUNDED:
            continue
        rows = np.array([i for i in np.flatnonzero(both) if keys[i] == key])
        diff = _log_survival(stage.lost_days, ages[rows]) - _log_survival(stage.days, ages[rows])
        for i, d in zip(rows, diff):
            if math.isfinite(d):
                underflow[i] = ((kernels.WON_ONLY, 0.0) if d < -700 else (kernels.LOST_ONLY, np.inf)
                                if d > 700 else (kernels.ORDINARY, math.exp(d)))
    for i, deal in enumerate(sc.pipeline):
        if i in underflow:
            mode, odds = underflow[i]
        elif won_open[i] > 0 and s_lost[i] > 0:
            mode, odds = kernels.ORDINARY, s_lost[i] / won_open[i]
        elif won_open[i] > 0:
            mode, odds = kernels.WON_ONLY, 0.0
        elif s_lost[i] > 0:
            mode, odds = kernels.LOST_ONLY, np.inf
        else:
            mode, odds = kernels.NO_MASS, 1.0
        out["deal_segment"][i] = seg_index[deal.segment]
        out["deal_stage"][i] = stage_index[deal.stage]
        out["deal_age"][i] = ages[i]
        out["deal_mode"][i] = mode
        out["deal_odds"][i] = odds
        out["deal_sf"][i] = s_won[i]
        out["deal_pending"][i] = pending[i] / won_open[i] if won_open[i] > 0 else 0.0
        if deal.amount is not None:
            out["deal_amount"][i] = deal.amount
        if deal.owner is not None:
            out["deal_owner"][i] = rep_index[deal.owner]
    return out
