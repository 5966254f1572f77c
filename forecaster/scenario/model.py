"""The typed, validated scenario: what the rest of forecaster works from.

Instances are built only by :mod:`forecaster.scenario.loading` (from YAML or a dict) through the
format table in :mod:`forecaster.scenario.schema`; nothing downstream validates again. Field names
are the scenario file's keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from forecaster.scenario.distributions import Distribution

LEAD_SOURCES = ("per_day", "per_week", "per_month", "budget_per_month")
RESPONSE_CURVES = ("power", "hill")
"""v2 C: the shapes of bought leads' response to the monthly budget."""


@dataclass(frozen=True)
class Response:
    """How a bought segment's leads respond to its monthly budget B (v2 C): mean leads in a
    calendar month L(B) = (B0 / c) g(B) / g(B0), with B0 = ``reference_budget`` [currency per
    month], c the segment's ``cost_per_lead`` and g(B) = B^elasticity (``curve`` power) or
    B^slope / (half_saturation^slope + B^slope) (``curve`` hill; ``half_saturation`` [currency per
    month]). ``elasticity``, ``half_saturation`` and ``slope`` are drawn once per trial; the
    other curve's keys are None."""

    reference_budget: float
    curve: str
    elasticity: Distribution | None = None
    half_saturation: Distribution | None = None
    slope: Distribution | None = None

    def quantities(self) -> tuple[Distribution, Distribution, Distribution]:
        """(elasticity, half_saturation, slope), the curve's own and fixed 0 for the other's
        (the engine's slots ``response.*``)."""
        zero = Distribution.fixed(0.0)
        if self.curve == "power":
            return self.elasticity or zero, zero, zero
        return zero, self.half_saturation or zero, self.slope or Distribution.fixed(1.0)


@dataclass(frozen=True)
class LeadEvent:
    """A dated lead event (v2 F2): at the beginning of ``date``, ``count`` leads (a whole
    number, or a distribution drawn per trial and rounded to the nearest whole number, halves
    up) enter ``stage`` (None: the segment's first stage) and go on as new leads of the
    segment; ``cost`` [currency] adds to the segment's spend on ``date`` (E.3)."""

    date: date
    count: Distribution
    stage: str | None = None
    cost: float = 0.0


@dataclass(frozen=True)
class Leads:
    """Arrivals at a segment's first stage.

    Exactly one of ``per_day``, ``per_week``, ``per_month`` [leads per period] or
    ``budget_per_month`` [currency] (with ``cost_per_lead`` [currency / lead]) is set.
    ``dispersion`` is the negative-binomial d of daily counts (var = m + d m^2);
    ``seasonality`` maps calendar month (1-12) to a rate multiplier; ``growth_per_month``
    compounds from the month of ``start``. v2 C: ``budget_by_month`` maps calendar months to
    their budget (else ``budget_per_month``), and ``response`` makes leads saturate with it.
    ``events`` (v2 F2): dated lead events, a tuple of :class:`LeadEvent` that none of the
    above touches.
    """

    per_day: Distribution | None = None
    per_week: Distribution | None = None
    per_month: Distribution | None = None
    budget_per_month: float | None = None
    cost_per_lead: Distribution | None = None
    dispersion: float = 0.0
    seasonality: dict = field(default_factory=dict, hash=False)
    growth_per_month: Distribution | None = None
    response: Response | None = None  # v2 C: with budget_per_month only
    budget_by_month: dict = field(default_factory=dict, hash=False)  # v2 C: calendar month -> budget [currency]
    events: tuple = field(default=(), hash=False)

    def budget(self, month: int) -> float:
        """The budget of calendar month ``month`` (1-12) [currency]: ``budget_by_month``'s where
        given, else ``budget_per_month`` (bought leads only)."""
        return float(self.budget_by_month.get(month, self.budget_per_month or 0.0))

    @property
    def source(self) -> str:
        """Which of per_day / per_week / per_month / budget_per_month is given."""
        return next(k for k in LEAD_SOURCES if getattr(self, k) is not None)


