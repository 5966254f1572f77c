"""The largest inputs the engine guarantees to compute exactly, checked before a run.

The format lets any non-negative rate, value or growth through; the engine counts won deals
in 32-bit integers, adds values in 64-bit floats and draws every lead one by one. So a
scenario whose *expected* sizes pass these limits is refused up front, with the key path,
instead of returning zeros, overflowed infinities or ``null`` statistics:

* :data:`MAX_LEADS` expected leads a trial over the horizon, all segments together (rates
  with their growth compounded, seasonality and bought leads at the mean cost per lead, and
  the mean counts of dated lead events, v2 F2);
* :data:`MAX_VALUE` for the mean of a deal value, a pipeline deal's amount, a lead budget
  a month, a quota, a commission cap, a draw and a spif's amount and budget [currency];
* :data:`MAX_RATE` for a commission tier's rate (a fraction of bookings) and a spif's;
* :data:`MAX_TRIALS` trials.

Expected sizes are used, so a heavy-tailed rate whose mean passes may still draw a rare
large trial; means that are infinite (a lognormal value with sigma 40) are refused.
"""
from __future__ import annotations

import functools
import math
from datetime import date, timedelta

from forecaster.calendar import months_after
from forecaster.scenario.distributions import Distribution
from forecaster.scenario.validation import INVALID, Context, fmt_number

MAX_LEADS = 1e8
"""Expected leads a trial over the horizon, all segments (won deals are 32-bit counts)."""
MAX_VALUE = 1e15
"""Largest mean deal value, pipeline amount, monthly budget, quota or cap [currency]."""
MAX_RATE = 10.0
"""Largest commission rate (1000% of bookings)."""
MAX_TRIALS = 100_000_000
"""Most trials a run may ask for."""
MIN_TRIALS = 2
"""Fewest trials: a standard deviation and the mean's interval need two."""
MAX_SHOCK = {"leads": 3.0, "drift.leads": 1.0, "convert": 10.0, "drift.convert": 5.0}
"""Largest sigmas of the shared shocks (``shocks``): a lead shock of sigma 3 already moves a
trial's leads by a factor of e^±9 at three sigmas; beyond, the multipliers overflow."""
MIN_CAPACITY_CV, MAX_CAPACITY_CV = 1e-6, 10.0
"""A capacity's ``cv`` is 0 (none) or in this range (a gamma of shape 1 / cv^2)."""

AVG_MONTH_DAYS = 30.4375


def _months(start: date, end: date) -> list[tuple[int, int, int]]:
    """(year, month, days of the horizon in it) for each calendar month the horizon touches."""
    out, day = [], start
    while day <= end:
        last = (date(day.year, day.month + 1, 1) - timedelta(days=1)) if day.month < 12 else date(day.year, 12, 31)
        upto = min(last, end)
        out.append((day.year, day.month, (upto - day).days + 1))
        if upto == date.max:
            break
        day = upto + timedelta(days=1)
    return out


def expected_leads(leads, start: date, end: date) -> float:
    """Expected leads of one segment from ``start`` to ``end``: month by month, the mean
    rate per day times the month's days in the horizon and its seasonality, compounded by
    the mean growth from the first month; bought leads at budget x E[1 / cost]
    (:func:`inverse_mean`), the month's budget through the response curve at its means (v2 C).
    inf where it overflows."""
    import calendar

    src = leads.source
    growth = leads.growth_per_month.mean() if leads.growth_per_month is not None else 0.0
    log_growth = math.log1p(growth) if growth > -1 else -math.inf
    total = 0.0
    for k, (year, month, days) in enumerate(_months(start, end)):
        month_days = calendar.monthrange(year, month)[1]
        if src == "per_day":
            rate = leads.per_day.mean()
        elif src == "per_week":
            rate = leads.per_week.mean() / 7
        elif src == "per_month":
            rate = leads.per_month.mean() / month_days
        else:
            rate = _bought(leads, month) * inverse_mean(leads.cost_per_lead) / month_days
        rate *= leads.seasonality.get(month, 1.0) * days
        if rate <= 0:
            continue
        log = math.log(rate) + (k * log_growth if k else 0.0)
        if log > 700:
            return math.inf
        total += math.exp(log)
    return total


MAX_BUDGET_RATIO = 1e12
"""v2 C: how far from the reference budget a month's budget may be (either way): a response
curve is read between the two, and beyond that its powers would overflow."""


