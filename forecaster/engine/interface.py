"""What goes into the kernels, named and typed: one numba type signature per kernel.

The kernels (:mod:`forecaster.engine.kernels`) take a few records instead of dozens of
positional arrays: :class:`Funnel` (every segment's rates, stages and values),
:class:`Pipeline` (the open deals), :class:`Closing`, :class:`Shocks` and :class:`Capacity`
(the format's extensions), :class:`Outputs` (where won deals are booked) and
:class:`Streams` (the random streams of one kernel call). Each is a ``NamedTuple`` whose
fields are declared with their dtype and number of dimensions; :func:`typed` builds one,
coercing every array to that dtype, C order, and every scalar to ``float``/``int``.

A part of the scenario that is absent is an empty array of the same dtype and ndim (no
pipeline: 0 deals; no ``closing``: 0 days of slip chances), never ``None``; the number of
stages, segments, reps and distribution families is in the arrays' shapes and values,
never in their types. So numba compiles each kernel once, for every scenario: the types
numba sees do not depend on the funnel's shape or on which extensions a scenario uses.

This module also holds what the Python side and the kernels must agree on: the layout of
``theta`` (the per-trial draws), the codes of distribution families and of pipeline deal
modes, and the table of random streams (:data:`STREAMS`). It imports numpy only, so the
results layer reads the layout without loading numba. The kernels compile these constants
in: the numba cache follows this file (see :mod:`forecaster.engine._numba`).
"""
from __future__ import annotations

import functools
from typing import Annotated, NamedTuple, get_type_hints

import numpy as np

# --- distribution families (see the table in forecaster.engine.kernels) ---------------------
FIXED, UNIFORM, TRIANGULAR, PERT, NORMAL, LOGNORMAL, GAMMA, EXPONENTIAL, WEIBULL, BETA, EMPIRICAL = range(11)

# --- pipeline deal modes (how the age conditions the conversion out of its stage) -----------
ORDINARY = 0   # S(a) > 0 and S_lost(a) > 0: q = p / (p + (1 - p) * odds)
NO_MASS = 1    # S(a) = S_lost(a) = 0: leaves at time 0, converts with p
LOST_ONLY = 2  # S(a) = 0 < S_lost(a): cannot still be converting, so it is lost (unless p = 1)
WON_ONLY = 3   # S_lost(a) = 0 < S(a): cannot still be losing, so it converts (unless p = 0)

# --- theta: a segment's per-trial draws, shape (..., theta_size(S)) -------------------------
THETA_LEADS = 0    # lead rate in its unit, or cost per lead for bought leads
THETA_GROWTH = 1   # growth per calendar month
THETA_CONVERT = 2  # stage s converts with theta[THETA_CONVERT + s]


AFTER_SALE = ("renew", "expansion", "repeat.per_month", "dropout", "cancel.probability")
"""Per-trial after-sale quantities (v2 A.4), slots THETA_CONVERT + S + i of theta in a
scenario with a ``customer`` block (absent otherwise, so v1 files keep their layout)."""
RENEW, EXPANSION, PER_MONTH, DROPOUT, CANCEL_PROBABILITY = range(5)


RESPONSE = ("response.elasticity", "response.half_saturation", "response.slope")
COST_PER_LEAD = "cost.per_lead"
"""v2 E.2: a segment's cost of an arriving lead, theta's last slot in a scenario where a segment
has a ``cost`` (absent otherwise)."""
"""v2 C: a bought segment's response curve, the last slots of theta in a scenario where a
segment has ``response`` (absent otherwise); RESPONSE_ELASTICITY .. RESPONSE_SLOPE after the
first."""
RESPONSE_ELASTICITY, RESPONSE_HALF_SATURATION, RESPONSE_SLOPE = range(3)
NO_RESPONSE, POWER, HILL = range(3)
"""v2 C: ``Funnel.response_curve``'s codes."""


