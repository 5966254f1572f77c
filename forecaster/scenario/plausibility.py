"""Values the format allows that read more like a slip than a plan: said, never refused.

A commission tier's ``rate: 8`` pays 800% of its band's bookings; the format allows any rate
>= 0 (an accelerator above 1 is rare, not wrong), but 8 written for 8% is the likelier
reading, and nothing else would catch it: the run pays the cap and looks plausible. Each
check names the key path, the value and its likely intent. Nothing here changes a number:
``run``, ``validate`` and ``compare`` print each as a warning."""
from __future__ import annotations

from forecaster.scenario.model import Scenario
from forecaster.scenario.validation import fmt_number

SEASON_MAX = 5.0
"""A month's lead multiplier above this reads as a percentage (70 for +70%)."""


def implausible(sc: Scenario) -> list[str]:
    """What in ``sc`` reads like a percentage written as a number (key path, value, what it
    does, what was likely meant); empty when nothing does."""
    out = []

    def said(path: str, value: float, does: str, meant: str) -> None:
        out.append(f"{path} is {fmt_number(value)}: {does}; a percentage written as a number? ({meant})")

    if sc.commission is not None:
        for i, tier in enumerate(sc.commission.tiers):
            if tier.rate > 1:
                said(f"commission.tiers[{i}].rate", tier.rate, f"it pays {tier.rate:.0%} of the band's bookings",
                     "8% is 0.08")
        for i, spif in enumerate(sc.commission.spifs):
            if spif.rate is not None and spif.rate > 1:
                said(f"commission.spifs[{i}].rate", spif.rate, f"it pays {spif.rate:.0%} of each deal's value",
                     "5% is 0.05")
    for name, seg in sc.segments.items():
        for month, factor in sorted(seg.leads.seasonality.items(), key=lambda kv: (str(type(kv[0])), kv[0])):
            if factor > SEASON_MAX:
                said(f"segments.{name}.leads.seasonality.{month}", factor,
                     f"that month brings {fmt_number(factor)} times the leads", "+70% is 1.7")
        sub = seg.customer.subscription if seg.customer is not None else None
        if sub is not None and sub.expansion.mean() > 1:
            mean = sub.expansion.mean()
            said(f"segments.{name}.customer.subscription.expansion", mean,
                 f"each renewal multiplies the value by {fmt_number(round(1 + mean, 6))} (mean)", "10% is 0.1")
    return out
