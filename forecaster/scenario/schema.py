"""The scenario format, as one declarative table (see ``scenario-format.md``).

:data:`SCENARIO` checks a loaded YAML document and builds the typed parts of a
:class:`~forecaster.scenario.model.Scenario`; :func:`json_schema` writes the same table as JSON
Schema. Rules that join several keys (every stage has a funnel entry, every segment has a
rep, tiers increase) sit beside the table as ``checks``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from forecaster.scenario import chain, same_as
from forecaster.scenario.distributions import (
    ELASTICITY,
    GROWTH,
    MAX_GAMMA_CV,
    MIN_GAMMA_CV,
    NONNEGATIVE,
    POSITIVE,
    PROBABILITY,
    Distribution,
    Quantity,
)
from forecaster.scenario.model import (
    LEAD_SOURCES,
    RESPONSE_CURVES,
    WON,
    Cancel,
    Capacity,
    Clawback,
    Closing,
    Clv,
    Commission,
    Cost,
    Customer,
    Draw,
    LeadEvent,
    Leads,
    Move,
    Outputs,
    Rep,
    Repeat,
    Response,
    Segment,
    Shocks,
    Spif,
    Stage,
    Subscription,
    Tier,
)
from forecaster.scenario.same_as import NO_EXPANSION
from forecaster.scenario.validation import (
    INVALID,
    Choice,
    Context,
    Date,
    Field,
    Flag,
    JSONSchema,
    ListOf,
    MapOf,
    Name,
    Num,
    Record,
    Text,
    fmt_number,
    show,
    suggest,
)
from forecaster.scenario.yamlio import Path

METRICS = ("revenue", "won_deals", "commission")
CUSTOMER_FLOWS = ("recognised_revenue", "renewal_bookings", "repeat_revenue", "cancellations", "total_bookings",
                  "new_customers", "churned_customers", "repeat_customers", "regular_customers")
"""The after-sale flows (v2 A.3): amounts or counts summed over each period's days."""
CUSTOMER_STOCKS = ("active_customers", "mrr")
"""The after-sale stocks (v2 A.3): levels at the end of each period's last day in the horizon."""
COMMISSION_EXTRA_METRICS = ("spif", "clawback", "net_commission", "payout", "commission_expense")
"""v2 D.6: the commission extras' metrics (each only where the plan has what produces it)."""
TARGET_METRICS = METRICS + CUSTOMER_FLOWS + CUSTOMER_STOCKS + ("stage_revenue", "leads", "spend") \
    + COMMISSION_EXTRA_METRICS
"""Metrics a target may name (each only where the scenario has it)."""
STAGE_METRICS = ("stage_entries", "losses")
"""v2 F1: metrics by stage, named ``<metric>.<stage>`` (with the output asked for under ``outputs``)."""


@dataclass
class TargetMetric(Choice):
    """A metric a target names: one of ``options``, or ``stage_entries.<stage>`` / ``losses.<stage>``
    (v2 F1; whether the scenario reports it is checked with the scenario, in :func:`_after_sale`)."""

    def expected(self) -> str:
        return super().expected() + ", or " + " or ".join(f"{m}.<stage>" for m in STAGE_METRICS)

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        if isinstance(value, str):
            metric, _, stage = value.partition(".")
            if metric in STAGE_METRICS and stage:
                return value
        return super().validate(value, path, ctx)

    def json_schema(self) -> JSONSchema:
        return {"anyOf": [super().json_schema(),
                          {"type": "string", "pattern": r"^(" + "|".join(STAGE_METRICS) + r")\..+$"}]}


REPORT_BY = ("day", "week", "month", "quarter")
MAX_CONCENTRATION = 1e12
"""Largest concentration of a per-customer beta (beyond, every customer has the mean)."""