def theta_size(n_stages: int, after_sale: bool = False, n_moves: int = 0, response: bool = False,
               cost: bool = False) -> int:
    """Length of theta for a funnel of ``n_stages`` stages (and the after-sale slots, the
    shares of ``n_moves`` moves, v2 B, the response's, v2 C, and the cost per lead, v2 E.2)."""
    return (THETA_CONVERT + n_stages + (len(AFTER_SALE) if after_sale else 0) + n_moves
            + (len(RESPONSE) if response else 0) + (1 if cost else 0))


def quantity_names(stages, after_sale: bool = False, moves=(), response: bool = False,
                   cost: bool = False) -> tuple[str, ...]:
    """The name of each slot of theta (also the name of the stream that draws it); ``moves``:
    the (stage, to) pairs with a share slot, ``move.<stage>.<to>`` (v2 B); then, with
    ``response``, the response curve's (v2 C), and with ``cost`` the cost per lead (v2 E.2), last."""
    return ("leads", "growth_per_month", *(f"convert.{s}" for s in stages), *(AFTER_SALE if after_sale else ()),
            *(f"move.{s}.{to}" for s, to in moves), *(RESPONSE if response else ()),
            *((COST_PER_LEAD,) if cost else ()))


# --- random streams ---------------------------------------------------------------------------
# A kernel draws with N_ROLES generators, ``Streams.gens[role]``; a role is one of them and
# the streams the kernel draws with it. Streams a kernel draws from in turn (a stage's times,
# then the next stage's) share a role, reseeded for each; streams drawn interleaved have
# roles of their own. Roles need only differ within one kernel, so kernels reuse the numbers
# (key_set refuses a table that gives two rows of one kernel the same role).
COUNT, MIXING, ARRIVAL, VALUE, REP, SLIP, DAYS, STAGE_VALUE = range(8)  # simulate_new_leads
CONVERT = 0                                                   # simulate_pipeline (and VALUE .. DAYS)
PIPELINE_STAGE_VALUE = 1                                      # simulate_pipeline
LOST = 0                                                      # simulate_lost_stage_values (and MIXING)
QUANTITY = 0                                                  # draw_parameters
SHOCK_LEADS, SHOCK_CONVERT, DRIFT_LEADS, DRIFT_CONVERT = range(4)  # apply_shocks
CAPACITY = 0                                                  # apply_capacity
CUSTOMER, RENEWAL, REPEAT, REPEAT_VALUE, CANCEL, CLAWBACK = range(6)  # simulate_customers
STAGE_COUNTS, COUNTS_MIXING, COUNTS_DRIFT_LEADS, COUNTS_DRIFT_CONVERT = range(4)  # v2 F1: simulate_lost_leads
# v2 F1: the count streams given to simulate_new_leads (drawn at the end of a trial, after every
# draw of the trial's own, which the next trial reseeds) and to simulate_pipeline (drawn between
# its deals' draws: a role the pipeline kernel does not use)
PIPELINE_COUNTS = 2
# v2 F2: simulate_events (forecaster.engine.events)
EV_WON, EV_COUNT, EV_DAYS, EV_VALUE, EV_REP, EV_SLIP, EV_PATH, EV_LOST, EV_DRIFT_CONVERT = range(9)
N_ROLES = 10  # the most a kernel draws with: simulate_new_leads_moves (forecaster.engine.moves)