@dataclass(frozen=True)
class Move:
    """A move out of a stage other than forward (v2 B): of the leads leaving a visit without
    converting, the share ``share`` (a probability, per trial) goes to stage ``to`` (an
    earlier one: back; a later one than the next: a skip) or, with ``to == "won"``, is won;
    ``days`` the time in the stage before the move (per visit; None: the stage's ``days``)."""

    to: str
    share: Distribution
    days: Distribution | None = None


WON = "won"
"""A move's ``to`` that wins the deal (v2 B.1)."""


@dataclass(frozen=True)
class Stage:
    """One funnel stage of a segment: probability to convert, days spent [days].

    ``value`` (v2 F11, not on the last stage): an amount booked in ``stage_revenue`` when a
    lead first converts out of the stage (per deal) [currency]. ``moves`` (v2 B): where the
    leads that leave a visit without converting go, besides lost (a tuple of :class:`Move`).
    """

    convert: Distribution
    days: Distribution
    days_lost: Distribution | None = None
    value: Distribution | None = None
    moves: tuple = ()

    @property
    def lost_days(self) -> Distribution:
        """Time a lost deal spends in the stage: ``days_lost``, or ``days`` when absent."""
        return self.days_lost if self.days_lost is not None else self.days


@dataclass(frozen=True)
class Subscription:
    """A contract renewed at each term's end (v2 A.2).

    ``term_months`` [calendar months]; ``renew`` the renewal probability (per trial);
    ``concentration`` κ: each customer's own renewal probability ~ Beta(renew κ, (1 - renew) κ)
    (None: every customer renews with ``renew``); ``expansion`` the value's growth at each
    renewal (per trial).
    """

    renew: Distribution
    term_months: int = 1
    concentration: float | None = None
    expansion: Distribution = field(default_factory=lambda: Distribution.fixed(0.0))


@dataclass(frozen=True)
class Repeat:
    """Further purchases while active (v2 A.2; BG/NBD with both heterogeneities).

    ``per_month`` purchases per customer month (30.4375 days) while active (per trial);
    ``rate_cv`` c: each customer's rate is per_month x Gamma(1/c², scale c²) (None: no
    heterogeneity); ``dropout`` the chance of becoming inactive after each repeat purchase
    (per trial); ``dropout_concentration`` κ_d: each customer's own ~ Beta(dropout κ_d,
    (1 - dropout) κ_d); ``value`` each repeat purchase's value (per event; None: the
    segment's ``deal_value``) [currency].
    """

    per_month: Distribution
    dropout: Distribution
    rate_cv: float | None = None
    dropout_concentration: float | None = None
    value: Distribution | None = None


@dataclass(frozen=True)
class Cancel:
    """Cancellation of a won deal (v2 A.2): ``probability`` (per trial), ``days`` after the
    win (per deal) [days], ``refund`` the share of the value refunded."""

    probability: Distribution
    days: Distribution
    refund: float = 1.0


@dataclass(frozen=True)
class Customer:
    """What a won deal of the segment becomes (v2 A): a subscriber, a repeat buyer or a
    one-off customer (neither), with optional cancellations. ``recognition_months``: a
    one-off or repeat buyer's first deal is recognised per day over that many calendar
    months from the win (0: on the win day)."""

    recognition_months: int = 0
    subscription: Subscription | None = None
    repeat: Repeat | None = None
    cancel: Cancel | None = None

    @property
    def kind(self) -> str:
        """"subscription", "repeat" or "one-off"."""
        return "subscription" if self.subscription else "repeat" if self.repeat else "one-off"


