"""The kernels' view of a scenario: every quantity encoded as numpy arrays in typed records.

Built once per run by :func:`build_plan`; the kernels read nothing else. The records are
those of :mod:`forecaster.engine.interface`, so a new format key touches the plan (fill a
field) and the one kernel that reads it.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field as dataclass_field, replace
from datetime import date

import numpy as np

from forecaster.calendar import Periods, day_calendar, month_of_quarter, periods
from forecaster.engine.deals import CommissionDeals
from forecaster.engine.interface import (
    BETA,
    COST_PER_LEAD,
    EMPIRICAL,
    EXPONENTIAL,
    FIXED,
    GAMMA,
    HILL,
    LOGNORMAL,
    LOST_ONLY,
    NO_MASS,
    NONE,
    NORMAL,
    ONE_OFF,
    ORDINARY,
    PERT,
    POWER,
    REPEAT_BUYER,
    SUBSCRIPTION,
    THETA_CONVERT,
    THETA_GROWTH,
    THETA_LEADS,
    TRIANGULAR,
    UNIFORM,
    WEIBULL,
    WON_ONLY,
    Capacity,
    Closing,
    CustomerOutputs,
    Customers,
    Events,
    Funnel,
    Installed,
    Outputs,
    Pipeline,
    Shocks,
    StageCounts,
    StageValues,
    quantity_names,
    theta_size,
    typed,
)
from forecaster.engine.moves import Chain, ChainPipeline
from forecaster.scenario.customers import add_months
from forecaster.scenario.distributions import Distribution, beta_shapes, pert_shapes
from forecaster.scenario.model import WON, Scenario, Shocks as ScenarioShocks


def encode(dist: Distribution) -> tuple[int, np.ndarray, np.ndarray]:
    """A distribution's encoding for the kernels: family code, 4 parameters, and the empirical values.

    See :mod:`forecaster.engine.kernels` for what each parameter slot holds.
    """
    p, d = dist.params, dist.dist
    par = np.zeros(4)
    values = np.zeros(0)
    if d == "fixed":
        code, par[0] = FIXED, p["value"]
    elif d == "uniform":
        code, par[:2] = UNIFORM, (p["low"], p["high"])
    elif d == "triangular":
        code, par[:3] = TRIANGULAR, (p["low"], p["mode"], p["high"])
    elif d == "pert":
        code, par[:4] = PERT, (p["low"], p["high"], *pert_shapes(p["low"], p["mode"], p["high"]))
    elif d == "normal":
        m, s = p["mean"], p["sd"]
        code, par[:4] = NORMAL, (m, s, (dist.lower - m) / s, (dist.upper - m) / s)
    elif d == "lognormal":
        code, par[:2] = LOGNORMAL, (math.log(p["median"]), p["sigma"])
    elif d == "gamma":
        shape = 1.0 / p["cv"] ** 2
        code, par[:2] = GAMMA, (shape, p["mean"] / shape)
    elif d == "exponential":
        code, par[0] = EXPONENTIAL, p["mean"]
    elif d == "weibull":
        code, par[:2] = WEIBULL, (p["shape"], p["scale"])
    elif d == "beta":
        code, par[:2] = BETA, beta_shapes(p["mean"], p["concentration"])
    elif d == "empirical":
        code, values = EMPIRICAL, np.sort(np.asarray(p["values"], dtype=float))
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
        if code == EMPIRICAL:
            par[0], par[1] = self.size, len(values)
            self.pool.append(values)
            self.size += len(values)
        return code, par

    def pool_array(self) -> np.ndarray:
        return np.concatenate(self.pool) if self.pool else np.zeros(1)


@dataclass
class Plan:
    """A scenario encoded for the  G segments, S stages, D days, R reps, N pipeline deals.

    The kernels read the records ``funnel``, ``pipeline``, ``closing``, ``shocks`` and
    ``capacity`` (see :mod:`forecaster.engine.interface`: their types do not depend on the
    scenario); the rest names and shapes the outputs.
    """

    days: int
    periods: Periods
    quota_periods: Periods          # commission periods with a plan, else the reporting periods
    earn_period: np.ndarray         # (C,) reporting period in which each commission period pays
    segment_names: tuple
    stage_names: tuple
    quantity_names: tuple           # (K,) the slots of theta: leads, growth_per_month, convert.<stage>
    rep_names: tuple
    quotas: np.ndarray              # (R,)
    lead_days_order: np.ndarray     # (G, S) stage index of each column of funnel.lead_days_*
    funnel: Funnel
    pipeline: Pipeline
    closing: Closing
    shocks: Shocks
    capacity: Capacity
    customers: Customers
    installed: Installed
    stage_values: StageValues
    by_source: bool = False         # v2 F12: revenue and won deals split by source (see SOURCES)
    stage_counts: StageCounts | None = None  # v2 F1: entries and losses by stage (outputs empty: see counts_of)
    chain: Chain | None = None      # v2 B: the segments' moves (None: no segment has any)
    shown: str = "<scenario>"       # the scenario as errors found while running name it
    segment_stages: tuple = ()      # (G,) each segment's own stages (v2 F4; all of them without `stages`)
    chain_pipeline: ChainPipeline | None = None  # v2 B: the open deals of segments with moves
    adjust_theta: Callable[[np.ndarray], None] | None = None  # sensitivity's per-trial step of drawn probabilities
    spend: Spend | None = None      # v2 E.3: what each segment spends (None: spend is not reported)
    events: Events | None = None    # v2 F2: the dated lead events (None: none)
    event_means: np.ndarray = dataclass_field(default_factory=lambda: np.zeros(0))
    """(E,) float: each event's expected count [leads], the mean of its ``count`` law (v2 F2; a
    fixed count is itself), in the order of :attr:`events`; the summary's funnel reads it."""
    same_as: np.ndarray = dataclass_field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    """(L, 4) int64: v2 E.1's shared draws as (holder segment, holder slot, target segment, target
    slot) of theta; each target draws its own value, so the copies may be made in any order."""

    def share_draws(self, theta: np.ndarray) -> None:
        """Give every holder of a ``same_as`` its target's draws (v2 E.1): ``theta[:, g, k] =
        theta[:, g_target, k_target]`` for each row of :attr:`same_as`, on a block's theta
        (trials, segments, K), after every segment's draws and before any step or shock."""
        for g, k, g_target, k_target in self.same_as:
            theta[:, g, k] = theta[:, g_target, k_target]
    deals: CommissionDeals | None = None  # v2 D.2, D.4: spifs and clawbacks (None: neither)

    # the few arrays the results layer reads
    rate_is_cost = property(lambda self: self.funnel.rate_is_cost)      # (G,) bool
    day_mean = property(lambda self: self.funnel.day_mean)              # (G, D)
    elapsed_months = property(lambda self: self.funnel.elapsed_months)  # (D,)
    deal_segment = property(lambda self: self._deals("segment"))        # (N,) of both kinds of open deals
    deal_stage = property(lambda self: self._deals("stage"))            # (N,)
    deal_amount = property(lambda self: self._deals("amount"))          # (N,) -1: drawn from deal_value

    def _deals(self, field: str) -> np.ndarray:
        """A field of every open deal: those of segments without moves, then with."""
        own = getattr(self.pipeline, field)
        return own if not self.has_chain_pipeline else np.concatenate([own, getattr(self.chain_pipeline, field)])

    @property
    def has_pipeline(self) -> bool:
        """Whether there are open deals (of segments with moves or without)."""
        return self.pipeline.segment.shape[0] > 0 or self.has_chain_pipeline

    @property
    def has_moves(self) -> bool:
        """Whether some segment has moves (v2 B): its leads and deals go through
        :mod:`forecaster.engine.moves`."""
        return self.chain is not None

    @property
    def has_chain_pipeline(self) -> bool:
        return self.chain_pipeline is not None and self.chain_pipeline.segment.shape[0] > 0

    @property
    def has_shocks(self) -> bool:
        return self.shocks.leads > 0 or bool(np.any(self.shocks.convert > 0)) or self.has_drift

    @property
    def has_drift(self) -> bool:
        return self.shocks.drift_leads > 0 or bool(np.any(self.shocks.drift_convert > 0))

    @property
    def moves_drift(self) -> bool:
        """Whether segments with moves meet a conversion drift (v2 B.4): their kernels then
        follow each month's chain, from the drift's walks (:func:`forecaster.engine.moves.drift_walks`)."""
        return self.has_moves and bool(np.any(self.shocks.drift_convert > 0))

    def drift_walks(self, n: int) -> np.ndarray:
        """Buffer of the conversion drift's walks for ``n`` trials, shape (n, S, months), or
        (n, S, 0) unless :attr:`moves_drift`."""
        return np.zeros((n, len(self.stage_names), self.months if self.moves_drift else 0))

    @property
    def months(self) -> int:
        """Calendar months the horizon touches."""
        return int(self.elapsed_months[-1]) + 1

    @property
    def has_events(self) -> bool:
        """Whether some segment has dated lead events (v2 F2)."""
        return self.events is not None and self.events.day.shape[0] > 0

    def events_of(self, g: int) -> int:
        """How many dated lead events segment ``g`` has (v2 F2)."""
        return 0 if self.events is None else int(self.events.first[g + 1] - self.events.first[g])

    def chain_record(self) -> Chain:
        """The kernels' :class:`Chain`: the segments' moves, or one without any (every ``has`` 0)."""
        if self.chain is not None:
            return self.chain
        G, S = len(self.segment_names), len(self.stage_names)
        none = np.zeros((G, S, 1), dtype=np.int64)
        return typed(Chain, has=np.zeros(G, dtype=np.int64), n_moves=np.zeros((G, S), dtype=np.int64),
                     to=np.full((G, S, 1), -1, dtype=np.int64), slot=none, own_days=none, days_codes=none,
                     days_pars=np.zeros((G, S, 1, 4)))

    # --- v2 F2: what the dated lead events bring (for leads and spend, v2 E.3) ---------------

    def event_buffers(self, n: int) -> tuple[np.ndarray, ...]:
        """With events: each event's drawn count, int64 (n, E) [leads], in the order of
        ``events`` (segment by segment, each segment's list in its order); nothing otherwise.
        In :meth:`kernel_buffers`, just before the by-source buffers."""
        if self.events is None or not self.has_events:
            return ()
        return (np.zeros((n, self.events.day.shape[0]), dtype=np.int64),)

    def split_event_counts(self, extra: tuple) -> np.ndarray | None:
        """Each event's drawn count, int64 (trials, E), among the buffers of
        :meth:`kernel_buffers` after the first four; None without events."""
        if not self.has_events:
            return None
        return extra[-3] if self.by_source else extra[-1]

    def event_leads(self, counts: np.ndarray) -> np.ndarray:
        """Event leads by period and segment, int64 (trials, periods, segments) [leads]: each
        event's count (``counts``, (trials, E), see :meth:`split_event_counts`) on its date."""
        out = np.zeros((counts.shape[0], len(self.periods), len(self.segment_names)), dtype=np.int64)
        if self.events is not None:
            for g in range(len(self.segment_names)):
                for e in range(int(self.events.first[g]), int(self.events.first[g + 1])):
                    out[:, self.periods.of_day[self.events.day[e]], g] += counts[:, e]
        return out

    def event_spend(self) -> np.ndarray:
        """The events' costs on their dates, by period and segment, float64 (periods, segments)
        [currency] (the same in every trial)."""
        out = np.zeros((len(self.periods), len(self.segment_names)))
        if self.events is not None:
            for g in range(len(self.segment_names)):
                for e in range(int(self.events.first[g]), int(self.events.first[g + 1])):
                    out[self.periods.of_day[self.events.day[e]], g] += self.events.cost[e]
        return out

    @property
    def has_closing(self) -> bool:
        return self.closing.slip_prob.shape[0] > 0

    @property
    def has_capacity(self) -> bool:
        return self.capacity.of_day.shape[0] > 0

    @property
    def has_stage_values(self) -> bool:
        """Whether some stage books a value when leads convert out of it (v2 F11)."""
        return bool(np.any(self.stage_values.valued))

    @property
    def has_customers(self) -> bool:
        """Whether won deals create customers (a segment with a ``customer`` block, v2 A)."""
        return bool(np.any(self.customers.kind != NONE))

    def kernel_buffers(self, n: int) -> tuple[np.ndarray, ...]:
        """Zeroed arrays the kernels write a block or chunk of ``n`` trials into.

        Returns
        -------
        revenue : float64, shape (n, periods, segments)  [currency]
        won : int32, shape (n, periods, segments)        [deals]
        bookings : float64, shape (n, quota periods, reps)  [currency]
        inputs : float64, shape (n, segments, K)         the per-trial draws (theta)
        *after_sale : with customers only, the fields of :class:`CustomerOutputs` but the last,
            float64, shape (n, periods, segments), and rep_bookings (n, quota periods, reps);
            then with stage values only, stage_revenue (n, periods, segments) [currency]
        """
        P, G, C, R = len(self.periods), len(self.segment_names), len(self.quota_periods), len(self.rep_names)
        out: tuple[np.ndarray, ...] = (np.zeros((n, P, G)), np.zeros((n, P, G), dtype=np.int32), np.zeros((n, C, R)),
               np.zeros((n, G, len(self.quantity_names))))
        if self.has_customers:
            out += tuple(np.zeros((n, P, G)) for _ in AFTER_SALE_FLOWS) + (np.zeros((n, C, R)),)
        if self.has_stage_values:
            out += (np.zeros((n, P, G)),)
        out += self.count_buffers(n)
        out += self.lead_buffers(n)
        out += self.commission_buffers(n)  # split_commission counts from the start, split_event_counts from the end
        out += self.event_buffers(n)
        out += self.source_buffers(n)
        return out

    # --- v2 D: spifs and clawbacks ------------------------------------------------------------

    @property
    def keeps_deals(self) -> bool:
        """Whether the kernels keep a log of the deals won: for customers, spifs or clawbacks."""
        return self.has_customers or self.deals is not None

    def commission_buffers(self, n: int) -> tuple[np.ndarray, ...]:
        """With spifs: the spifs' payments, float64 (n, commission periods, reps) [currency],
        those not counting toward the cap, then those that do (v2 D.4); with a clawback, an
        object array (n,) holding each trial's rows of
        :data:`forecaster.engine.deals.CLAWBACK_COLUMNS` (v2 D.2). In :meth:`kernel_buffers`,
        after the leads buffer."""
        out: tuple[np.ndarray, ...] = ()
        if self.deals is None:
            return out
        if self.deals.spifs:
            C, R = len(self.quota_periods), len(self.rep_names)
            out += (np.zeros((n, C, R)), np.zeros((n, C, R)))
        if self.deals.clawback:
            rows = np.empty(n, dtype=object)
            rows[:] = [np.zeros((0, 4)) for _ in range(n)]
            out += (rows,)
        return out

    def split_commission(self, extra: tuple) -> tuple:
        """(spif free, spif capped, clawback rows) among the buffers after the first four,
        each None where the plan has no such buffer (or ``extra`` holds none: a caller that
        passes only the first four)."""
        if self.deals is None or not extra:
            return None, None, None
        at = ((len(AFTER_SALE_FLOWS) + 1 if self.has_customers else 0) + (1 if self.has_stage_values else 0)
              + (2 if self.counting else 0) + (1 if self.cycling else 0) + (1 if self.counting_leads else 0))
        free = capped = rows = None
        if self.deals.spifs:
            free, capped = extra[at], extra[at + 1]
            at += 2
        if self.deals.clawback:
            rows = extra[at]
        return free, capped, rows

    def split_extra(self, extra: tuple) -> tuple[tuple, np.ndarray]:
        """The buffers of :meth:`kernel_buffers` after the first four: the after-sale ones
        (empty without customers) and stage_revenue (an empty (0, P, G) array without stage values)."""
        n_after = len(AFTER_SALE_FLOWS) + 1 if self.has_customers else 0
        stage = extra[n_after] if self.has_stage_values else np.zeros((0, len(self.periods), len(self.segment_names)))
        return tuple(extra[:n_after]), stage

    # --- v2 F1: entries and losses by stage ---------------------------------------------------

    @property
    def counting(self) -> bool:
        """Whether entries into and losses at each stage are counted (v2 F1)."""
        return self.stage_counts is not None and self.stage_counts.on != 0

    @property
    def cycling(self) -> bool:
        """Whether the won deals' cycle times are pooled (v2 F1, ``outputs.cycle_days``)."""
        return self.stage_counts is not None and self.stage_counts.cycle != 0

    def count_buffers(self, n: int) -> tuple[np.ndarray, ...]:
        """When counting: stage_entries and losses, int32 (n, periods, segments, stages)
        [leads]; when pooling cycle times, an object array (n,) holding each trial's float64
        array (deals, 2) of (segment, days from arrival to win); nothing otherwise. In
        :meth:`kernel_buffers`, after stage_revenue."""
        out: tuple[np.ndarray, ...] = ()
        if self.counting:
            shape = (n, len(self.periods), len(self.segment_names), len(self.stage_names))
            out += (np.zeros(shape, dtype=np.int32), np.zeros(shape, dtype=np.int32))
        if self.cycling:
            cycles = np.empty(n, dtype=object)
            cycles[:] = [np.zeros((0, 2)) for _ in range(n)]
            out += (cycles,)
        return out

    def split_cycles(self, extra: tuple) -> np.ndarray | None:
        """The cycle-time buffer of :meth:`count_buffers` among those after the first four, or None."""
        if not self.cycling:
            return None
        at = (len(AFTER_SALE_FLOWS) + 1 if self.has_customers else 0) + (1 if self.has_stage_values else 0)
        return extra[at + (2 if self.counting else 0)]

    def split_counts(self, extra: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        """The stage_entries and losses buffers among those after the first four, or None."""
        if not self.counting:
            return None
        at = (len(AFTER_SALE_FLOWS) + 1 if self.has_customers else 0) + (1 if self.has_stage_values else 0)
        return extra[at], extra[at + 1]

    def counts_of(self, counts: tuple[np.ndarray, np.ndarray] | None, leads: np.ndarray | None = None) -> StageCounts:
        """The kernels' :class:`StageCounts` record writing into a block's ``counts`` buffers
        (:meth:`split_counts`) and ``leads`` buffer (:meth:`split_leads`); without counting,
        one that the kernels skip (``on`` 0; ``leads`` 0 without the leads buffer)."""
        base = self.stage_counts if self.stage_counts is not None else _stage_counts_off(self)
        if leads is not None:
            base = base._replace(arrivals=leads)
        if counts is None:
            empty = np.zeros((0, len(self.periods), len(self.segment_names), len(self.stage_names)), dtype=np.int32)
            return base._replace(entries=empty, losses=np.zeros_like(empty))
        return base._replace(entries=counts[0], losses=counts[1])

    # --- v2 E.3: leads and spend ----------------------------------------------------------------

    @property
    def counting_leads(self) -> bool:
        """Whether the leads arriving are counted (v2 E.3: ``outputs.leads`` or spend)."""
        return self.stage_counts is not None and self.stage_counts.leads != 0

    def lead_buffers(self, n: int) -> tuple[np.ndarray, ...]:
        """When counting leads: leads, int32 (n, periods, segments) [leads]; nothing otherwise.
        In :meth:`kernel_buffers`, after the count buffers."""
        return (np.zeros((n, len(self.periods), len(self.segment_names)), dtype=np.int32),) \
            if self.counting_leads else ()

    def split_leads(self, extra: tuple) -> np.ndarray | None:
        """The leads buffer of :meth:`lead_buffers` among those after the first four, or None."""
        if not self.counting_leads:
            return None
        at = ((len(AFTER_SALE_FLOWS) + 1 if self.has_customers else 0) + (1 if self.has_stage_values else 0)
              + (2 if self.counting else 0) + (1 if self.cycling else 0))
        return extra[at]

    # --- v2 F12: results by source -------------------------------------------------------------

    def source_buffers(self, n: int) -> tuple[np.ndarray, ...]:
        """With ``outputs.by_source``: revenue_by_source, float64 (n, periods, sources)
        [currency], and won_by_source, int32 (n, periods, sources) [deals], sources in
        :data:`SOURCES`' order; nothing otherwise. They come last in :meth:`kernel_buffers`."""
        if not self.by_source:
            return ()
        P = len(self.periods)
        return np.zeros((n, P, len(SOURCES))), np.zeros((n, P, len(SOURCES)), dtype=np.int32)

    def split_sources(self, extra: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        """The by-source buffers among the buffers of :meth:`kernel_buffers` after the first
        four (see :meth:`source_buffers`), or None without ``outputs.by_source``."""
        if not self.by_source:
            return None
        return extra[-2], extra[-1]

    def customer_outputs(self, after_sale) -> CustomerOutputs:
        """The after-sale buffers of :meth:`kernel_buffers` as the kernel's record."""
        return typed(CustomerOutputs, **dict(zip(AFTER_SALE_FLOWS, after_sale[:-1])), rep_bookings=after_sale[-1],
                     quota_period_of_day=self.quota_periods.of_day)

    def outputs(self, revenue, won, bookings) -> Outputs:
        """Where the kernels book a block's won deals: its rows of the outputs, by period."""
        return typed(Outputs, period_of_day=self.periods.of_day, quota_period_of_day=self.quota_periods.of_day,
                     revenue=revenue, won=won, bookings=bookings)

    def due_outputs(self, n: int, segments: int, reps: int) -> Outputs:
        """Zeroed outputs by the day deals are due, for ``n`` trials (with ``capacity``:
        capacity then decides when they are won, see :func:`forecaster.engine.kernels.apply_capacity`)."""
        D = self.days
        day = np.arange(D, dtype=np.int64)
        return typed(Outputs, period_of_day=day, quota_period_of_day=day, revenue=np.zeros((n, D, segments)),
                     won=np.zeros((n, D, segments), dtype=np.int32), bookings=np.zeros((n, D, reps)))

    def month_factors(self, n: int) -> np.ndarray:
        """Buffer of the drift's factor on each month's won new leads, shape (n, segments,
        months), or (n, segments, 0) without drift."""
        return np.ones((n, len(self.segment_names), self.months if self.has_drift else 0))


AFTER_SALE_FLOWS = ("recognised", "renewal", "repeat", "cancellations", "new", "churned", "repeat_customers",
                    "regular_customers", "active", "mrr")
"""The (trials, periods, segments) fields of :class:`CustomerOutputs`, in its order."""

SOURCES = ("pipeline", "new_leads", "events")
"""v2 F12: the sources of won deals, in the order of the ``source`` coordinate."""
PIPELINE_SOURCE, NEW_LEADS_SOURCE, EVENTS_SOURCE = range(3)


def build_plan(sc: Scenario) -> Plan:
    """Encode a scenario for the kernels."""
    enc = _Encoder()
    G, S, D = len(sc.segments), len(sc.stages), sc.days
    after_sale = sc.has_customers
    moves = move_quantities(sc)  # v2 B: a slot of theta for each (stage, to) with a move, last
    responding = any(seg.leads.response is not None for seg in sc.segments.values())  # v2 C: slots last
    costing = any(seg.cost is not None for seg in sc.segments.values())  # v2 E.2: the cost per lead's slot, last
    K = theta_size(S, after_sale, len(moves), responding, costing)
    rep_index = {name: i for i, name in enumerate(sc.rep_names)}
    month, month_len, elapsed = day_calendar(sc.start, sc.end)
    fy = sc.fiscal_start_month
    report = periods(sc.start, sc.end, sc.report_by, fy)
    quota = periods(sc.start, sc.end, sc.commission.period, fy) if sc.commission else report

    param_codes = np.zeros((G, K), dtype=np.int64)
    param_pars = np.zeros((G, K, 4))
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
    n_months = int(elapsed[-1]) + 1
    month_of = np.zeros(n_months, dtype=np.int64)  # calendar month (1-12) of each elapsed month
    month_of[elapsed] = month
    response_curve = np.zeros(G, dtype=np.int64)
    response_slot = np.full(G, -1, dtype=np.int64)
    log_budget_ratio = np.zeros((G, n_months))
    log_reference_budget = np.zeros(G)

    for g, seg in enumerate(sc.segments.values()):
        leads = seg.leads
        source = leads.source
        rate = leads.cost_per_lead if source == "budget_per_month" else getattr(leads, source)
        growth = leads.growth_per_month or Distribution.fixed(0.0)
        param_codes[g, THETA_LEADS], param_pars[g, THETA_LEADS] = enc(rate)
        param_codes[g, THETA_GROWTH], param_pars[g, THETA_GROWTH] = enc(growth)
        for s, stage in enumerate(seg.funnel.values()):
            param_codes[g, THETA_CONVERT + s], param_pars[g, THETA_CONVERT + s] = enc(stage.convert)
        if after_sale:
            for i, dist in enumerate(_after_sale_quantities(seg)):
                param_codes[g, THETA_CONVERT + S + i], param_pars[g, THETA_CONVERT + S + i] = enc(dist)
        rate_is_cost[g] = source == "budget_per_month"
        unit = {"per_day": np.ones(D), "per_week": np.full(D, 1 / 7), "per_month": 1.0 / month_len,
                "budget_per_month": _budget_per_day(leads, month, month_len)}.get(source)
        season = np.array([leads.seasonality.get(int(m), 1.0) for m in month])
        day_mean[g] = unit * season
        dispersion[g] = leads.dispersion
        for s, stage in enumerate(seg.funnel.values()):
            days_codes[g, s], days_pars[g, s] = enc(stage.days)
        value_codes[g], value_pars[g] = enc(seg.deal_value)
        segment_n_reps[g] = len(covering[g])
        segment_reps[g, :len(covering[g])] = covering[g]

    if responding:  # v2 C: the curve's draws in the last slots; month k's budget as log(B_k / B0)
        first_response = theta_size(S, after_sale, len(moves))
        for g, seg in enumerate(sc.segments.values()):
            response = seg.leads.response
            for i, dist in enumerate(response.quantities() if response else (Distribution.fixed(0.0),) * 3):
                param_codes[g, first_response + i], param_pars[g, first_response + i] = enc(dist)
            if response is not None:
                response_curve[g] = POWER if response.curve == "power" else HILL
                response_slot[g] = first_response
                log_reference_budget[g] = math.log(response.reference_budget)
                log_budget_ratio[g] = [math.log(b) - log_reference_budget[g] if b > 0 else -math.inf
                                       for b in (seg.leads.budget(int(m)) for m in month_of)]
    cost_slot = -1
    if costing:
        cost_slot = theta_size(S, after_sale, len(moves), responding)
        for g, seg in enumerate(sc.segments.values()):
            per_lead = seg.cost.per_lead if seg.cost is not None else None
            param_codes[g, cost_slot], param_pars[g, cost_slot] = enc(per_lead or Distribution.fixed(0.0))
    chain = None
    if moves:
        first_move = theta_size(S, after_sale)
        for g, seg in enumerate(sc.segments.values()):
            for i, (stage, to) in enumerate(moves):
                move = next((m for m in seg.funnel[stage].moves if m.to == to), None)
                param_codes[g, first_move + i], param_pars[g, first_move + i] = enc(
                    move.share if move is not None else Distribution.fixed(0.0))
        chain = typed(Chain, **chain_record(sc, enc, first_move)._asdict())  # before the pool is made
    # v2 E.1: a quantity that is the same draw as another draws nothing of its own (a fixed 0,
    # overwritten in every trial by its target's draw: Plan.share_draws)
    names = quantity_names(sc.stages, after_sale, moves, responding, costing)
    seg_index = {name: g for g, name in enumerate(sc.segments)}
    shared = np.array([(seg_index[holder[1]], names.index(slot_of(sc.segments[holder[1]], holder[2:])),
                        seg_index[target[1]], names.index(slot_of(sc.segments[target[1]], target[2:])))
                       for holder, target in sc.same_as], dtype=np.int64).reshape(-1, 4)
    for g, k, _, _ in shared:
        param_codes[g, k], param_pars[g, k] = FIXED, 0.0
    # A new lead's time to win is a sum over stages, so the order of its draws does not
    # matter; drawing the longest stage first lets the kernel stop sooner for deals that
    # end after the horizon.
    order = np.array([np.argsort([-st.days.mean() for st in seg.funnel.values()], kind="stable")
                      for seg in sc.segments.values()]).reshape(G, S)
    customers = _customers(sc, enc, report, after_sale)
    stage_values = _stage_values(sc, enc, order, report)
    has_events = any(seg.leads.events for seg in sc.segments.values())
    # with events, the record even when nothing is counted: the leads they do not win draw their
    # days_lost (and stalled) whether or not they are counted, so stage values do not depend on it
    stage_counts = _stage_counts(sc, enc, report, [d for d in sc.pipeline if not sc.segments[d.segment].has_moves]) \
        if sc.outputs.counts or sc.outputs.cycle_days or sc.counts_leads or has_events else None
    events = _events(sc, enc) if has_events else None
    funnel = typed(Funnel, param_codes=param_codes, param_pars=param_pars, rate_is_cost=rate_is_cost,
                   day_mean=day_mean, elapsed_months=elapsed, dispersion=dispersion, days_codes=days_codes,
                   days_pars=days_pars, lead_days_codes=np.take_along_axis(days_codes, order, axis=1),
                   lead_days_pars=np.take_along_axis(days_pars, order[:, :, None], axis=1), value_codes=value_codes,
                   value_pars=value_pars, reps=segment_reps, n_reps=segment_n_reps, pool=enc.pool_array(),
                   response_curve=response_curve, response_slot=response_slot, log_budget_ratio=log_budget_ratio,
                   log_reference_budget=log_reference_budget)
    customers = customers._replace(pool=funnel.pool)  # one pool: the encoder's, complete now
    stage_values = stage_values._replace(pool=funnel.pool)
    stage_counts = stage_counts._replace(pool=funnel.pool) if stage_counts is not None else None
    shocks = sc.shocks or ScenarioShocks()
    slips = _closing_arrays(sc) if sc.closing is not None else (np.zeros(0),) * 3
    pending = _pending_window(sc) if sc.closing is not None else (0.0, 0.0)
    capacity = typed(Capacity, of_day=np.zeros(0), month_of_day=np.zeros(0, dtype=np.int64), cv=0.0)
    if sc.capacity is not None:
        cap = sc.capacity
        shape = np.array([cap.quarter_shape.get(month_of_quarter(int(m), fy), 1.0) for m in month])
        capacity = typed(Capacity, of_day=cap.won_per_month * shape * (
            np.bincount(elapsed)[elapsed] / month_len),  # pro rata: the month's days inside the horizon
            month_of_day=elapsed, cv=cap.cv)
    # the open deals of segments with moves go through forecaster.engine.moves
    with_moves = tuple(d for d in sc.pipeline if sc.segments[d.segment].has_moves)
    without_moves = replace(sc, pipeline=tuple(d for d in sc.pipeline if not sc.segments[d.segment].has_moves)) \
        if with_moves else sc
    return Plan(
        days=D, periods=report, quota_periods=quota,
        earn_period=report.of_day[quota.last_day], segment_names=sc.segment_names, stage_names=sc.stages,
        quantity_names=names, rep_names=sc.rep_names, same_as=shared,
        quotas=np.array([r.quota for r in sc.reps], dtype=float), lead_days_order=order, funnel=funnel,
        pipeline=typed(Pipeline, **_pipeline_arrays(without_moves, enc, rep_index)),
        closing=typed(Closing, slip_prob=slips[0], slip_lo=slips[1], slip_hi=slips[2], pending_lo=pending[0],
                      pending_hi=pending[1]),
        shocks=typed(Shocks, leads=shocks.leads, drift_leads=shocks.drift_leads,
                     convert=np.array([shocks.convert.get(s, 0.0) for s in sc.stages], dtype=float),
                     drift_convert=np.array([shocks.drift_convert.get(s, 0.0) for s in sc.stages], dtype=float)),
        capacity=capacity, customers=customers, installed=_installed(sc, rep_index),
        stage_values=stage_values, by_source=sc.outputs.by_source, stage_counts=stage_counts, chain=chain,
        shown=str(sc.source) if sc.source is not None else sc.name,
        segment_stages=tuple(tuple(s for s in sc.stages if seg.passes(s)) for seg in sc.segments.values()),
        chain_pipeline=typed(ChainPipeline, **chain_pipeline(sc, with_moves, rep_index,
                                                             chain.to.shape[2])._asdict()) if chain else None,
        spend=_spend(sc, month, month_len, elapsed, cost_slot) if sc.spends else None,
        events=events, deals=CommissionDeals.of(sc, quota.of_day),
        event_means=np.array([e.count.mean() for seg in sc.segments.values() for e in seg.leads.events], dtype=float))


@dataclass(frozen=True)
class Spend:
    """What each segment spends (v2 E.3), G segments, M months of the horizon (the months it
    touches, first to last), D days: ``monthly`` [currency per calendar month], shape (G, M):
    each month's budget (C.4) and ``cost.per_month``, spent evenly over the month's days;
    ``month_of_day`` (D,), each day's month of the horizon (0 = ``start``'s) and
    ``month_days`` (M,), each month's calendar days; ``dated`` [currency], shape (G, D): the
    events' costs on their dates; ``per_won`` [currency per won deal], shape (G,); and
    ``cost_slot``, theta's slot of ``cost.per_lead`` [currency per lead] (-1: no segment has
    a cost)."""

    monthly: np.ndarray
    month_of_day: np.ndarray
    month_days: np.ndarray
    dated: np.ndarray
    per_won: np.ndarray
    cost_slot: int

    def fixed(self, period_of_day: np.ndarray, P: int) -> np.ndarray:
        """The spend that does not depend on the trial, by period and segment [currency], shape
        (P, G): each (period, month) pair's share of the month's amount, amount x (the month's
        days inside the period) / (the month's days), exactly the amount where the whole month
        is inside the period (so whole months add up without rounding noise), plus the events'
        costs."""
        M = self.month_days.shape[0]
        inside = np.bincount(self.month_of_day * P + period_of_day, minlength=M * P).reshape(M, P)
        whole = inside == self.month_days[:, None]
        out = np.zeros((P, self.monthly.shape[0]))
        for g, amounts in enumerate(self.monthly):
            share = np.where(whole, amounts[:, None], amounts[:, None] * inside / self.month_days[:, None])
            out[:, g] = share.sum(axis=0)
            out[:, g] += np.bincount(period_of_day, weights=self.dated[g], minlength=P)
        return out

    def of(self, leads: np.ndarray, won: np.ndarray, theta: np.ndarray, period_of_day: np.ndarray) -> np.ndarray:
        """Spend by trial, period and segment [currency], shape (n, P, G), from the leads
        arriving and the deals won by period (n, P, G) and the trials' draws ``theta`` (n, G, K)."""
        out = self.fixed(period_of_day, leads.shape[1])[None, :, :] + self.per_won[None, None, :] * won
        if self.cost_slot >= 0:
            out = out + theta[:, None, :, self.cost_slot] * leads
        return out


def _spend(sc: Scenario, month: np.ndarray, month_len: np.ndarray, elapsed: np.ndarray, cost_slot: int) -> Spend:
    """The :class:`Spend` record of a scenario that reports spend."""
    G, D, M = len(sc.segments), sc.days, int(elapsed[-1]) + 1
    first = np.searchsorted(elapsed, np.arange(M))  # each month's first day in the horizon
    calendar, days = month[first], month_len[first].astype(float)
    monthly, dated, per_won = np.zeros((G, M)), np.zeros((G, D)), np.zeros(G)
    for g, seg in enumerate(sc.segments.values()):
        leads = seg.leads
        if leads.source == "budget_per_month":  # what is spent is the budget, whatever the response (C.4)
            monthly[g] += [leads.budget(int(m)) for m in calendar]
        if seg.cost is not None:
            monthly[g] += seg.cost.per_month
            per_won[g] = seg.cost.per_won
        for event in getattr(leads, "events", ()):  # v2 F2: an event's cost on its date
            if event.cost:
                dated[g, (event.date - sc.start).days] += event.cost
    return Spend(monthly, elapsed, days, dated, per_won, cost_slot)


def _budget_per_day(leads, month: np.ndarray, month_len: np.ndarray) -> np.ndarray:
    """Each day's share of its month's budget [currency per day], shape (D,): the month's
    budget (``budget_by_month``, else ``budget_per_month``) over its days; with ``response``
    (v2 C), the reference budget's, whose curve then scales each month by g(B_k) / g(B0)."""
    if leads.response is not None:
        return leads.response.reference_budget / month_len
    if not leads.budget_by_month:  # v1
        return leads.budget_per_month / month_len if leads.budget_per_month else np.zeros(month.shape[0])
    return np.array([leads.budget(int(m)) for m in month]) / month_len




def _events(sc: Scenario, enc: _Encoder) -> Events:
    """The :class:`Events` record (v2 F2): every segment's events, segment by segment, each
    entering its stage (default: the segment's first)."""
    first, day, stage, codes, pars, cost = [0], [], [], [], [], []
    for seg in sc.segments.values():
        own = seg.stages or sc.stages
        for event in seg.leads.events:
            day.append((event.date - sc.start).days)
            stage.append(sc.stages.index(event.stage or own[0]))
            code, par = enc(event.count)
            codes.append(code)
            pars.append(par)
            cost.append(event.cost)
        first.append(len(day))
    return typed(Events, first=np.array(first, dtype=np.int64), day=np.array(day, dtype=np.int64),
                 stage=np.array(stage, dtype=np.int64), count_codes=np.array(codes, dtype=np.int64),
                 count_pars=np.array(pars, dtype=float).reshape(len(day), 4), cost=np.array(cost, dtype=float))


AFTER_SALE_SLOTS = {("customer", "subscription", "renew"): "renew", ("customer", "subscription", "expansion"): "expansion",
                    ("customer", "repeat", "per_month"): "repeat.per_month", ("customer", "repeat", "dropout"): "dropout",
                    ("customer", "cancel", "probability"): "cancel.probability"}
"""The slot of theta of each after-sale quantity drawn once per trial, by key path under its segment."""


def slot_of(seg, rel: tuple) -> str:
    """The slot of theta (a name of :func:`~forecaster.engine.interface.quantity_names`) that
    holds the per-trial quantity at key path ``rel`` under segment ``seg``: a lead rate or
    ``cost_per_lead`` -> ``leads``, ``funnel.<stage>.convert`` -> ``convert.<stage>``,
    ``funnel.<stage>.moves[i].share`` -> ``move.<stage>.<to>``, ...

    Raises
    ------
    KeyError
        For a key path that is not a quantity drawn once per trial.
    """
    rel = tuple(rel)
    if rel[:1] == ("leads",) and len(rel) == 2:
        return {"per_day": "leads", "per_week": "leads", "per_month": "leads", "cost_per_lead": "leads",
                "growth_per_month": "growth_per_month"}[str(rel[1])]
    if rel[:2] == ("leads", "response") and len(rel) == 3:  # v2 C
        return f"response.{rel[2]}"
    if rel == ("cost", "per_lead"):  # v2 E.2
        return COST_PER_LEAD
    if rel[:1] == ("funnel",) and len(rel) == 3 and rel[2] == "convert":
        return f"convert.{rel[1]}"
    if rel[:1] == ("funnel",) and len(rel) == 5 and rel[2] == "moves" and rel[4] == "share":
        return f"move.{rel[1]}.{seg.funnel[rel[1]].moves[rel[3]].to}"
    return AFTER_SALE_SLOTS[rel]


def _stage_counts(sc: Scenario, enc: _Encoder, report: Periods, deals) -> StageCounts:
    """The :class:`StageCounts` record (v2 F1) without its outputs: what the kernels need to
    count entries and losses (``on`` 0 unless ``outputs.stage_entries`` or ``outputs.losses``).
    ``deals``: the open deals of the :class:`Pipeline` record, in its order."""
    G, S = len(sc.segments), len(sc.stages)
    passes, codes, pars = np.zeros((G, S), dtype=np.int64), np.zeros((G, S), dtype=np.int64), np.zeros((G, S, 4))
    for g, seg in enumerate(sc.segments.values()):
        for k, name in enumerate(sc.stages):
            passes[g, k] = seg.passes(name)
            codes[g, k], pars[g, k] = enc(seg.funnel[name].lost_days)
    stalled = np.array([sc.stalled.get(name, 0.0) for name in sc.stages], dtype=float)
    n = len(deals)
    lost_sf, stall = np.zeros(n), np.zeros(n)
    for i, d in enumerate(deals):  # P(stalled | open at age a, not converting) = sigma / (sigma + (1 - sigma) S_lost(a))
        age = (sc.start - d.entered_stage).days
        lost_sf[i] = sc.segments[d.segment].funnel[d.stage].lost_days.survival(age)
        sigma = stalled[sc.stages.index(d.stage)]
        open_lost = sigma + (1.0 - sigma) * lost_sf[i]
        stall[i] = sigma / open_lost if open_lost > 0 else 0.0
    empty = np.zeros((0, len(report.starts), G, S), dtype=np.int32)
    first = np.array([next((k for k in range(S) if passes[g, k]), 0) for g in range(G)], dtype=np.int64)
    below = np.array([_below(seg.funnel[sc.stages[first[g]]].lost_days, report.of_day.shape[0])
                      for g, seg in enumerate(sc.segments.values())], dtype=float).reshape(G, -1)
    return typed(StageCounts, on=int(sc.outputs.counts), cycle=int(sc.outputs.cycle_days), passes=passes,
                 lost_codes=codes, lost_pars=pars,
                 stalled=stalled, first=first, first_below=below, deal_lost_sf=lost_sf, deal_stalled=stall, period_of_day=report.of_day,
                 pool=np.zeros(1), entries=empty, losses=np.zeros_like(empty), leads=int(sc.counts_leads),
                 arrivals=np.zeros((0, len(report.starts), G), dtype=np.int32))


def _below(dist: Distribution, n_days: int) -> np.ndarray:
    """P(X < c) for c = 0, 1, .., n_days [days], shape (n_days + 1,): strictly below, so that a
    lead arriving on day d and given up after X days is given up before day d + c exactly when
    X < c, atoms included (``fixed``, ``empirical``)."""
    c = np.arange(n_days + 1, dtype=float)
    if dist.dist == "fixed":
        out = (dist.params["value"] < c).astype(float)
    elif dist.dist == "empirical":
        v = np.sort(np.asarray(dist.params["values"], dtype=float))
        out = np.searchsorted(v, c, side="left") / v.size
    else:  # no atoms: P(X < c) = P(X <= c) = 1 - P(X > c)
        out = 1.0 - np.asarray(dist.survival(c), dtype=float)
    return np.clip(out, 0.0, 1.0)


def _stage_counts_off(plan: Plan) -> StageCounts:
    """A :class:`StageCounts` record that the kernels skip (``on`` 0), of the plan's shapes."""
    G, S, N = len(plan.segment_names), len(plan.stage_names), plan.pipeline.segment.shape[0]
    empty = np.zeros((0, len(plan.periods), G, S), dtype=np.int32)
    return typed(StageCounts, on=0, cycle=0, passes=np.zeros((G, S), dtype=np.int64),
                 lost_codes=np.zeros((G, S), dtype=np.int64),
                 lost_pars=np.zeros((G, S, 4)), stalled=np.zeros(S), first=np.zeros(G, dtype=np.int64),
                 first_below=np.zeros((G, len(plan.periods.of_day) + 1)), deal_lost_sf=np.zeros(N), deal_stalled=np.zeros(N),
                 period_of_day=plan.periods.of_day, pool=plan.funnel.pool, entries=empty, losses=np.zeros_like(empty),
                 leads=0, arrivals=np.zeros((0, len(plan.periods), G), dtype=np.int32))


def _after_sale_quantities(seg) -> tuple[Distribution, ...]:
    """A segment's per-trial after-sale quantities in ``interface.AFTER_SALE``'s order (0 where
    they do not apply: their streams are drawn and never read)."""
    zero = Distribution.fixed(0.0)
    c = seg.customer
    sub = c.subscription if c else None
    rep = c.repeat if c else None
    cancel = c.cancel if c else None
    return (sub.renew if sub else zero, sub.expansion if sub else zero, rep.per_month if rep else zero,
            rep.dropout if rep else zero, cancel.probability if cancel else zero)


def _customers(sc: Scenario, enc: _Encoder, report: Periods, after_sale: bool) -> Customers:
    """The ``Customers`` record: every segment's after-sale parameters (kind NONE without a block)."""
    G = len(sc.segments)
    kind = np.full(G, NONE, dtype=np.int64)
    recognition, term = np.zeros(G, dtype=np.int64), np.ones(G, dtype=np.int64)
    renew_k, rate_cv, drop_k, refund = np.zeros(G), np.zeros(G), np.zeros(G), np.ones(G)
    value_codes, value_pars = np.zeros(G, dtype=np.int64), np.zeros((G, 4))
    cancel, cancel_codes, cancel_pars = np.zeros(G, dtype=np.bool_), np.zeros(G, dtype=np.int64), np.zeros((G, 4))
    for g, seg in enumerate(sc.segments.values()):
        c = seg.customer
        if c is None:
            continue
        kind[g] = SUBSCRIPTION if c.subscription else REPEAT_BUYER if c.repeat else ONE_OFF
        recognition[g] = c.recognition_months
        if c.subscription:
            term[g] = c.subscription.term_months
            renew_k[g] = c.subscription.concentration or 0.0
        if c.repeat:
            rate_cv[g] = c.repeat.rate_cv or 0.0
            drop_k[g] = c.repeat.dropout_concentration or 0.0
            value_codes[g], value_pars[g] = enc(c.repeat.value or seg.deal_value)
        if c.cancel:
            cancel[g] = True
            cancel_codes[g], cancel_pars[g] = enc(c.cancel.days)
            refund[g] = c.cancel.refund
    period_start = np.append(np.concatenate(([0], report.last_day[:-1] + 1)), sc.days).astype(np.int64)
    return typed(Customers, kind=kind, recognition_months=recognition, term_months=term,
                 renew_concentration=renew_k, rate_cv=rate_cv, dropout_concentration=drop_k,
                 repeat_value_codes=value_codes, repeat_value_pars=value_pars, cancel=cancel,
                 cancel_days_codes=cancel_codes, cancel_days_pars=cancel_pars, refund=refund,
                 regular_from=sc.regular_from, theta_after=THETA_CONVERT + len(sc.stages),
                 start_days=(sc.start - date(1970, 1, 1)).days, period_start=period_start,
                 period_of_day=report.of_day, pool=np.zeros(1))


def _stage_values(sc: Scenario, enc: _Encoder, order: np.ndarray, report: Periods) -> StageValues:
    """The ``StageValues`` record (v2 F11): each stage's value, where it has one."""
    G, S = len(sc.segments), len(sc.stages)
    valued, codes, pars = np.zeros((G, S), dtype=np.int64), np.zeros((G, S), dtype=np.int64), np.zeros((G, S, 4))
    for g, seg in enumerate(sc.segments.values()):
        for k, stage in enumerate(seg.funnel.values()):
            if stage.value is not None:
                valued[g, k] = 1
                codes[g, k], pars[g, k] = enc(stage.value)
    return typed(StageValues, valued=valued, codes=codes, pars=pars, lead_stage=order, period_of_day=report.of_day,
                 pool=np.zeros(1))  # the funnel's pool, once complete


def _installed(sc: Scenario, rep_index: dict) -> Installed:
    """The ``Installed`` record of the scenario's installed base (0 customers without one)."""
    rows = sc.customers
    seg_index = {name: g for g, name in enumerate(sc.segments)}

    def day(d):
        return (d - sc.start).days if d is not None else 0

    term_start, term_end, purchases = [], [], []
    for c in rows:
        sub = sc.segments[c.segment].customer.subscription
        if sub is not None:
            term_end.append(day(c.term_end))
            start = c.term_start or add_months(c.term_end, -sub.term_months)
            term_start.append(day(start))
            purchases.append(c.renewals)
        else:
            term_end.append(0)
            term_start.append(0)
            purchases.append(c.purchases)
    return typed(Installed, segment=np.array([seg_index[c.segment] for c in rows], dtype=np.int64),
                 term_start=np.array(term_start, dtype=np.int64), term_end=np.array(term_end, dtype=np.int64),
                 value=np.array([-1.0 if c.value is None else c.value for c in rows], dtype=float),
                 purchases=np.array(purchases, dtype=np.int64),
                 first_day=np.array([day(c.first_purchase) for c in rows], dtype=np.int64),
                 last_day=np.array([day(c.last_purchase) for c in rows], dtype=np.int64),
                 owner=np.array([rep_index.get(c.owner, -1) if c.owner else -1 for c in rows], dtype=np.int64))


def _closing_arrays(sc: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per day: the chance a deal due then slips, and its quarter's end window [days from start]."""
    from datetime import timedelta

    from forecaster.calendar import period_end

    assert sc.closing is not None
    D, slip, window = sc.days, sc.closing.slip, sc.closing.window_days
    prob, lo, hi = np.zeros(D), np.zeros(D), np.zeros(D)
    for d in range(D):
        day = sc.start + timedelta(days=d)
        end = (period_end(day, "quarter", sc.fiscal_start_month) - sc.start).days + 1.0  # quarter end, exclusive
        prob[d] = slip.get(month_of_quarter(day.month, sc.fiscal_start_month), 0.0)
        hi[d] = end
        lo[d] = end - window
    return prob, lo, hi


def _pending_window(sc: Scenario) -> tuple[float, float]:
    """Where a slipped win still waiting on ``start`` closes: uniformly in [lo, hi) days
    from start, the part after ``start`` of the window of the quarter holding the day before
    (hi = lo = 0 when ``start`` opens a quarter: every slip before it has landed)."""
    from datetime import timedelta

    from forecaster.calendar import period_end

    assert sc.closing is not None
    end = (period_end(sc.start - timedelta(days=1), "quarter", sc.fiscal_start_month) - sc.start).days + 1.0
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

    assert sc.closing is not None
    lo, end = _pending_window(sc)
    if end <= 0:
        return np.zeros(ages.shape)
    first = period_start(sc.start - timedelta(days=1), "quarter", sc.fiscal_start_month)
    back = (sc.start - first).days                        # due days d = start - back .. start - 1
    offsets = np.arange(-back, 0, dtype=float)            # d - start
    slip = np.array([sc.closing.slip.get(month_of_quarter((sc.start + timedelta(days=int(o))).month,
                                                          sc.fiscal_start_month), 0.0)
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
    out = {"segment": np.zeros(n, dtype=np.int64), "stage": np.zeros(n, dtype=np.int64),
           "age": np.zeros(n), "mode": np.zeros(n, dtype=np.int64), "odds": np.zeros(n),
           "sf": np.zeros(n), "pending": np.zeros(n), "amount": np.full(n, -1.0),
           "owner": np.full(n, -1, dtype=np.int64)}
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
                underflow[i] = ((WON_ONLY, 0.0) if d < -700 else (LOST_ONLY, np.inf)
                                if d > 700 else (ORDINARY, math.exp(d)))
    for i, deal in enumerate(sc.pipeline):
        if i in underflow:
            mode, odds = underflow[i]
        elif won_open[i] > 0 and s_lost[i] > 0:
            mode, odds = ORDINARY, s_lost[i] / won_open[i]
        elif won_open[i] > 0:
            mode, odds = WON_ONLY, 0.0
        elif s_lost[i] > 0:
            mode, odds = LOST_ONLY, np.inf
        else:
            mode, odds = NO_MASS, 1.0
        out["segment"][i] = seg_index[deal.segment]
        out["stage"][i] = stage_index[deal.stage]
        out["age"][i] = ages[i]
        out["mode"][i] = mode
        out["odds"][i] = odds
        out["sf"][i] = s_won[i]
        out["pending"][i] = pending[i] / won_open[i] if won_open[i] > 0 else 0.0
        if deal.amount is not None:
            out["amount"][i] = deal.amount
        if deal.owner is not None:
            out["owner"][i] = rep_index[deal.owner]
    return out


# --- v2 B: the scenario's moves as the records of forecaster.engine.moves ------------------------------

def move_quantities(sc) -> list[tuple[str, str]]:
    """Every (stage, to) pair some segment has a move for, in first appearance: each gets a
    slot of theta named ``move.<stage>.<to>`` (0 for the segments without that move)."""
    out: list[tuple[str, str]] = []
    for seg in sc.segments.values():
        for stage in sc.stages:
            for move in seg.funnel[stage].moves:
                if (stage, move.to) not in out:
                    out.append((stage, move.to))
    return out


def chain_record(sc, encode, first_slot: int) -> Chain:
    """The kernels' :class:`Chain` of ``sc``: the share of move (stage, to) is in slot
    ``first_slot + i`` of theta, i its index in :func:`move_quantities`; ``encode`` the
    plan's encoder (distribution -> (code, 4 parameters))."""
    pairs = {pair: first_slot + i for i, pair in enumerate(move_quantities(sc))}
    stage_index = {s: i for i, s in enumerate(sc.stages)}
    G, S = len(sc.segments), len(sc.stages)
    M = max([1] + [len(seg.funnel[s].moves) for seg in sc.segments.values() for s in sc.stages])
    has = np.zeros(G, dtype=np.int64)
    n_moves = np.zeros((G, S), dtype=np.int64)
    to = np.full((G, S, M), -1, dtype=np.int64)
    slot = np.zeros((G, S, M), dtype=np.int64)
    own = np.zeros((G, S, M), dtype=np.int64)
    codes = np.zeros((G, S, M), dtype=np.int64)
    pars = np.zeros((G, S, M, 4))
    for g, seg in enumerate(sc.segments.values()):
        has[g] = int(seg.has_moves)
        for s, stage in enumerate(sc.stages):
            entry = seg.funnel[stage]
            n_moves[g, s] = len(entry.moves)
            for j, move in enumerate(entry.moves):
                to[g, s, j] = -1 if move.to == WON else stage_index[move.to]
                slot[g, s, j] = pairs[(stage, move.to)]
                own[g, s, j] = int(move.days is not None)
                codes[g, s, j], pars[g, s, j] = encode(move.days if move.days is not None else entry.days)
    return Chain(has=has, n_moves=n_moves, to=to, slot=slot, own_days=own, days_codes=codes, days_pars=pars)


def chain_pipeline(sc, deals, rep_index: dict, n_max: int) -> ChainPipeline:
    """The open ``deals`` of segments with moves, with each exit's survival at the deal's age,
    scaled so the largest is 1 (a deal far in every law's tail keeps its exits' odds:
    log-survivals where the survivals underflow).

    With the extension ``stalled`` (share sigma of the stage), a share sigma of the leads that
    take the lost exit of a visit never leave it (v2 B with ``stalled``: the moves' shares keep
    B.2's meaning, and a stalled lead is never won, as a lost one): that exit is open at age a
    with sigma + (1 - sigma) S_lost(a), which its column of ``rel`` weighs; ``sf`` keeps
    S_lost(a), the law a deal that is given up draws its time from."""
    seg_index = {n: i for i, n in enumerate(sc.segments)}
    stage_index = {n: i for i, n in enumerate(sc.stages)}
    n = len(deals)
    sf, rel = np.zeros((n, n_max + 2)), np.zeros((n, n_max + 2))
    ages = np.array([(sc.start - d.entered_stage).days for d in deals], dtype=float)
    for i, d in enumerate(deals):
        entry = sc.segments[d.segment].funnel[d.stage]
        laws = [entry.days] + [m.days if m.days is not None else entry.days for m in entry.moves]
        columns = list(range(1 + len(entry.moves))) + [n_max + 1]
        laws.append(entry.lost_days)
        logs = np.full(len(laws), -np.inf)
        stalled = sc.stalled.get(d.stage, 0.0)
        for k, law in enumerate(laws):
            s = float(law.survival(ages[i]))
            sf[i, columns[k]] = s
            if k == len(laws) - 1 and stalled > 0:  # the lost exit: its stalled share is open at every age
                s = stalled + (1.0 - stalled) * s
            if s > 0:
                logs[k] = math.log(s)
            elif law.dist in _UNBOUNDED:
                x = float(_log_survival(law, np.array([ages[i]]))[0])
                logs[k] = x if math.isfinite(x) else -np.inf
        top = logs.max()
        if math.isfinite(top):
            for k, col in enumerate(columns):
                rel[i, col] = math.exp(logs[k] - top) if math.isfinite(logs[k]) else 0.0
    return ChainPipeline(
        segment=np.array([seg_index[d.segment] for d in deals], dtype=np.int64),
        stage=np.array([stage_index[d.stage] for d in deals], dtype=np.int64), age=ages, sf=sf, rel=rel,
        amount=np.array([-1.0 if d.amount is None else d.amount for d in deals]),
        owner=np.array([rep_index.get(d.owner, -1) if d.owner else -1 for d in deals], dtype=np.int64))