STREAMS: dict[str, tuple[tuple[str, int], ...]] = {
    # kernel -> its streams as (name, role). In a name, {segment} is the segment's name,
    # and {quantity}, {stage} and {lead_stage} make one stream per slot of theta, per stage,
    # and per stage in the order new leads draw their times (longest mean first). A name is
    # the stream's identity: its key hashes it (forecaster.engine._streams.stream_key).
    "draw_parameters": (("segment/{segment}/{quantity}", QUANTITY),),
    "apply_shocks": (("shocks/leads", SHOCK_LEADS),
                     ("shocks/convert.{stage}", SHOCK_CONVERT),
                     ("shocks/drift/leads", DRIFT_LEADS),
                     ("shocks/drift/convert.{stage}", DRIFT_CONVERT)),
    "simulate_new_leads": (("segment/{segment}/arrival-count", COUNT),
                           ("segment/{segment}/arrival-mixing", MIXING),
                           ("segment/{segment}/arrival-day", ARRIVAL),
                           ("segment/{segment}/deal-value", VALUE),
                           ("segment/{segment}/rep", REP),
                           ("segment/{segment}/closing", SLIP),
                           ("segment/{segment}/days/{lead_stage}", DAYS),
                           ("segment/{segment}/stage-value", STAGE_VALUE)),
    "simulate_pipeline": (("pipeline/convert", CONVERT),
                          ("pipeline/days", DAYS),
                          ("pipeline/deal-value", VALUE),
                          ("pipeline/rep", REP),
                          ("pipeline/closing", SLIP),
                          ("pipeline/stage-value", PIPELINE_STAGE_VALUE)),
    # v2 F11: the leads lost after converting out of a stage with a value, drawn apart from the
    # won ones; they share the day's gamma multiplier (the new leads' mixing stream) with them
    "simulate_lost_stage_values": (("segment/{segment}/stage-value-lost", LOST),
                                   ("segment/{segment}/arrival-mixing", MIXING)),
    "apply_capacity": (("capacity", CAPACITY),),
    # v2 F1: the new leads that are lost (Poisson classes of their own, sharing the day's gamma
    # multiplier through the new leads' mixing stream and the drift's walks through its streams),
    # the stage times the won leads' kernel did not draw, and the open deals' losses
    "simulate_lost_leads": (("segment/{segment}/stage-counts", STAGE_COUNTS),
                            ("segment/{segment}/arrival-mixing", COUNTS_MIXING),
                            ("shocks/drift/leads", COUNTS_DRIFT_LEADS),
                            ("shocks/drift/convert.{stage}", COUNTS_DRIFT_CONVERT)),
    # v2 E.3: the new leads that are not won, by the same kernel (its STAGE_COUNTS role keyed apart)
    "simulate_unwon_leads": (("segment/{segment}/unwon", STAGE_COUNTS),
                             ("segment/{segment}/arrival-mixing", COUNTS_MIXING),
                             ("shocks/drift/leads", COUNTS_DRIFT_LEADS),
                             ("shocks/drift/convert.{stage}", COUNTS_DRIFT_CONVERT)),
    "entries_of_won": (("segment/{segment}/stage-counts-won", STAGE_COUNTS),),
    "pipeline_loss": (("pipeline/stage-counts", PIPELINE_COUNTS),),
    # v2 B: a segment with moves, its new leads and the open deals of such segments
    # (roles: forecaster.engine.moves; the pipeline's convert uniforms take COUNT's role)
    "simulate_new_leads_moves": (("segment/{segment}/arrival-count", 0),
                                 ("segment/{segment}/arrival-mixing", 1),
                                 ("segment/{segment}/arrival-day", 2),
                                 ("segment/{segment}/deal-value", 3),
                                 ("segment/{segment}/rep", 4),
                                 ("segment/{segment}/closing", 5),
                                 ("segment/{segment}/days/{stage}", 6),
                                 ("segment/{segment}/path", 7),
                                 ("segment/{segment}/days-move", 8),
                                 ("segment/{segment}/stage-value", 9)),
    "simulate_pipeline_moves": (("pipeline/moves/convert", 0),
                                ("pipeline/moves/days", 6),
                                ("pipeline/moves/deal-value", 3),
                                ("pipeline/moves/rep", 4),
                                ("pipeline/moves/closing", 5),
                                ("pipeline/moves/path", 7),
                                ("pipeline/moves/stage-counts", 1),
                                ("pipeline/moves/stage-value", 2)),
    # v2 F11 with moves: the new leads that are lost after a forward exit from a valued stage
    "simulate_lost_stage_values_moves": (("segment/{segment}/stage-value-lost-moves", 0),
                                         ("segment/{segment}/arrival-mixing", 1)),
    # v2 B.4: the conversion drift's walks for segments with moves, drawn again from apply_shocks'
    # streams (the same keys: the same walks)
    "drift_walks": (("shocks/drift/convert.{stage}", 0),),
    # v2 F1 with moves: the new leads that are not won (they share the won ones' mixing stream)
    "simulate_lost_leads_moves": (("segment/{segment}/stage-counts-moves", 0),
                                  ("segment/{segment}/arrival-mixing", 1),
                                  ("segment/{segment}/stage-counts-arrival", 2)),
    # v2 F2: a segment's dated lead events: the won counts (binomials), each event's count when
    # it is a distribution, the won leads' stage times, values, reps, slips and paths (with
    # moves), the leads that are not won (with F1's counts or F11's values), and the drift's
    # walks of the conversions (redrawn from apply_shocks' streams: the same walks)
    # ({event}: the event's index in the segment's list, a set of streams per event)
    "simulate_events": (("segment/{segment}/events[{event}]/won", EV_WON),
                        ("segment/{segment}/events[{event}]/count", EV_COUNT),
                        ("segment/{segment}/events[{event}]/days", EV_DAYS),
                        ("segment/{segment}/events[{event}]/deal-value", EV_VALUE),
                        ("segment/{segment}/events[{event}]/rep", EV_REP),
                        ("segment/{segment}/events[{event}]/closing", EV_SLIP),
                        ("segment/{segment}/events[{event}]/path", EV_PATH),
                        ("segment/{segment}/events[{event}]/lost", EV_LOST),
                        ("shocks/drift/convert.{stage}", EV_DRIFT_CONVERT)),
    # after the sale (v2 A.4), one set per source of won deals ({source}: "segment/<name>" for
    # a segment's new leads, "segment/<name>/events" for its events, "pipeline"), so that each
    # source's customers draw from streams of their own
    "simulate_customers": (("{source}/customer", CUSTOMER),
                           ("{source}/renewal", RENEWAL),
                           ("{source}/repeat", REPEAT),
                           ("{source}/repeat-value", REPEAT_VALUE),
                           ("{source}/cancel", CANCEL),
                           # v2 D.2: renewal decisions after end, within a clawback's window only
                           ("{source}/clawback-renewal", CLAWBACK)),
}