def _response_limits(name: str, seg, ctx) -> None:
    """v2 C: every month's nonzero budget within :data:`MAX_BUDGET_RATIO` of the reference."""
    response = seg.leads.response
    if response is None:
        return
    b0 = response.reference_budget
    budgets = [seg.leads.budget_per_month or 0.0, *seg.leads.budget_by_month.values()]
    far = [b for b in budgets if b > 0 and not 1 / MAX_BUDGET_RATIO <= b / b0 <= MAX_BUDGET_RATIO]
    if far:
        ctx.error(("segments", name, "leads", "response", "reference_budget"),
                  f"must be within a factor of {MAX_BUDGET_RATIO:g} of every monthly budget (the curve is read "
                  f"between them); got {fmt_number(b0)} against a budget of {fmt_number(far[0])}")


def _bought(leads, month: int) -> float:
    """The budget whose leads calendar month ``month`` buys at the cost per lead [currency]: the
    month's budget, or with a response (v2 C) B0 g(B) / g(B0) at the curve's means."""
    budget, response = leads.budget(month), leads.response
    if response is None or budget == 0.0:
        return budget
    b0, x = response.reference_budget, budget / response.reference_budget
    if response.curve == "power":
        return b0 * x ** response.elasticity.mean()
    n = response.slope.mean() if response.slope is not None else 1.0
    half = response.half_saturation.mean()
    a, b = n * (math.log(half) - math.log(b0) if half > 0 else -math.inf), n * math.log(x)
    if a == -math.inf:
        return b0
    return b0 * math.exp(min(b + _softplus(-a) - _softplus(b - a), 700.0))


def _softplus(z: float) -> float:
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def inverse_mean(dist) -> float:
    """E[1 / X] of a cost per lead, the leads a currency unit buys: exact for a fixed value
    and for resampled values; otherwise over the quantiles 1e-6 to 1 - 1e-9 (the lowest
    millionth of costs counted at their 1e-6 quantile), so that a cost that can come near 0
    (lognormal sigma 40, a gamma of cv 1e10) shows as the flood of leads it would buy. inf
    when a cost can be 0."""
    import numpy as np

    if dist.dist == "fixed":
        return 1.0 / dist["value"] if dist["value"] > 0 else math.inf
    if dist.dist == "empirical":
        values = np.asarray(dist["values"], dtype=float)
        return float(np.mean(1.0 / values)) if np.all(values > 0) else math.inf
    return _inverse_mean_over_quantiles(dist.dist, tuple(sorted(dist.params.items())), dist.lower, dist.upper)


@functools.lru_cache(maxsize=256)
def _inverse_mean_over_quantiles(family: str, params: tuple, lower: float, upper: float) -> float:
    """:func:`inverse_mean` of a parametric family, by its parameters (remembered: a
    sensitivity reads the same cost ~80 times, and each costs 4 ms of quantiles)."""
    import numpy as np

    u = np.linspace(1e-6, 1 - 1e-9, 20001)
    with np.errstate(all="ignore"):
        q = np.asarray(Distribution(family, dict(params), lower, upper)._scipy().ppf(u), dtype=float)
        if not np.all(q > 0) or not np.all(np.isfinite(1.0 / q)):
            return math.inf
        return float(np.mean(1.0 / q))