@dataclass(frozen=True)
class Segment:
    """A segment: its lead arrivals, its funnel (stage name -> Stage) and deal value [currency];
    ``customer`` (v2 A): what its won deals become after the sale (None: nothing is followed).

    ``stages`` (v2 F4): the segment's own stages, an ordered subsequence of the scenario's
    (None: all of them). Its ``funnel`` still has an entry for every stage of the scenario:
    loading writes a stage the segment does not pass as ``convert: 1, days: 0`` (equal in
    distribution to skipping it), so the engine sees one stage list; :meth:`passes` tells
    which are the segment's own."""

    leads: Leads
    funnel: dict = field(hash=False)
    deal_value: Distribution
    customer: Customer | None = None
    stages: tuple | None = None
    cost: Cost | None = None  # v2 E.2

    @property
    def spends(self) -> bool:
        """Whether the segment's file asks for spend by default (v2 E.3): a ``cost``, a
        ``response`` or ``budget_by_month``."""
        return self.cost is not None or self.leads.response is not None or bool(self.leads.budget_by_month)

    @property
    def has_moves(self) -> bool:
        """Whether some stage of the segment has ``moves`` (v2 B): its funnel is a chain."""
        return any(st.moves for st in self.funnel.values())

    def passes(self, stage: str) -> bool:
        """Whether the segment's leads pass ``stage`` (v2 F4): always without ``stages``."""
        return self.stages is None or stage in self.stages


@dataclass(frozen=True)
class Cost:
    """What a channel costs besides its budget (v2 E.2): ``per_lead`` [currency per arriving
    lead] (drawn once per trial), ``per_month`` [currency per calendar month, spread evenly over
    its days], ``per_won`` [currency per won deal]."""

    per_lead: Distribution | None = None
    per_month: float = 0.0
    per_won: float = 0.0


@dataclass(frozen=True)
class Outputs:
    """The outputs asked for under ``outputs`` (v2 F): each adds results and changes no other.

    ``stage_entries``, ``losses``, ``cycle_days`` (F1): entries into and losses at each
    stage by period, and the time from arrival to win; ``stage_value`` (F9): each stage's
    eventual win probability and worth; ``by_source`` (F12): revenue and won deals split by
    source; ``coverage`` (F12, needs a pipeline): pipeline value against quota; ``leads``
    (E.3): the leads arriving by period; ``spend`` (E.3, implies ``leads``; None: on when a
    segment spends, see :attr:`Scenario.spends`).
    """

    stage_entries: bool = False
    losses: bool = False
    cycle_days: bool = False
    stage_value: bool = False
    by_source: bool = False
    coverage: bool = False
    leads: bool = False
    spend: bool | None = None

    @property
    def counts(self) -> bool:
        """Whether the leads that are lost must be drawn (F1)."""
        return self.stage_entries or self.losses


@dataclass(frozen=True)
class Draw:
    """An advance against commission (v2 D.3): ``amount`` [currency] per commission period
    in the first ``periods`` periods from ``start`` (None: every period); ``recoverable``:
    repaid from later earnings above it."""

    amount: float
    recoverable: bool
    periods: int | None = None


@dataclass(frozen=True)
class Rep:
    """A sales rep: covered segments and quota per commission period [currency]; ``draw``
    (v2 D.3) replaces the plan's draw for this rep."""

    name: str
    segments: tuple
    quota: float
    draw: Draw | None = None


@dataclass(frozen=True)
class Tier:
    """A commission band: ``rate`` on bookings up to ``up_to`` x quota (None: no bound)."""

    rate: float
    up_to: float | None = None
    backdate: bool = False  # v2 D.1: reaching the band pays the bookings below it at its rate


@dataclass(frozen=True)
class Clawback:
    """v2 D.2: the commission on a deal whose customer is lost within ``within_days`` days
    of the win is taken back, ``share`` of it, at the rate it was paid."""

    within_days: int
    share: float = 1.0