# --- field types ------------------------------------------------------------------------------
WRITTEN = "written"
"""Marks an output array: :func:`typed` refuses to copy it (the kernel would write the copy)."""

B1 = Annotated[np.ndarray, np.bool_, 1]
I64_1 = Annotated[np.ndarray, np.int64, 1]
I64_2 = Annotated[np.ndarray, np.int64, 2]
U64_1 = Annotated[np.ndarray, np.uint64, 1]
F64_1 = Annotated[np.ndarray, np.float64, 1]
F64_2 = Annotated[np.ndarray, np.float64, 2]
F64_3 = Annotated[np.ndarray, np.float64, 3]
F64_3_OUT = Annotated[np.ndarray, np.float64, 3, WRITTEN]
I32_3_OUT = Annotated[np.ndarray, np.int32, 3, WRITTEN]
I32_4_OUT = Annotated[np.ndarray, np.int32, 4, WRITTEN]


class Funnel(NamedTuple):
    """Every segment's leads and funnel. G segments, S stages, D days, K = theta_size(S)."""

    param_codes: I64_2      # (G, K) family of each per-trial quantity, in theta's layout
    param_pars: F64_3       # (G, K, 4) its parameters
    rate_is_cost: B1        # (G,) theta[THETA_LEADS] is a cost per lead (bought leads), not a rate
    day_mean: F64_2         # (G, D) f_d: the day's share of the rate's unit times seasonality (x budget)
    elapsed_months: I64_1   # (D,) k_d: whole calendar months since start's month
    dispersion: F64_1       # (G,) variance of the daily gamma multiplier of the lead rate (0: none)
    days_codes: I64_2       # (G, S) each stage's days, in stage order (the pipeline's view)
    days_pars: F64_3        # (G, S, 4)
    lead_days_codes: I64_2  # (G, S) the same, longest mean first (the order new leads draw them in)
    lead_days_pars: F64_3   # (G, S, 4)
    value_codes: I64_1      # (G,) deal_value
    value_pars: F64_2       # (G, 4)
    reps: I64_2             # (G, max(1, most reps of a segment)) rep indices covering each segment
    n_reps: I64_1           # (G,) how many of reps[g] count (0 without a team)
    pool: F64_1             # the empirical distributions' values (at least one slot)
    response_curve: I64_1   # (G,) v2 C: NO_RESPONSE, POWER or HILL
    response_slot: I64_1    # (G,) theta's slot of response.elasticity (the curve's draws follow), or -1
    log_budget_ratio: F64_2  # (G, M) log(B_k / B0): month k's budget over the reference (0 without response,
                             # -inf for a budget of 0)
    log_reference_budget: F64_1  # (G,) log B0 [log currency per month] (0 without response)