def check_limits(values: dict, deals, ctx: Context) -> None:
    """Report, on ``ctx``, every part of a validated scenario past the engine's limits.

    ``values``: the checked top-level values (:data:`forecaster.scenario.schema.SCENARIO`); parts
    already invalid are skipped. ``deals``: the pipeline's deals (their ``amount``).
    """
    trials = values.get("trials")
    if isinstance(trials, int) and trials > MAX_TRIALS:
        ctx.error(("trials",), f"must be at most {MAX_TRIALS:,}; got {trials:,}")
    elif isinstance(trials, int) and trials < MIN_TRIALS:
        ctx.error(("trials",), f"must be at least {MIN_TRIALS}: a standard deviation and the mean's interval need "
                               f"two; got {trials}")
    shocks = values.get("shocks")
    if shocks and shocks is not INVALID:
        for kind, path, sigma in [("leads", ("leads",), shocks.leads),
                                  ("drift.leads", ("drift", "leads"), shocks.drift_leads),
                                  *(("convert", ("convert", k), v) for k, v in shocks.convert.items()),
                                  *(("drift.convert", ("drift", "convert", k), v)
                                    for k, v in shocks.drift_convert.items())]:
            if sigma > MAX_SHOCK[kind]:
                ctx.error(("shocks", *path), f"must be at most {MAX_SHOCK[kind]:g}; got {fmt_number(sigma)}")
    cap = values.get("capacity")
    if cap and cap is not INVALID:
        top = cap.won_per_month * max([1.0, *cap.quarter_shape.values()])
        if not top <= MAX_LEADS:
            ctx.error(("capacity", "won_per_month"), f"times the largest quarter_shape is {_show(top)} wins a month; "
                                                     f"the engine counts at most {MAX_LEADS:g}")
        if cap.cv and not MIN_CAPACITY_CV <= cap.cv <= MAX_CAPACITY_CV:
            ctx.error(("capacity", "cv"), f"must be 0 (none) or from {MIN_CAPACITY_CV:g} to {MAX_CAPACITY_CV:g}; "
                                          f"got {fmt_number(cap.cv)}")
    segments, start, end = values.get("segments"), values.get("start"), values.get("end")
    if isinstance(segments, dict) and isinstance(start, date) and isinstance(end, date) and start <= end:
        total, worst = 0.0, None
        for name, seg in segments.items():
            if seg is INVALID:
                continue
            n = expected_leads(seg.leads, start, end) + sum(e.count.mean() for e in seg.leads.events)  # v2 F2
            total += n
            if worst is None or n > worst[1]:
                worst = (name, n)
            value = seg.deal_value.mean()
            if not value <= MAX_VALUE:
                ctx.error(("segments", name, "deal_value"),
                          f"has a mean of {_show(value)}; the engine adds values exactly up to a mean deal "
                          f"value of {MAX_VALUE:g} (a larger one would overflow the revenue)")
            _after_sale_limits(name, seg, start, end, ctx)
            for i, event in enumerate(seg.leads.events):  # v2 F2: spend adds event costs exactly
                if event.cost > MAX_VALUE:
                    ctx.error(("segments", name, "leads", "events", i, "cost"),
                              f"must be at most {MAX_VALUE:g}; got {fmt_number(event.cost)}")
            budgets = [(("budget_per_month",), seg.leads.budget_per_month),
                       *((("budget_by_month", str(m)), b) for m, b in seg.leads.budget_by_month.items())]
            if seg.leads.response is not None:
                budgets.append((("response", "reference_budget"), seg.leads.response.reference_budget))
            for key, budget in budgets:
                if budget is not None and budget > MAX_VALUE:
                    ctx.error(("segments", name, "leads", *key),
                              f"must be at most {MAX_VALUE:g}; got {fmt_number(budget)}")
            _response_limits(name, seg, ctx)
            cost = seg.cost
            if cost is not None:  # v2 E.2: spend is added up exactly
                for part, amount in (("per_lead", cost.per_lead.mean() if cost.per_lead else 0.0),
                                     ("per_month", cost.per_month), ("per_won", cost.per_won)):
                    if not amount <= MAX_VALUE:
                        ctx.error(("segments", name, "cost", part), f"must be at most {MAX_VALUE:g}"
                                  f"{' on average' if part == 'per_lead' else ''}; got {_show(amount)}")
        if not total <= MAX_LEADS and worst is not None:
            key = worst[0]
            ctx.error(("segments", key, "leads"),
                      f"brings {_show(worst[1])} leads a trial over the horizon on average (all segments: "
                      f"{_show(total)}); the engine draws every lead and counts won deals in 32-bit integers, "
                      f"so it takes at most {MAX_LEADS:g} a trial (check the rate, its unit, growth_per_month "
                      f"and cost_per_lead)")
    for deal in deals or ():
        if deal.amount is not None and not abs(deal.amount) <= MAX_VALUE:
            ctx.error(("pipeline", "file"), f"deal {deal.deal_id!r} has an amount of {_show(deal.amount)}; "
                                            f"the engine takes amounts up to {MAX_VALUE:g}")
            break
    team = values.get("team")
    if team and team is not INVALID:
        for i, rep in enumerate(team.get("reps") or ()):
            if rep is not INVALID and rep.quota > MAX_VALUE:
                ctx.error(("team", "reps", i, "quota"), f"must be at most {MAX_VALUE:g}; got {fmt_number(rep.quota)}")
    commission = values.get("commission")
    if commission and commission is not INVALID:
        for i, tier in enumerate(commission.tiers):
            if tier.rate > MAX_RATE:
                ctx.error(("commission", "tiers", i, "rate"),
                          f"must be at most {MAX_RATE:g} (a fraction of bookings: 0.1 is 10%); got "
                          f"{fmt_number(tier.rate)}")
        if commission.cap is not None and commission.cap > MAX_VALUE:
            ctx.error(("commission", "cap"), f"must be at most {MAX_VALUE:g}; got {fmt_number(commission.cap)}")
        _commission_extra_limits(commission, team, ctx)