@dataclass(frozen=True)
class Spif:
    """v2 D.4: a bonus on every deal won of ``segments`` on a day in [``start``, ``end``]
    (the file's ``from`` and ``to``; None: the horizon's) with value >= ``min_value``:
    ``per_deal`` [currency] or ``rate`` x its value (exactly one is given); at most
    ``budget`` [currency] in all (None: no limit); ``capped``: counts toward the plan's cap."""

    name: str
    segments: tuple
    per_deal: float | None = None
    rate: float | None = None
    min_value: float = 0.0
    start: date | None = None
    end: date | None = None
    budget: float | None = None
    capped: bool = False


@dataclass(frozen=True)
class Commission:
    """The commission plan: period ('month' or 'quarter'), marginal tiers and optional cap.

    v2 D: ``clawback``, ``draw``, ``spifs`` and ``amortize_months`` (the commission extras);
    none of them changes the commission itself.

    ``base`` (v2 A.6): "new_bookings" (v1: the deals a rep won) or "total_bookings" (plus
    the renewals and repeat purchases of the rep's customers).
    """

    period: str
    tiers: tuple
    cap: float | None = None
    base: str = "new_bookings"
    clawback: Clawback | None = None      # v2 D.2
    draw: Draw | None = None              # v2 D.3: every rep's, unless the rep has its own
    spifs: tuple = ()                     # v2 D.4: Spif records
    amortize_months: int | None = None    # v2 D.5

    @property
    def backdated(self) -> bool:
        """Whether a band is backdated (v2 D.1)."""
        return any(t.backdate for t in self.tiers)


@dataclass(frozen=True)
class Shocks:
    """Shocks shared by every segment, drawn once per trial (an extension of the format).

    ``leads``: sigma of a lognormal multiplier with mean 1 on every segment's lead rate
    (divides the cost per lead of bought leads); ``convert``: stage name -> sigma of a
    normal shift on the log-odds of that stage's conversion in every segment.
    ``drift_leads``, ``drift_convert``: the same, per calendar month after ``start``'s, as a
    random walk (sd per month) that moves new leads by the month they arrive in.
    """

    leads: float = 0.0
    convert: dict = field(default_factory=dict, hash=False)
    drift_leads: float = 0.0
    drift_convert: dict = field(default_factory=dict, hash=False)

    def __bool__(self) -> bool:
        return (self.leads > 0 or self.drift_leads > 0 or any(v > 0 for v in self.convert.values())
                or any(v > 0 for v in self.drift_convert.values()))


@dataclass(frozen=True)
class Closing:
    """Calendar-dependent closing (an extension of the format): quarter-end bunching.

    ``slip``: month of the quarter (1-3) -> probability that a deal due to be won then is
    pushed to the quarter's last ``window_days`` days (uniformly, never earlier than due).
    """

    slip: dict = field(hash=False)
    window_days: int = 10


@dataclass(frozen=True)
class Capacity:
    """How many deals the team can win in a calendar month (an extension of the format).

    ``won_per_month`` [deals] times ``quarter_shape`` of the month of the quarter (1-3,
    default 1), times a gamma with mean 1 and ``cv`` drawn per trial and month; pro rata
    for a month the horizon cuts. Deals due beyond it wait, oldest first, for a month
    with room.
    """

    won_per_month: float
    quarter_shape: dict = field(default_factory=dict, hash=False)
    cv: float = 0.0


@dataclass(frozen=True)
class PipelineDeal:
    """One open deal at ``start`` (a row of the pipeline CSV). ``amount`` None: drawn."""

    deal_id: str
    segment: str
    stage: str
    entered_stage: date
    amount: float | None = None
    owner: str | None = None


@dataclass(frozen=True)
class Clv:
    """How customer lifetime value is computed (v2 A.3): over ``horizon_months`` customer
    months from the win, discounted at ``discount_per_year``."""

    horizon_months: int = 60
    discount_per_year: float = 0.10