class Pipeline(NamedTuple):
    """The open deals at ``start``, N of them (0 without a pipeline)."""

    segment: I64_1   # (N,)
    stage: I64_1     # (N,)
    age: F64_1       # (N,) whole days in its stage at start [days]
    mode: I64_1      # (N,) ORDINARY, NO_MASS, LOST_ONLY or WON_ONLY
    odds: F64_1      # (N,) S_lost(a) / S(a) for ORDINARY deals
    sf: F64_1        # (N,) S(a) = P(days > a) in its stage
    pending: F64_1   # (N,) with closing: P(a slipped win still waiting | won, open), else 0
    amount: F64_1    # (N,) its value, or -1 to draw it [currency]
    owner: I64_1     # (N,) rep index, or -1 to assign one


class Closing(NamedTuple):
    """Quarter-end slips (``closing``): per day a deal is due, or 0 days without them."""

    slip_prob: F64_1   # (D,) or (0,): the chance a deal due that day slips
    slip_lo: F64_1     # (D,) or (0,): start of the window it then lands in [days from start]
    slip_hi: F64_1     # (D,) or (0,): end of that window (the quarter's end) [days from start]
    pending_lo: float  # a slipped win still waiting at start closes uniformly in [lo, hi) [days]
    pending_hi: float


class Shocks(NamedTuple):
    """Shocks shared by every segment (``shocks``); all 0 without them."""

    leads: float           # sigma of the lead rates' log-normal shock
    convert: F64_1         # (S,) sigma of each stage's log-odds shock
    drift_leads: float     # sd per month of the lead rates' random walk (log)
    drift_convert: F64_1   # (S,) sd per month of each stage's walk (log-odds)


class Capacity(NamedTuple):
    """The team's capacity (``capacity``), or 0 days without one."""

    of_day: F64_1        # (D,) or (0,): the capacity of the day's month, pro rata [deals]
    month_of_day: I64_1  # (D,) or (0,): the day's calendar month, counted from start's
    cv: float            # coefficient of variation of each month's capacity


class Outputs(NamedTuple):
    """Where the kernels book won deals (added to): by day and period."""

    period_of_day: I64_1        # (D,) reporting period of each day
    quota_period_of_day: I64_1  # (D,) commission period of each day
    revenue: F64_3_OUT          # (trials, periods, G) [currency]
    won: I32_3_OUT              # (trials, periods, G) [deals]
    bookings: F64_3_OUT         # (trials, quota periods, reps) [currency]


class Events(NamedTuple):
    """Dated lead events (v2 F2), E of them, grouped by segment in segment order (each
    segment's in the order of its ``leads.events``); D days in the horizon."""

    first: I64_1        # (G + 1,) segment g's events are first[g] .. first[g + 1] - 1
    day: I64_1          # (E,) the event's date [days from start]
    stage: I64_1        # (E,) the stage its leads enter (index in the scenario's stages)
    count_codes: I64_1  # (E,) the count's law (FIXED for a whole number)
    count_pars: F64_2   # (E, 4)
    cost: F64_1         # (E,) [currency]; not read by the kernels (spend, v2 E.3)