def _one_lead_source(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    given = [k for k in LEAD_SOURCES if v[k] is not None]
    if len(given) != 1:
        found = ", ".join(given) if given else "none"
        ctx.error(path, "must give exactly one of per_day, per_week, per_month, or budget_per_month "
                        f"with cost_per_lead; found {found}")
        return False
    if given == ["budget_per_month"] and v["cost_per_lead"] is None:
        ctx.error(path + ("cost_per_lead",), "is missing: bought leads need cost_per_lead "
                                             "(currency per lead) beside budget_per_month")
        return False
    if v["cost_per_lead"] is not None and given != ["budget_per_month"]:
        ctx.error(path + ("cost_per_lead",), "is only used with budget_per_month; "
                                             f"remove it or buy the leads with budget_per_month instead of {given[0]}")
        return False
    return True


def _curve_keys(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    """v2 C.5: each curve takes its own keys (power: elasticity; hill: half_saturation, slope)."""
    curve = v["curve"]
    if curve is INVALID:
        return True
    own = {"power": ("elasticity",), "hill": ("half_saturation", "slope")}
    ok = True
    for other, keys in own.items():
        for key in keys:
            if other != curve and v[key] is not None:
                ok = False
                ctx.error(path + (key,), f"is a key of curve: {other}; this curve is {curve} "
                                         f"(its keys: {', '.join(own[curve])})")
    for key in own[curve]:
        if key != "slope" and v[key] is None:
            ok = False
            ctx.error(path + (key,), f"is missing: curve {curve} needs it")
    return ok


RESPONSE = Record(
    name="a budget response mapping",
    doc="How bought leads respond to the monthly budget (v2 C): the average cost of a lead rises with it.",
    make=Response,
    checks=(_curve_keys,),
    fields={
        "reference_budget": Field(Num(lo=0.0, lo_open=True, doc="The monthly budget at which cost_per_lead is the "
                                                                "average cost of a lead. [currency]"), required=True),
        "curve": Field(Choice(RESPONSE_CURVES, doc="power: L ~ B^elasticity; hill: L ~ B^slope / (K^slope + "
                                                   "B^slope)."), required=True),
        "elasticity": Field(Quantity(ELASTICITY, doc="power only: leads grow as the budget to this power (drawn "
                                                     "once per trial).", per_trial=True)),
        "half_saturation": Field(Quantity(POSITIVE, doc="hill only: the budget K of half the ceiling (drawn once "
                                                        "per trial). [currency per month]", per_trial=True)),
        "slope": Field(Quantity(POSITIVE, doc="hill only: the steepness n (drawn once per trial; default 1).",
                                  per_trial=True)),
    },
)


@dataclass
class Count(Quantity):
    """A count of leads (v2 F2): a whole number >= 0, or a distribution >= 0 drawn per trial
    and rounded to the nearest whole number (halves up); a fixed one must be whole."""

    role: Any = NONNEGATIVE

    def expected(self) -> str:
        return "a whole number >= 0 or a distribution ({dist: ...})"

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        if not isinstance(value, dict):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return ctx.error(path, f"must be {self.expected()}; got {show(value)}")
            got = Num(lo=0.0, integer=True, what="a whole number").validate(value, path, ctx)
            return INVALID if got is INVALID else Distribution.fixed(float(got))
        got = super().validate(value, path, ctx)
        if got is not INVALID and got.dist == "fixed" and not float(got["value"]).is_integer():
            return ctx.error(path + ("value",), f"must be a whole number: a fixed count is not rounded; "
                                                f"got {fmt_number(got['value'])}")
        return got

    def json_schema(self) -> JSONSchema:
        schema = super().json_schema()
        schema["anyOf"][0] = {"type": "integer", "minimum": 0}
        return schema


EVENT = Record(
    name="a lead event",
    doc="Leads entering a stage at the beginning of a date (v2 F2).",
    make=lambda date, count, stage, cost: LeadEvent(date, count, stage, cost),
    fields={
        "date": Field(Date(doc="The day the leads enter, in [start, end]."), required=True),
        "count": Field(Count(doc="How many leads enter (a whole number, or a distribution drawn per trial and "
                                 "rounded to the nearest whole number, halves up)."), required=True),
        "stage": Field(Name("a stage name", doc="The stage they enter: one the segment passes (default: its "
                                                "first).")),
        "cost": Field(Num(lo=0.0, doc="Spend of the event, on its date (E.3). [currency]"), default=0.0),
    },
)


def _bought_only(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    """v2 C.5: ``response`` and ``budget_by_month`` describe bought leads."""
    ok = True
    if v["budget_per_month"] is None:
        if v["response"] not in (None, INVALID):
            ok = False
            ctx.error(path + ("response",), "needs budget_per_month with cost_per_lead (it describes how bought "
                                            "leads respond to spend)")
        if v["budget_by_month"]:
            ok = False
            ctx.error(path + ("budget_by_month",), "needs budget_per_month with cost_per_lead (it gives some "
                                                   "months another budget than budget_per_month)")
    return ok


LEADS = Record(
    name="a lead-arrival mapping",
    doc="Arrivals at the segment's first stage.",
    make=lambda events, **keys: Leads(events=tuple(events), **keys),
    checks=(_one_lead_source, _bought_only),
    fields={
        "per_day": Field(Quantity(NONNEGATIVE, doc="Mean new leads per day (a rate: drawn once per trial).",
                                   per_trial=True)),
        "per_week": Field(Quantity(NONNEGATIVE, doc="Mean new leads per 7 days.", per_trial=True)),
        "per_month": Field(Quantity(NONNEGATIVE, doc="Mean new leads per calendar month, spread evenly over its days.",
                                     per_trial=True)),
        "budget_per_month": Field(Num(lo=0.0, doc="Spend on bought leads per calendar month. [currency]")),
        "cost_per_lead": Field(Quantity(POSITIVE, doc="Cost of one bought lead (a rate: drawn once per trial). [currency]",
                                         per_trial=True)),
        "dispersion": Field(Num(lo=0.0, doc="0 = Poisson days; d > 0 = negative binomial, var = m + d m^2."), default=0.0),
        "seasonality": Field(MapOf(Num(lo=1, hi=12, integer=True, what="a calendar month"),
                                   Num(lo=0.0, what="a rate multiplier"), key_pattern="^([1-9]|1[0-2])$",
                                   doc="Calendar month (1-12) -> multiplier on the rate (default 1)."),
                             default={}),
        "growth_per_month": Field(Quantity(GROWTH, doc="Monthly compounding growth from start's month "
                                                       "(a rate: drawn once per trial).", per_trial=True)),
        "response": Field(RESPONSE),
        "budget_by_month": Field(MapOf(Num(lo=1, hi=12, integer=True, what="a calendar month"),
                                       Num(lo=0.0, what="a budget"), key_pattern="^([1-9]|1[0-2])$",
                                       doc="Calendar month (1-12) -> that month's budget, instead of "
                                           "budget_per_month (v2 C). [currency]"),
                                 default={}),
        "events": Field(ListOf(EVENT, doc="Dated lead events (v2 F2): counts of leads entering a stage on a "
                                          "date, untouched by the rate's dispersion, seasonality, growth and "
                                          "shocks."), default=()),
    },
)

MOVE = Record(
    name="a move",
    doc="Where some of the leads that leave a visit without converting go (v2 B).",
    make=Move,
    fields={
        "to": Field(Name("a stage name or won", doc="A stage of the segment (earlier: back; later than the next: "
                                                    "a skip), or `won`."), required=True),
        "share": Field(Quantity(PROBABILITY, doc="Of the leads leaving a visit without converting, the share "
                                                 "that move (drawn once per trial).", per_trial=True), required=True),
        "days": Field(Quantity(NONNEGATIVE, doc="Days in the stage before the move (per visit; default: the "
                                                "stage's days).")),
    },
)

STAGE = Record(
    name="a funnel stage",
    make=Stage,
    fields={
        "convert": Field(Quantity(PROBABILITY, doc="Probability to move on (drawn once per trial).", per_trial=True),
                         required=True),
        "days": Field(Quantity(NONNEGATIVE, doc="Days a converting deal spends here (drawn per deal)."), required=True),
        "days_lost": Field(Quantity(NONNEGATIVE, doc="Days a lost deal spends here before it is given up "
                                                     "(per deal; default: as days).")),
        "value": Field(Quantity(NONNEGATIVE, doc="Booked in stage_revenue when a lead first converts out of "
                                                 "this stage (per deal; not on the last stage). [currency]")),
        "moves": Field(ListOf(MOVE, doc="Moves back, skips ahead or wins another way (v2 B)."), default=()),
    },
)

SUBSCRIPTION = Record(
    name="a subscription mapping",
    doc="A contract renewed at each term's end; terms are anchored on the win day.",
    make=lambda term_months, renew, concentration, expansion: Subscription(renew, int(term_months), concentration,
                                                                           expansion),
    fields={
        "term_months": Field(Num(lo=1, hi=1200, integer=True, what="a whole number of months",
                                 doc="Length of a term. [calendar months]"), default=1),
        "renew": Field(Quantity(PROBABILITY, doc="Probability to renew at each term's end (drawn once per trial).",
                                per_trial=True), required=True),
        "concentration": Field(Num(lo=0.0, lo_open=True, hi=MAX_CONCENTRATION, doc="Each customer's own renewal "
                                   "probability is Beta(renew k, (1 - renew) k) (shifted-beta-geometric); absent: "
                                   "none.")),
        "expansion": Field(Quantity(GROWTH, doc="Growth of the value at each renewal (drawn once per trial).",
                                    per_trial=True), default=NO_EXPANSION),
    },
)

REPEAT = Record(
    name="a repeat mapping",
    doc="Further purchases while active (BG/NBD with both heterogeneities).",
    make=Repeat,
    fields={
        "per_month": Field(Quantity(NONNEGATIVE, doc="Purchases per customer month (30.4375 days) while active "
                                                     "(drawn once per trial).", per_trial=True), required=True),
        "rate_cv": Field(Num(lo=MIN_GAMMA_CV, hi=MAX_GAMMA_CV, doc="Each customer's rate is per_month x a gamma "
                                                                   "of mean 1 and this coefficient of variation; "
                                                                   "absent: none.")),
        "dropout": Field(Quantity(PROBABILITY, doc="Chance of becoming inactive after each repeat purchase "
                                                   "(drawn once per trial).", per_trial=True), required=True),
        "dropout_concentration": Field(Num(lo=0.0, lo_open=True, hi=MAX_CONCENTRATION, doc="Each customer's own "
                                           "dropout is Beta(dropout k, (1 - dropout) k); absent: none.")),
        "value": Field(Quantity(NONNEGATIVE, doc="Value of each repeat purchase (drawn per purchase; default: "
                                                 "the segment's deal_value). [currency]")),
    },
)

CANCEL = Record(
    name="a cancel mapping",
    doc="A won deal may be cancelled and refunded.",
    make=Cancel,
    fields={
        "probability": Field(Quantity(PROBABILITY, doc="Chance that a won deal is cancelled (drawn once per "
                                                       "trial).", per_trial=True), required=True),
        "days": Field(Quantity(NONNEGATIVE, doc="Days from the win to the cancellation (drawn per deal)."),
                      required=True),
        "refund": Field(Num(lo=0.0, hi=1.0, doc="Share of the deal's value refunded."), default=1.0),
    },
)


def _one_kind_of_customer(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    ok = True
    if v["subscription"] not in (None, INVALID) and v["repeat"] not in (None, INVALID):
        ok = False
        ctx.error(path, "give subscription or repeat, not both (a customer either renews a contract or buys again)")
    if v["recognition"] not in (None, INVALID) and v["subscription"] not in (None, INVALID):
        ok = False
        ctx.error(path + ("recognition",), "a subscription is recognised over each of its terms; remove recognition")
    return ok


CUSTOMER = Record(
    name="a customer mapping",
    doc="What a won deal of the segment becomes after the sale (scenario-format-v2.md, A).",
    make=lambda recognition, subscription, repeat, cancel: Customer(
        int(recognition["over_months"]) if recognition else 0, subscription, repeat, cancel),
    checks=(_one_kind_of_customer,),
    fields={
        "recognition": Field(Record(name="a recognition mapping", fields={
            "over_months": Field(Num(lo=0, hi=1200, integer=True, what="a whole number of months",
                                     doc="The first deal is recognised per day over this many calendar months "
                                         "from the win (0: on the win day)."), default=0)})),
        "subscription": Field(SUBSCRIPTION),
        "repeat": Field(REPEAT),
        "cancel": Field(CANCEL),
    },
)

COST = Record(
    name="a cost mapping",
    doc="What the channel costs besides its budget (v2 E.2); all of it adds to spend.",
    make=Cost,
    fields={
        "per_lead": Field(Quantity(NONNEGATIVE, doc="Cost of each arriving lead (a rate: drawn once per trial). "
                                                    "[currency per lead]", per_trial=True)),
        "per_month": Field(Num(lo=0.0, doc="Fixed cost per calendar month, spread evenly over its days. "
                                           "[currency per month]"), default=0.0),
        "per_won": Field(Num(lo=0.0, doc="Cost per won deal (a bounty). [currency per deal]"), default=0.0),
    },
)

SEGMENT = Record(
    name="a segment",
    make=Segment,
    fields={
        "leads": Field(LEADS, required=True),
        "funnel": Field(MapOf(Name("a stage name"), STAGE, doc="One entry per stage in `stages`."), required=True),
        "deal_value": Field(Quantity(NONNEGATIVE, doc="Value of a won deal (drawn per deal). [currency]"), required=True),
        "customer": Field(CUSTOMER),
        "stages": Field(ListOf(Name("a stage name"), min_items=1, unique=True,
                               doc="The segment's own stages, an ordered subsequence of `stages` (v2 F4; "
                                   "default: all).")),
        "cost": Field(COST),
    },
)

OUTPUTS = Record(
    name="an outputs mapping",
    doc="Results asked for (v2 F); none changes another output.",
    make=lambda **flags: Outputs(**{k: v if v is None else bool(v) for k, v in flags.items()}),  # type: ignore[arg-type]
    fields={
        "leads": Field(Flag(doc="Leads arriving by period, by segment (E.3)."), default=False),
        "spend": Field(Flag(doc="Spend by period, by segment, and the ratios spend per lead, cac, roi (E.3; "
                                "implies leads; on by default with cost, response or budget_by_month)."),
                       default=None),
        "stage_entries": Field(Flag(doc="Entries into each stage by period (F1)."), default=False),
        "losses": Field(Flag(doc="Leads lost at each stage by period (F1)."), default=False),
        "cycle_days": Field(Flag(doc="Days from arrival to win of the deals won (F1)."),
                            default=False),
        "stage_value": Field(Flag(doc="Each stage's eventual win probability and worth (F9)."),
                             default=False),
        "by_source": Field(Flag(doc="Revenue and won deals by source: pipeline, new leads, "
                                                   "events (F12)."), default=False),
        "coverage": Field(Flag(doc="Pipeline value against quota (F12; needs a pipeline)."),
                          default=False),
    },
)

DRAW = Record(
    name="a draw mapping",
    doc="An advance paid against commission in each commission period (v2 D.3).",
    make=lambda amount, recoverable, periods: Draw(amount, recoverable, None if periods is None else int(periods)),
    fields={
        "amount": Field(Num(lo=0.0, doc="Advance per commission period. [currency]"), required=True),
        "recoverable": Field(Flag(doc="Whether advances are repaid from later earnings above the draw."),
                             required=True),
        "periods": Field(Num(lo=1, integer=True, what="a whole number of commission periods",
                             doc="Commission periods from start with a draw (default: every period).")),
    },
)

REP = Record(
    name="a rep",
    make=lambda name, segments, quota, draw: Rep(name, tuple(segments), quota, draw),
    fields={
        "name": Field(Name("a rep name"), required=True),
        "segments": Field(ListOf(Name("a segment name"), min_items=1, unique=True), required=True),
        "quota": Field(Num(lo=0.0, lo_open=True, doc="Quota per commission period. [currency]"), required=True),
        "draw": Field(DRAW),
    },
)


def _unique_rep_names(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    names = [r.name for r in v["reps"]] if v["reps"] is not INVALID else []
    ok = True
    for i, n in enumerate(names):
        if n in names[:i]:
            ok = False
            ctx.error(path + ("reps", i, "name"), f"repeats the rep name {n!r}; rep names are unique")
    return ok


TEAM = Record(
    name="a team",
    checks=(_unique_rep_names,),
    fields={"reps": Field(ListOf(REP, min_items=1), required=True)},
)

TIER = Record(
    name="a commission tier",
    make=lambda rate, up_to, backdate: Tier(rate=rate, up_to=up_to, backdate=backdate),
    fields={
        "up_to": Field(Num(lo=0.0, lo_open=True, doc="Upper end of the band, as a fraction of quota.")),
        "rate": Field(Num(lo=0.0, doc="Marginal commission rate on bookings in the band."), required=True),
        "backdate": Field(Flag(doc="Reaching the band pays every booking below it at its rate (v2 D.1)."),
                          default=False),
    },
)


def _tiers_increase(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    tiers = v["tiers"]
    if tiers is INVALID:
        return True
    ok, prev = True, 0.0
    for i, t in enumerate(tiers):
        at = path + ("tiers", i)
        last = i == len(tiers) - 1
        if last and t.up_to is not None:
            ok = False
            ctx.error(at + ("up_to",), "must be absent: the last of the tiers has no upper bound; "
                                       f"got {fmt_number(t.up_to)} (add a final tier {{rate: ...}})")
        elif not last and t.up_to is None:
            ok = False
            ctx.error(at + ("up_to",), "is missing: every tier but the last needs up_to")
        elif not last and t.up_to <= prev:
            ok = False
            ctx.error(at + ("up_to",), f"must be greater than the previous tier's up_to ({fmt_number(prev)}): "
                                       f"tiers' up_to values strictly increase; got {fmt_number(t.up_to)}")
        if t.up_to is not None:
            prev = max(prev, t.up_to)
    if tiers and tiers[0].backdate:  # v2 D.1
        ok = False
        ctx.error(path + ("tiers", 0, "backdate"), "the first band has no bookings below it to repay; "
                                                   "remove backdate from tiers[0]")
    return ok


MAX_CLAWBACK_DAYS = 36525
"""Longest clawback window (100 years): the engine follows each subscriber's renewals through it."""
MAX_AMORTIZE_MONTHS = 1200
"""Longest amortisation (100 years), as ``clv.horizon_months``."""

CLAWBACK = Record(
    name="a clawback mapping",
    doc="Commission taken back when a deal's customer is lost soon after the win (v2 D.2).",
    make=lambda within_days, share: Clawback(int(within_days), share),
    fields={
        "within_days": Field(Num(lo=1, hi=MAX_CLAWBACK_DAYS, integer=True, what="a whole number of days",
                                 doc="A customer lost within this many days of the win is clawed back."),
                             required=True),
        "share": Field(Num(lo=0.0, hi=1.0, what="a share",
                           doc="Share of the deal's commission taken back."), default=1.0),
    },
)


def _spif_amount(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    given = [k for k in ("per_deal", "rate") if v[k] is not None]
    if len(given) != 1:
        ctx.error(path, "must give exactly one of per_deal (currency per deal) and rate (a fraction of the "
                        f"deal's value); found {' and '.join(given) if given else 'neither'}")
        return False
    if v["from"] not in (None, INVALID) and v["to"] not in (None, INVALID) and v["from"] > v["to"]:
        ctx.error(path + ("to",), f"must be on or after from ({v['from'].isoformat()}); got {v['to'].isoformat()}")
        return False
    return True


SPIF = Record(
    name="a spif",
    doc="A bonus on every qualifying deal won (v2 D.4).",
    checks=(_spif_amount,),
    make=lambda **k: Spif(k["name"], tuple(k["segments"]), k["per_deal"], k["rate"], k["min_value"], k["from"],
                          k["to"], k["budget"], k["capped"]),
    fields={
        "name": Field(Name("a spif name"), required=True),
        "segments": Field(ListOf(Name("a segment name"), min_items=1, unique=True,
                                 doc="Segments whose deals qualify."), required=True),
        "per_deal": Field(Num(lo=0.0, doc="Paid per qualifying deal. [currency]")),
        "rate": Field(Num(lo=0.0, doc="Paid per qualifying deal, as a fraction of its value.")),
        "min_value": Field(Num(lo=0.0, doc="Smallest value of a qualifying deal. [currency]"), default=0.0),
        "from": Field(Date(doc="First day a deal won qualifies (default: start).")),
        "to": Field(Date(doc="Last day a deal won qualifies (default: end).")),
        "budget": Field(Num(lo=0.0, lo_open=True, doc="The most the spif pays in all; deals are paid in the "
                                                      "order they are won. [currency]")),
        "capped": Field(Flag(doc="Whether the spif counts toward commission.cap."), default=False),
    },
)


def _unique_spif_names(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    spifs = v["spifs"]
    if spifs in (None, INVALID):
        return True
    ok, names = True, [s.name for s in spifs]
    for i, n in enumerate(names):
        if n in names[:i]:
            ok = False
            ctx.error(path + ("spifs", i, "name"), f"repeats the spif name {n!r}; spif names are unique")
    return ok


COMMISSION = Record(
    name="a commission plan",
    make=lambda period, tiers, cap, base, clawback, draw, spifs, amortize_months: Commission(
        period, tuple(tiers), cap, base, clawback, draw, tuple(spifs),
        None if amortize_months is None else int(amortize_months)),
    checks=(_tiers_increase, _unique_spif_names),
    fields={
        "period": Field(Choice(("quarter", "month"), doc="Calendar period each quota is for."), required=True),
        "tiers": Field(ListOf(TIER, min_items=1, doc="Marginal rates by attainment band."), required=True),
        "cap": Field(Num(lo=0.0, lo_open=True, doc="Most a rep can earn in one commission period. [currency]")),
        "base": Field(Choice(("new_bookings", "total_bookings"),
                             doc="What the plan pays on: the deals a rep won, or also the renewals and repeat "
                                 "purchases of the rep's customers."), default="new_bookings"),
        "clawback": Field(CLAWBACK),
        "draw": Field(DRAW),
        "spifs": Field(ListOf(SPIF, doc="Bonuses per qualifying deal (v2 D.4)."), default=()),
        "amortize_months": Field(Num(lo=0, hi=MAX_AMORTIZE_MONTHS, integer=True, what="a whole number of months",
                                     doc="Net commission expensed over this many months from the day it is "
                                         "earned (0: on that day), reported as commission_expense (v2 D.5).")),
    },
)

CLV = Record(
    name="a clv mapping",
    doc="How customer lifetime value is computed (expected discounted net bookings of one customer).",
    make=lambda horizon_months, discount_per_year: Clv(int(horizon_months), discount_per_year),
    fields={
        "horizon_months": Field(Num(lo=1, hi=1200, integer=True, what="a whole number of months",
                                    doc="Customer months counted from the win."), default=60),
        "discount_per_year": Field(Num(lo=0.0, doc="Yearly discount rate."), default=0.10),
    },
)


DRIFT = Record(
    name="a drift mapping",
    doc="Random walks by calendar month from start's month on, shared by every segment.",
    fields={
        "leads": Field(Num(lo=0.0, doc="Sd per month of the walk of every lead rate's log (mean kept)."),
                       default=0.0),
        "convert": Field(MapOf(Name("a stage name"), Num(lo=0.0, what="a sd of log-odds per month"),
                               doc="Stage -> sd per month of the walk of its conversion's log-odds."), default={}),
    },
)

SHOCKS = Record(
    name="a shocks mapping",
    doc="Shocks shared by every segment, drawn once per trial (what moves the whole business at once).",
    make=lambda leads, convert, drift: Shocks(leads, dict(convert), drift["leads"] if drift else 0.0,
                                              dict(drift["convert"]) if drift else {}),
    fields={
        "leads": Field(Num(lo=0.0, doc="Sigma of a lognormal multiplier (mean 1) on every segment's lead rate."),
                       default=0.0),
        "convert": Field(MapOf(Name("a stage name"), Num(lo=0.0, what="a sigma of log-odds"),
                               doc="Stage -> sigma of a normal shift of its conversion's log-odds, "
                                   "the same shift in every segment."), default={}),
        "drift": Field(DRIFT),
    },
)

CLOSING = Record(
    name="a closing mapping",
    doc="Calendar-dependent closing: deals pushed to the end of the quarter.",
    make=lambda slip, window_days: Closing(dict(slip), window_days),
    fields={
        "slip": Field(MapOf(Num(lo=1, hi=3, integer=True, what="a month of the quarter"),
                            Num(lo=0.0, hi=1.0, what="a probability"), key_pattern="^[1-3]$",
                            doc="Month of the quarter (1-3) -> probability that a deal due to be won then "
                                "slips to the quarter's last window_days days."), required=True),
        "window_days": Field(Num(lo=1, hi=90, integer=True, doc="The quarter's last days slipped deals land in."),
                             default=10),
    },
)


CAPACITY = Record(
    name="a capacity mapping",
    doc="How many deals the team can win in a calendar month; the rest wait, oldest first.",
    make=lambda won_per_month, quarter_shape, cv: Capacity(won_per_month, dict(quarter_shape), cv),
    fields={
        "won_per_month": Field(Num(lo=0.0, doc="Most deals won in a calendar month (all segments). [deals]"),
                               required=True),
        "quarter_shape": Field(MapOf(Num(lo=1, hi=3, integer=True, what="a month of the quarter"),
                                     Num(lo=0.0, what="a multiplier"), key_pattern="^[1-3]$",
                                     doc="Month of the quarter (1-3) -> multiplier on won_per_month (default 1)."),
                               default={}),
        "cv": Field(Num(lo=0.0, doc="Coefficient of variation of each month's capacity (gamma, per trial "
                                    "and month)."), default=0.0),
    },
)


STALLED = MapOf(Name("a stage name"), Num(lo=0.0, hi=1.0, what="a share"),
                doc="Stage -> share of the leads that do not convert out of it that are never given up: they "
                    "stay open for ever (an open pipeline deal's chance of converting is conditioned on it).")


def _shocked_stages(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    shocks, stages = v["shocks"], v["stages"]
    ok = True
    if stages is not INVALID and v["stalled"] is not INVALID:
        for stage in v["stalled"]:
            if stage not in stages:
                ok = False
                ctx.error(path + ("stalled", stage),
                          f"is not one of the stages{suggest(stage, stages)}; stages: {', '.join(stages)}")
    if shocks in (None, INVALID) or stages is INVALID:
        return ok
    for keys, named in ((("shocks", "convert"), shocks.convert), (("shocks", "drift", "convert"), shocks.drift_convert)):
        for stage in named:
            if stage not in stages:
                ok = False
                ctx.error(path + keys + (stage,),
                          f"is not one of the stages{suggest(stage, stages)}; stages: {', '.join(stages)}")
    return ok


def _after_sale(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    """v2 A and F11 rules that join keys: a stage value not on the last stage, nor with a
    conversion drift; targets name metrics the scenario has. (A customers file without a
    customer block: refused by its reader.)"""
    segments, stages, targets = v["segments"], v["stages"], v["targets"]
    if segments is INVALID or stages is INVALID:
        return True
    ok = True
    with_customer = [name for name, seg in segments.items() if seg.customer is not None]
    # a customers file without a customer block: refused by its reader (forecaster.scenario.customers)
    valued = False
    for name, seg in segments.items():
        for stage, entry in seg.funnel.items():
            if entry.value is None:
                continue
            valued = True
            if stages and stage == (seg.stages or stages)[-1]:
                ok = False
                ctx.error(path + ("segments", name, "funnel", stage, "value"),
                          "the last stage's value is deal_value: a value belongs on an earlier stage")
    shocks = v["shocks"]
    if valued and shocks not in (None, INVALID) and any(x > 0 for x in shocks.drift_convert.values()):
        ok = False
        ctx.error(path + ("shocks", "drift", "convert"), "cannot be combined with stage values yet (the leads lost "
                                                          "after a valued stage do not follow the drift): remove one")
    has = set(METRICS)
    if with_customer or v["customers"] not in (None, INVALID):
        has |= set(CUSTOMER_FLOWS) | set(CUSTOMER_STOCKS)
    if valued:
        has |= {"stage_revenue", "total_bookings"}
    outputs = v["outputs"]
    if outputs not in (None, INVALID) and stages:  # v2 F1
        has |= {f"{m}.{s}" for m in STAGE_METRICS if getattr(outputs, m) for s in stages}
    if outputs not in (None, INVALID) and isinstance(v["segments"], dict):  # v2 E.3
        spends = outputs.spend if outputs.spend is not None else any(
            seg.spends or any(getattr(e, "cost", 0.0) for e in getattr(seg.leads, "events", ()))
            for seg in v["segments"].values() if seg is not INVALID)
        has |= ({"leads"} if outputs.leads or spends else set()) | ({"spend"} if spends else set())
    has |= _commission_extra_metrics(v)
    if targets not in (None, INVALID):
        for metric in targets:
            if metric not in has and metric != "commission":
                ok = False
                ctx.error(path + ("targets", metric), f"names {metric}, which this scenario does not report "
                                                      "(it needs a customer block or a stage value; "
                                                      "stage_entries.<stage> and losses.<stage> need that output "
                                                      "under outputs and a stage of stages; leads and spend need "
                                                      "that output, spend also a cost or a budget; spif, "
                                                      "clawback, net_commission, payout and commission_expense "
                                                      "the commission key that produces them)")
    return ok


def _commission_extra_metrics(v: dict[str, Any]) -> set:
    """v2 D.6: the metrics the commission extras of the scenario produce."""
    plan, team = v["commission"], v["team"]
    if plan in (None, INVALID):
        return set()
    drawn = plan.draw is not None or (team not in (None, INVALID) and any(r.draw is not None for r in team["reps"]))
    return {name for name, on in (("spif", bool(plan.spifs)), ("clawback", plan.clawback is not None),
                                  ("net_commission", bool(plan.spifs) or plan.clawback is not None),
                                  ("payout", drawn), ("commission_expense", plan.amortize_months is not None)) if on}


def _horizon(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    if v["start"] is INVALID or v["end"] is INVALID:
        return True
    if v["end"] < v["start"]:
        ctx.error(path + ("end",), f"must be on or after start ({v['start'].isoformat()}); "
                                   f"got {v['end'].isoformat()}")
        return False
    return True


PASS_THROUGH = Stage(convert=Distribution.fixed(1.0), days=Distribution.fixed(0.0))
"""A stage a segment does not pass (v2 F4): converting at once, which is equal in
distribution to skipping it."""


def _own_stages(name: str, seg: Segment, stages: list, path: Path, ctx: Context) -> bool:
    """v2 F4: a segment's ``stages`` name stages of the scenario, in its order."""
    own = seg.stages
    if own is None:
        return True
    at = path + ("segments", name, "stages")
    ok = True
    for i, stage in enumerate(own):
        if stage not in stages:
            ok = False
            ctx.error(at + (i,), f"names {stage!r}, which is not one of the stages{suggest(stage, stages)}; "
                                 f"stages: {', '.join(stages)}")
    if ok:
        for a, b in zip(own, own[1:]):
            if stages.index(a) > stages.index(b):
                ok = False
                ctx.error(at, f"must keep the order of stages: {a} comes after {b}")
                break
    return ok


def _funnels_match_stages(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    stages, segments = v["stages"], v["segments"]
    if stages is INVALID or segments is INVALID:
        return True
    ok = True
    for name, seg in segments.items():
        if not _own_stages(name, seg, stages, path, ctx):
            ok = False
            continue
        funnel, own = seg.funnel, seg.stages or stages
        for stage in own:
            if stage not in funnel:
                ok = False
                ctx.error(path + ("segments", name, "funnel", stage),
                          "is missing: every stage in `stages` needs a funnel entry {convert: ..., days: ...}"
                          if seg.stages is None else
                          f"is missing: every stage in segments.{name}.stages needs a funnel entry "
                          "{convert: ..., days: ...}")
        for stage in funnel:
            if stage not in stages:
                ok = False
                ctx.error(path + ("segments", name, "funnel", stage),
                          f"is not one of the stages{suggest(stage, stages)}; stages: {', '.join(stages)}")
            elif stage not in own:
                ok = False
                ctx.error(path + ("segments", name, "funnel", stage),
                          f"{name} does not pass {stage}: its stages are {', '.join(own)}")
    if ok:  # keep each funnel in the order of `stages`, the stages a segment does not pass written in
        for name, seg in segments.items():
            segments[name] = replace(seg, funnel={s: seg.funnel.get(s, PASS_THROUGH) for s in stages},
                                     stages=tuple(seg.stages) if seg.stages is not None else None)
    return ok and _moves(v, path, ctx)


def _moves(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    """v2 B.5, on funnels that match the stages: each move's target, the shares' upper ends,
    and absorption with every probability at its mean."""
    stages, ok = v["stages"], True

    def bad(where: Path, message: str) -> None:
        nonlocal ok
        ok = False
        ctx.error(where, message)

    for name, seg in v["segments"].items():
        own = list(seg.stages or stages)
        for k, stage in enumerate(own):
            moves = seg.funnel[stage].moves
            at = path + ("segments", name, "funnel", stage, "moves")
            seen: set = set()
            for i, move in enumerate(moves):
                where = at + (i, "to")
                if move.to == stage:
                    bad(where, "a move to the same stage is time in the stage: write it in days")
                elif move.to == WON and k == len(own) - 1:
                    bad(where, f"won from {stage}, the segment's last stage, is its convert: "
                                          "a move to won belongs on an earlier stage")
                elif move.to != WON and move.to not in own:
                    hint = (f"segment {name} does not pass {move.to}" if move.to in stages
                            else f"names {move.to!r}, which is not a stage{suggest(move.to, own)}")
                    bad(where, f"{hint}; a move goes to one of {', '.join(own)}, or won")
                elif k + 1 < len(own) and move.to == own[k + 1]:
                    bad(where, f"{move.to} is the next stage: that is convert (a move goes back, "
                                          "skips ahead, or to won)")
                elif move.to in seen:
                    bad(where, f"names {move.to} a second time; one move per target stage")
                seen.add(move.to)
            highs = [m.share.support()[1] for m in moves]
            if sum(highs) > 1.0 + 1e-12:
                bad(at, f"the shares of {'.'.join(map(str, at))} can sum to {fmt_number(sum(highs))} "
                                   f"(upper ends {' + '.join(fmt_number(h) for h in highs)}); they must stay "
                                   "<= 1 whatever is drawn")
        if ok and seg.has_moves:
            Q, _ = chain.at_means(seg, stages)
            if not chain.absorbed(Q):
                loop = chain.loop_stages(Q, stages)
                bad(path + ("segments", name, "funnel"),
                               f"stages {' and '.join(loop) if len(loop) < 3 else ', '.join(loop)} form a loop "
                               "that no lead leaves (with every probability at its mean)")
    return ok


def _events(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    """v2 F2: each event's date inside the horizon, its stage one the segment passes."""
    segments, stages, start, end = v["segments"], v["stages"], v["start"], v["end"]
    if segments is INVALID:
        return True
    ok = True
    for name, seg in segments.items():
        own = seg.stages or (stages if stages is not INVALID else None)
        for i, event in enumerate(seg.leads.events):
            at = path + ("segments", name, "leads", "events", i)
            if start is not INVALID and end is not INVALID and not start <= event.date <= end:
                ok = False
                ctx.error(at + ("date",), f"must be within the horizon, from start ({start.isoformat()}) to end "
                                          f"({end.isoformat()}); got {event.date.isoformat()}")
            if event.stage is None or stages is INVALID:
                continue
            if event.stage not in stages:
                ok = False
                ctx.error(at + ("stage",), f"names {event.stage!r}, which is not one of the stages"
                                           f"{suggest(event.stage, stages)}; stages: {', '.join(stages)}")
            elif own is not None and event.stage not in own:
                ok = False
                ctx.error(at + ("stage",), f"names {event.stage}, which segment {name} does not pass: its stages are "
                                           f"{', '.join(own)}")
    return ok


def _team_and_commission(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    team, commission, segments, targets = v["team"], v["commission"], v["segments"], v["targets"]
    ok = True
    if commission is not None and team is None:
        ok = False
        ctx.error(path + ("commission",), "needs a team: add team.reps (name, segments, quota) "
                                          "for the plan to pay")
    if targets not in (None, INVALID) and "commission" in targets and commission is None:
        ok = False
        ctx.error(path + ("targets", "commission"), "needs a commission plan: there is no `commission`")
    ok = _commission_extras(v, path, ctx) and ok
    if team in (None, INVALID) or segments is INVALID:
        return ok
    covered = set()
    for i, rep in enumerate(team["reps"]):
        for j, seg in enumerate(rep.segments):
            if seg not in segments:
                ok = False
                ctx.error(path + ("team", "reps", i, "segments", j),
                          f"names {seg!r}, which is not a segment{suggest(seg, segments)}; "
                          f"segments: {', '.join(segments)}")
            covered.add(seg)
    for seg in segments:
        if seg not in covered:
            ok = False
            ctx.error(path + ("team", "reps"), f"cover no rep for segment {seg!r}: with a team, every "
                                               "segment needs at least one rep to receive its deals")
    return ok


def _commission_extras(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    """v2 D.6: what the commission extras need: a rep's draw a plan, a spif known segments
    (and, with a capacity, a customer block, which makes the team admit deals one by one), a
    clawback a way for customers to be lost."""
    team, commission, segments = v["team"], v["commission"], v["segments"]
    ok = True
    if team not in (None, INVALID) and commission is None:
        for i, rep in enumerate(team["reps"]):
            if rep.draw is not None:
                ok = False
                ctx.error(path + ("team", "reps", i, "draw"), "needs a commission plan: a draw is an advance "
                                                              "against commission; add commission or remove it")
    if commission in (None, INVALID) or segments in (None, INVALID):
        return ok
    for i, spif in enumerate(commission.spifs):
        for j, seg in enumerate(spif.segments):
            if seg not in segments:
                ok = False
                ctx.error(path + ("commission", "spifs", i, "segments", j),
                          f"names {seg!r}, which is not a segment{suggest(seg, segments)}; "
                          f"segments: {', '.join(segments)}")
    customers = any(seg.customer is not None for seg in segments.values() if seg is not INVALID)
    if commission.spifs and v["capacity"] not in (None, INVALID) and not customers:
        ok = False
        ctx.error(path + ("commission", "spifs"), "cannot be combined with capacity yet, unless a segment has a "
                                                  "customer block (then the team admits deals one by one and each "
                                                  "deal's win day is known); remove one")
    if commission.clawback is not None and not any(
            seg.customer is not None and (seg.customer.cancel is not None or seg.customer.subscription is not None)
            for seg in segments.values() if seg is not INVALID):
        ok = False
        ctx.error(path + ("commission", "clawback"), "needs a way for customers to be lost: customer.cancel or "
                                                     "customer.subscription in some segment")
    return ok


def _outputs_need(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    """Outputs that need another key (v2 F12: coverage needs a pipeline), or that cannot be
    combined with one yet (cycle_days with a capacity; by_source with a capacity that shares
    a month's room between sources by value, without customers)."""
    outputs = v["outputs"]
    if outputs not in (None, INVALID) and outputs.cycle_days and v["capacity"] not in (None, INVALID):
        ctx.error(path + ("outputs", "cycle_days"), "cannot be combined with capacity yet (a deal the team's capacity "
                                                    "makes wait is won later than its cycle): remove one")
        return False
    segments = v["segments"]
    if outputs not in (None, INVALID) and outputs.by_source and v["capacity"] not in (None, INVALID) \
            and segments not in (None, INVALID) and not any(seg.customer for seg in segments.values()):
        ctx.error(path + ("outputs", "by_source"), "cannot be combined with capacity yet, unless a segment has a "
                                                   "customer block (then the team admits deals one by one): a "
                                                   "month's room is shared between sources by value, so a source's "
                                                   "revenue would not be its own deals'; remove one")
        return False
    if outputs in (None, INVALID) or not outputs.coverage or v["pipeline"] not in (None, INVALID):
        return True
    ctx.error(path + ("outputs", "coverage"), "needs a pipeline: coverage is the open deals' value against quota; "
                                              "add pipeline: {file: ...} or remove it")
    return False


NOT_BUILT_OUTPUTS: tuple[str, ...] = ()
"""Outputs whose results the engine does not give yet: asking for one is refused, never ignored."""
MOVES_BUILT = True
"""Whether the engine simulates ``moves`` (v2 B); until it does, a file with moves is refused."""


def _built(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    """Refuse what the format accepts but the engine does not simulate yet, rather than
    give numbers that ignore it."""
    ok = True
    outputs, segments = v["outputs"], v["segments"]
    if outputs not in (None, INVALID):
        for key in NOT_BUILT_OUTPUTS:
            if getattr(outputs, key):
                ok = False
                ctx.error(path + ("outputs", key), "is not produced by this version of forecaster yet; remove it")
    if not MOVES_BUILT and segments not in (None, INVALID):
        for name, seg in segments.items():
            for stage, entry in seg.funnel.items():
                if entry.moves:
                    ok = False
                    ctx.error(path + ("segments", name, "funnel", stage, "moves"),
                              "are not simulated by this version of forecaster yet; remove them")
    return ok


SCENARIO = Record(
    name="a scenario",
    checks=(_horizon, _events, same_as.resolve, _funnels_match_stages, _team_and_commission, _shocked_stages, _after_sale, _outputs_need,
            _built),
    schema_extra={"title": "forecaster scenario",
                  "$schema": "https://json-schema.org/draft/2020-12/schema"},
    fields={
        "name": Field(Text(doc="Short identifier, used in outputs."), required=True),
        "description": Field(Text(doc="Free text.")),
        "start": Field(Date(doc="First day simulated (inclusive)."), required=True),
        "end": Field(Date(doc="Last day simulated (inclusive)."), required=True),
        "report_by": Field(Choice(REPORT_BY, doc="Calendar periods of the outputs (weeks start on Monday)."),
                           default="month"),
        "fiscal_year_start": Field(Num(lo=1, hi=12, integer=True, what="a month number (1-12)",
                                       doc="Month the fiscal year starts in: quarters (reporting and "
                                           "commission periods, quarter-end closing, capacity's quarter "
                                           "shape) follow it, labelled FY27 Q1 (named by the year the "
                                           "fiscal year ends in). Default: calendar quarters.")),
        "currency": Field(Text(doc="Label only.")),
        "trials": Field(Num(lo=1, integer=True, doc="Number of Monte Carlo trials."), default=10000),
        "seed": Field(Num(lo=0, integer=True, doc="Seed: same scenario, seed and trials give the same numbers."),
                      default=0),
        "stages": Field(ListOf(Name("a stage name"), min_items=1, unique=True,
                               doc="Ordered open stages; leaving the last by converting is a win."), required=True),
        "segments": Field(MapOf(Name("a segment name"), SEGMENT, min_items=1), required=True),
        "pipeline": Field(Record(name="a pipeline mapping",
                                 fields={"file": Field(Text(doc="CSV of open deals, relative to the scenario."),
                                                       required=True)})),
        "team": Field(TEAM),
        "commission": Field(COMMISSION),
        "targets": Field(MapOf(TargetMetric(TARGET_METRICS), Num(what="a threshold"),
                               doc="Metric -> threshold; reports P(total >= threshold)."), default={}),
        "shocks": Field(SHOCKS),
        "closing": Field(CLOSING),
        "capacity": Field(CAPACITY),
        "stalled": Field(STALLED, default={}),
        "clv": Field(CLV, default=Clv()),
        "regular_from": Field(Num(lo=2, hi=1e9, integer=True, what="a whole number of purchases",
                                  doc="A customer is regular from this purchase on (v2 A.3)."), default=3),
        "outputs": Field(OUTPUTS, default=Outputs()),
        "customers": Field(Record(name="a customers mapping",
                                  fields={"file": Field(Text(doc="CSV of the installed base at start, relative "
                                                                 "to the scenario (v2 A.5)."), required=True)})),
    },
)


def json_schema() -> JSONSchema:
    """The scenario format as a JSON Schema (draft 2020-12) document."""
    schema = SCENARIO.json_schema()
    schema["description"] = ("A forecaster scenario: leads, funnel stages, deal values, an open "
                             "pipeline, a team and its commission plan. See scenario-format.md.")
    return schema


__all__ = ["SCENARIO", "json_schema", "METRICS", "REPORT_BY", "show"]