@dataclass(frozen=True)
class InstalledCustomer:
    """One customer at ``start`` (a row of the ``customers`` file, v2 A.5).

    A subscriber has ``term_end`` (the day its next renewal is decided), ``value`` (the
    current term's; None: drawn from ``deal_value``) [currency], ``renewals`` survived and
    ``term_start`` (None: add_months(term_end, -term_months)). A repeat buyer has
    ``first_purchase``, ``last_purchase`` and ``purchases`` (repeat purchases so far).
    ``owner``: a rep's name, or None.
    """

    customer_id: str
    segment: str
    owner: str | None = None
    term_end: date | None = None
    value: float | None = None
    renewals: int = 0
    term_start: date | None = None
    first_purchase: date | None = None
    last_purchase: date | None = None
    purchases: int = 0


@dataclass(frozen=True)
class Scenario:
    """A whole validated scenario.

    ``source`` is the file it came from (None for one built from a dict), ``sha256`` a hash
    of the scenario text and of the pipeline file, for provenance. ``same_as`` (v2 E.1): the
    shared per-trial draws, as (holder, target) key path tuples such as
    ``(("segments", "referrals", "funnel", "deal", "convert"), ("segments", "ads", "funnel",
    "deal", "convert"))``: in every trial the holder takes the target's draw (the target has a
    law of its own; the holder's field holds the same :class:`Distribution`).
    """

    name: str
    start: date
    end: date
    stages: tuple
    segments: dict = field(hash=False)
    description: str | None = None
    report_by: str = "month"
    fiscal_year_start: int | None = None   # month 1-12; None: calendar quarters, labelled as before
    currency: str | None = None
    trials: int = 10000
    seed: int = 0
    pipeline_file: str | None = None
    pipeline: tuple = ()
    reps: tuple = ()
    commission: Commission | None = None
    targets: dict = field(default_factory=dict, hash=False)
    shocks: Shocks | None = None
    closing: Closing | None = None
    capacity: Capacity | None = None
    stalled: dict = field(default_factory=dict, hash=False)
    clv: Clv = field(default_factory=Clv)
    regular_from: int = 3
    customers_file: str | None = None
    customers: tuple = ()
    outputs: Outputs = field(default_factory=Outputs)
    same_as: tuple = ()
    source: Path | None = None
    sha256: str = ""

    @property
    def fiscal_start_month(self) -> int:
        """The month (1-12) quarters start from: ``fiscal_year_start``, or January."""
        return self.fiscal_year_start or 1

    @property
    def days(self) -> int:
        """Number of days in the horizon (start and end inclusive)."""
        return (self.end - self.start).days + 1

    @property
    def segment_names(self) -> tuple:
        return tuple(self.segments)

    @property
    def rep_names(self) -> tuple:
        return tuple(r.name for r in self.reps)

    @property
    def has_customers(self) -> bool:
        """Whether the after-sale outputs exist (v2 A.3): a segment with a ``customer`` block."""
        return any(seg.customer is not None for seg in self.segments.values())

    @property
    def spends(self) -> bool:
        """Whether spend is reported (v2 E.3): ``outputs.spend``, by default on when a segment
        has a ``cost``, a ``response``, ``budget_by_month`` or an event with a cost."""
        if self.outputs.spend is not None:
            return self.outputs.spend
        return any(seg.spends or any(getattr(e, "cost", 0.0) for e in getattr(seg.leads, "events", ()))
                   for seg in self.segments.values())

    @property
    def counts_leads(self) -> bool:
        """Whether the leads arriving are counted (v2 E.3): ``outputs.leads``, or spend."""
        return self.outputs.leads or self.spends

    @property
    def metrics(self) -> tuple:
        """Metrics this scenario reports: revenue, won_deals, and commission with a plan."""
        return ("revenue", "won_deals", "commission") if self.commission else ("revenue", "won_deals")

    def with_run(self, trials: int | None = None, seed: int | None = None) -> Scenario:
        """A copy with ``trials`` and/or ``seed`` replaced (None keeps the file's)."""
        return replace(self, trials=self.trials if trials is None else int(trials),
                       seed=self.seed if seed is None else int(seed))