class Customers(NamedTuple):
    """What won deals become after the sale (v2 A), per segment: G segments (kind NONE for a
    segment without a ``customer`` block), D days in the horizon, P reporting periods."""

    kind: I64_1               # (G,) NONE, ONE_OFF, SUBSCRIPTION or REPEAT_BUYER
    recognition_months: I64_1  # (G,) a first deal is recognised over this many months (0: on its day)
    term_months: I64_1        # (G,) a subscription's term
    renew_concentration: F64_1  # (G,) κ of each customer's renewal probability (0: none)
    rate_cv: F64_1            # (G,) c of each repeat buyer's rate (0: none)
    dropout_concentration: F64_1  # (G,) κ_d of each repeat buyer's dropout (0: none)
    repeat_value_codes: I64_1  # (G,) each repeat purchase's value (the deal_value's without repeat.value)
    repeat_value_pars: F64_2   # (G, 4)
    cancel: B1                # (G,) whether won deals may be cancelled
    cancel_days_codes: I64_1  # (G,) days from the win to a cancellation
    cancel_days_pars: F64_2   # (G, 4)
    refund: F64_1             # (G,) share of a cancelled deal's value refunded
    regular_from: int         # purchase count from which a customer is regular
    theta_after: int          # slot of theta of the first after-sale quantity (THETA_CONVERT + S)
    start_days: int           # start as days since 0001-01-01 (proleptic Gregorian ordinal - 1)
    period_start: I64_1       # (P + 1,) first day of each reporting period, then D
    period_of_day: I64_1      # (D,) reporting period of each day
    pool: F64_1               # the empirical values (the funnel's pool)


NONE, ONE_OFF, SUBSCRIPTION, REPEAT_BUYER = range(4)


class CustomerOutputs(NamedTuple):
    """Where :func:`forecaster.engine.kernels.simulate_customers` books (added to): flows by
    period, stocks at each period's end; (trials, periods, G) unless said."""

    recognised: F64_3_OUT     # recognised revenue of customers' deals [currency]
    renewal: F64_3_OUT        # renewal bookings [currency]
    repeat: F64_3_OUT         # repeat revenue [currency]
    cancellations: F64_3_OUT  # refund x value of cancellations that take effect [currency]
    new: F64_3_OUT            # customers created [customers]
    churned: F64_3_OUT        # customers that stop being active [customers]
    repeat_customers: F64_3_OUT   # customers reaching their 2nd purchase
    regular_customers: F64_3_OUT  # customers reaching their regular_from-th purchase
    active: F64_3_OUT         # customers active at the end of the period's last day (a stock)
    mrr: F64_3_OUT            # sum over active subscribers of term value / term_months (a stock) [currency]
    rep_bookings: F64_3_OUT   # (trials, quota periods, reps) renewals and repeat purchases by rep [currency]
    quota_period_of_day: I64_1  # (D,) commission period of each day


class StageValues(NamedTuple):
    """Values booked when a lead first converts out of a stage (v2 F11), G segments, S stages."""

    valued: I64_2          # (G, S) 1 where the stage has a value (never the last stage)
    codes: I64_2           # (G, S) the value's family
    pars: F64_3            # (G, S, 4)
    lead_stage: I64_2      # (G, S) the stage of each column of funnel.lead_days_* (longest mean first)
    period_of_day: I64_1   # (D,) reporting period of each day
    pool: F64_1            # the empirical values (the funnel's pool)