def _commission_extra_limits(commission, team, ctx: Context) -> None:
    """v2 D: the draws' and spifs' amounts the engine adds exactly (:data:`MAX_VALUE`), and a
    spif's rate (:data:`MAX_RATE`)."""
    amounts: list[tuple[tuple, float | None]] = [
        (("commission", "draw", "amount"), commission.draw.amount if commission.draw else None)]
    if team and team is not INVALID:
        amounts += [(("team", "reps", i, "draw", "amount"), rep.draw.amount)
                    for i, rep in enumerate(team.get("reps") or ()) if rep is not INVALID and rep.draw is not None]
    for i, spif in enumerate(commission.spifs):
        amounts += [(("commission", "spifs", i, "per_deal"), spif.per_deal),
                    (("commission", "spifs", i, "budget"), spif.budget)]
        if spif.rate is not None and spif.rate > MAX_RATE:
            ctx.error(("commission", "spifs", i, "rate"), f"must be at most {MAX_RATE:g} (a fraction of the deal's "
                                                          f"value: 0.01 is 1%); got {fmt_number(spif.rate)}")
    for path, amount in amounts:
        if amount is not None and amount > MAX_VALUE:
            ctx.error(path, f"must be at most {MAX_VALUE:g}; got {fmt_number(amount)}")


MAX_PURCHASES_PER_MONTH = 1000.0
"""Largest mean repeat purchases per customer month (about 33 a day): the engine draws every one."""


def _after_sale_limits(name: str, seg, start: date, end: date, ctx: Context) -> None:
    """The after-sale keys' sizes (v2 A, F11): values and rates the engine adds and draws exactly."""
    at = ("segments", name)
    for stage, entry in seg.funnel.items():
        if getattr(entry, "value", None) is not None and not entry.value.mean() <= MAX_VALUE:
            ctx.error(at + ("funnel", stage, "value"), f"has a mean of {_show(entry.value.mean())}; the engine adds "
                                                       f"values exactly up to a mean of {MAX_VALUE:g}")
    customer = getattr(seg, "customer", None)
    if customer is None:
        return
    rep = customer.repeat
    if rep is not None:
        if rep.value is not None and not rep.value.mean() <= MAX_VALUE:
            ctx.error(at + ("customer", "repeat", "value"), f"has a mean of {_show(rep.value.mean())}; the engine "
                                                            f"adds values exactly up to a mean of {MAX_VALUE:g}")
        if not rep.per_month.mean() <= MAX_PURCHASES_PER_MONTH:
            ctx.error(at + ("customer", "repeat", "per_month"),
                      f"has a mean of {_show(rep.per_month.mean())} purchases a customer month; the engine draws "
                      f"every purchase and takes at most {MAX_PURCHASES_PER_MONTH:g}")
    sub = customer.subscription
    if sub is not None:
        # the value after every renewal the horizon can hold, at the mean expansion
        renewals = (months_after(start, end) + 1) / sub.term_months + 1
        growth = sub.expansion.mean()
        log_growth = renewals * math.log1p(growth) + math.log(max(seg.deal_value.mean(), 1e-300)) if growth > -1 \
            else -math.inf
        with_growth = math.exp(log_growth) if log_growth < 709.0 else math.inf
        if not with_growth <= MAX_VALUE:
            ctx.error(at + ("customer", "subscription", "expansion"),
                      f"has a mean of {_show(growth)}: over the horizon's {renewals:.0f} renewals a mean deal would "
                      f"grow to {_show(with_growth)}; the engine adds values exactly up to {MAX_VALUE:g}")


def _show(x: float) -> str:
    return "infinity" if math.isinf(x) else f"{x:.3g}"