class StageCounts(NamedTuple):
    """Entries into and losses at each stage (v2 F1), G segments, S stages, D days, N open deals
    (those of :class:`Pipeline`). Built per block of trials (its outputs are the block's rows).

    A kernel that counts writes ``entries[t, period_of_day[day], g, s] += 1`` when a lead or
    deal enters stage s (index in the scenario's ``stages``) on ``day`` < D, and ``losses`` the
    same on the day it is given up; never at a stage the segment does not pass (``passes``).
    """

    on: int                 # 1: count (outputs.stage_entries or outputs.losses), 0: the kernels skip it
    cycle: int              # 1: return each won deal's time from arrival to win (outputs.cycle_days)
    passes: I64_2           # (G, S) 1 where the segment passes the stage (v2 F4)
    lost_codes: I64_2       # (G, S) each stage's days_lost (its days where absent), stage order
    lost_pars: F64_3        # (G, S, 4)
    stalled: F64_1          # (S,) share of the leads not converting out of a stage that never leave it
    first: I64_1            # (G,) the first stage each segment passes, where its new leads enter
    first_below: F64_2      # (G, D + 1) P(days_lost < c) at that stage, c = 0 .. D days (exact at atoms)
    deal_lost_sf: F64_1     # (N,) S_lost(a): P(days_lost > age) of each open deal in its stage
    deal_stalled: F64_1     # (N,) P(stalled | open at its age and not converting out of its stage)
    period_of_day: I64_1    # (D,) reporting period of each day
    pool: F64_1             # the empirical values (the funnel's pool)
    entries: I32_4_OUT      # (trials, periods, G, S) [leads]
    losses: I32_4_OUT       # (trials, periods, G, S) [leads]
    leads: int              # 1: count the new leads arriving into ``arrivals`` (v2 E.3), 0: skip it
    arrivals: I32_3_OUT     # (trials, periods, G) [leads] on their arrival day (won ones by the lead kernels)


class Installed(NamedTuple):
    """The installed base at ``start`` (v2 A.5), M customers (0 without a ``customers`` file).
    Days are counted from ``start`` (negative before it)."""

    segment: I64_1      # (M,)
    term_start: I64_1   # (M,) a subscriber's current term: first day
    term_end: I64_1     # (M,) the day its next renewal is decided (>= 0)
    value: F64_1        # (M,) the current term's value, or -1 to draw it [currency]
    purchases: I64_1    # (M,) a subscriber's renewals survived, a repeat buyer's repeat purchases x
    first_day: I64_1    # (M,) a repeat buyer's first purchase
    last_day: I64_1     # (M,) its last purchase
    owner: I64_1        # (M,) rep index, or -1 to pick one


class DealLog(NamedTuple):
    """Won deals of one kernel call that create customers, in the order they were booked."""

    trial: I64_1    # (n,) trial index within the block
    day: I64_1      # (n,) day won [days from start]
    segment: I64_1  # (n,)
    value: F64_1    # (n,) [currency]
    rep: I64_1      # (n,) rep index, or -1


class Streams(NamedTuple):
    """One kernel call's random streams (see :mod:`forecaster.engine.seeding`)."""

    gens: tuple        # N_ROLES numpy Generators (PCG64), the calling thread's: gens[role]
    addresses: I64_1   # (N_ROLES,) their state addresses
    keys: U64_1        # (n,) the call's streams' keys, role by role
    starts: I64_1      # (N_ROLES,) index in keys of each role's first stream (0 when none)
    counts: I64_1      # (N_ROLES,) how many streams of each role the call has


@functools.cache
def _fields(cls) -> tuple:
    out = []
    for name, hint in get_type_hints(cls, include_extras=True).items():
        meta = getattr(hint, "__metadata__", None)
        out.append((name, meta[0] if meta else hint, meta[1] if meta else None, WRITTEN in (meta or ())))
    return tuple(out)


def typed(cls, **values):
    """A record ``cls(**values)`` with every field of its declared type.

    Arrays become C-contiguous, aligned and writable, of the field's dtype (copied only if
    they are not); a wrong number of dimensions raises ``TypeError``, and so does an output
    array that would have to be copied. Scalars become ``float``, ``int`` or as declared.
    """
    out = {}
    for name, kind, ndim, written in _fields(cls):
        value = values[name]
        if ndim is None:
            out[name] = kind(value) if kind in (float, int) else value
            continue
        array = np.require(value, dtype=kind, requirements=("C", "A", "W"))
        if array.ndim != ndim:
            raise TypeError(f"{cls.__name__}.{name}: expected {ndim} dimension(s); got shape {array.shape}")
        if written and array is not value:
            raise TypeError(f"{cls.__name__}.{name}: an output array must be a C-contiguous "
                            f"{np.dtype(kind).name} array (the kernels write into it); got "
                            f"{getattr(value, 'dtype', type(value).__name__)}")
        out[name] = array
    return cls(**out)
