"""The distributions a scenario may use, and the roles a quantity can play.

A quantity is a plain number or a mapping ``{dist: NAME, ...parameters}``. What may be
given depends on the quantity's *role*: a probability must stay in [0, 1], a rate or a
number of days cannot be negative, a cost per lead must be positive, a monthly growth must
stay above -1. ``normal`` is the one family whose support is cut to the role's range
(conditioned, not clipped); every other family must have its support inside it.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from forecaster.scenario.validation import (
    INVALID,
    Context,
    JSONSchema,
    ListOf,
    Node,
    Num,
    fmt_number,
    show,
    suggest,
    unsafe_character,
)
from forecaster.scenario.yamlio import Path

Params: TypeAlias = dict[str, Any]
"""A family's parameters by name: numbers, and a tuple of numbers for ``empirical`` values."""


def _positive(doc: str = "") -> Num:
    """A number > 0."""
    return Num(lo=0.0, lo_open=True, doc=doc)


PARAMETERS: dict[str, dict[str, Node]] = {
    "fixed": {"value": Num(doc="The value.")},
    "uniform": {"low": Num(), "high": Num()},
    "triangular": {"low": Num(), "mode": Num(), "high": Num()},
    "pert": {"low": Num(), "mode": Num(), "high": Num()},
    "normal": {"mean": Num(), "sd": _positive()},
    "lognormal": {"median": _positive(), "sigma": _positive("Standard deviation of the log.")},
    "gamma": {"mean": _positive(), "cv": _positive("Coefficient of variation.")},
    "exponential": {"mean": _positive()},
    "weibull": {"shape": _positive(), "scale": _positive()},
    "beta": {"mean": Num(lo=0.0, hi=1.0, lo_open=True, hi_open=True),
             "concentration": _positive("alpha + beta.")},
    "empirical": {"values": ListOf(Num(), min_items=1, doc="Observed values, resampled with replacement.")},
}
"""Parameters of each family, with the constraint on each."""

DESCRIPTIONS = {
    "fixed": "that value",
    "uniform": "uniform on [low, high]",
    "triangular": "triangular on [low, high] with its peak at mode",
    "pert": "beta-PERT on [low, high] with mode (lambda 4)",
    "normal": "normal; truncated (conditioned) to the quantity's range",
    "lognormal": "lognormal: median * exp(sigma * Z)",
    "gamma": "gamma with the given mean and coefficient of variation",
    "exponential": "exponential with the given mean",
    "weibull": "Weibull with shape and scale",
    "beta": "beta with mean and concentration alpha + beta",
    "empirical": "resamples the listed values with replacement",
}


def _ordered(values: Params, path: Path, ctx: Context) -> bool:
    low, high, mode = values["low"], values["high"], values.get("mode")
    if low is INVALID or high is INVALID or mode is INVALID:
        return True
    if not low < high:
        ctx.error(path + ("high",), f"must be greater than low ({fmt_number(low)}); got {fmt_number(high)}")
        return False
    if mode is not None and not low <= mode <= high:
        ctx.error(path + ("mode",), f"must lie in [low, high] = [{fmt_number(low)}, {fmt_number(high)}]; "
                                    f"got {fmt_number(mode)}")
        return False
    return True


CHECKS: dict[str, Callable[[Params, Path, Context], bool]] = {
    "uniform": _ordered, "triangular": _ordered, "pert": _ordered}

MIN_GAMMA_CV, MAX_GAMMA_CV = 1e-6, 1e3
"""The gamma ``cv`` accepted: its shape 1 / cv^2 is then from 1e-6 to 1e12; beyond, the
shape overflows (a cv of 1e-200 would be a shape of 1e400, one of 1e300 raised)."""


@dataclass(frozen=True)
class Role:
    """What a quantity means, which fixes its allowed range and families."""

    what: str                    # "a probability"
    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    families: tuple[str, ...] = tuple(PARAMETERS)

    def num(self) -> Num:
        return Num(lo=None if self.lo == -math.inf else self.lo,
                   hi=None if self.hi == math.inf else self.hi,
                   lo_open=self.lo_open, hi_open=self.hi_open, what=self.what)


PROBABILITY = Role("a probability", 0.0, 1.0,
                   families=("fixed", "uniform", "triangular", "pert", "beta", "empirical", "normal"))
NONNEGATIVE = Role("a number", 0.0, math.inf)
POSITIVE = Role("a number", 0.0, math.inf, lo_open=True)
GROWTH = Role("a growth rate", -1.0, math.inf, lo_open=True)
ELASTICITY = Role("an elasticity", 0.0, 1.0, lo_open=True, families=PROBABILITY.families)
"""v2 C: a power response's exponent, in (0, 1]."""


@dataclass(frozen=True)
class Distribution:
    """A validated quantity: a family, its parameters, and (for normal) its truncation.

    Attributes
    ----------
    dist : str
        Family name, a key of :data:`PARAMETERS`.
    params : dict
        Parameter name -> value (``values`` -> tuple for ``empirical``).
    lower, upper : float
        Truncation bounds; only ``normal`` uses them, the others lie inside them.
    """

    dist: str
    params: Params = field(hash=False)
    lower: float = -math.inf
    upper: float = math.inf

    @classmethod
    def fixed(cls, value: float) -> Distribution:
        return cls("fixed", {"value": float(value)})

    @property
    def is_fixed(self) -> bool:
        return self.dist == "fixed"

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def to_yaml(self):
        """The scenario-file spelling of this quantity (a number or a mapping)."""
        if self.dist == "fixed":
            return self.params["value"]
        return {"dist": self.dist, **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in self.params.items()}}

    # -- closed-form facts used by the engine's set-up and by tests ------------------------
    def support(self) -> tuple[float, float]:
        """Smallest and largest value the family can take (before truncation)."""
        p, d = self.params, self.dist
        if d == "fixed":
            return p["value"], p["value"]
        if d in ("uniform", "triangular", "pert"):
            return p["low"], p["high"]
        if d == "empirical":
            return min(p["values"]), max(p["values"])
        if d == "beta":
            return 0.0, 1.0
        if d == "normal":
            return max(self.lower, -math.inf), min(self.upper, math.inf)
        return 0.0, math.inf

    def _scipy(self):
        from scipy import stats

        p, d = self.params, self.dist
        if d == "uniform":
            return stats.uniform(loc=p["low"], scale=p["high"] - p["low"])
        if d == "triangular":
            w = p["high"] - p["low"]
            return stats.triang(c=(p["mode"] - p["low"]) / w, loc=p["low"], scale=w)
        if d == "pert":
            a, b = pert_shapes(p["low"], p["mode"], p["high"])
            return stats.beta(a, b, loc=p["low"], scale=p["high"] - p["low"])
        if d == "normal":
            m, s = p["mean"], p["sd"]
            return stats.truncnorm((self.lower - m) / s, (self.upper - m) / s, loc=m, scale=s)
        if d == "lognormal":
            return stats.lognorm(s=p["sigma"], scale=p["median"])
        if d == "gamma":
            k = 1.0 / p["cv"] ** 2
            return stats.gamma(a=k, scale=p["mean"] / k)
        if d == "exponential":
            return stats.expon(scale=p["mean"])
        if d == "weibull":
            return stats.weibull_min(c=p["shape"], scale=p["scale"])
        if d == "beta":
            a, b = beta_shapes(p["mean"], p["concentration"])
            return stats.beta(a, b)
        raise ValueError(d)

    def survival(self, x):
        """P(X > x), exactly (strictly greater); ``x`` a number or an array."""
        x = np.asarray(x, dtype=float)
        if self.dist == "fixed":
            out = (self.params["value"] > x).astype(float)
        elif self.dist == "empirical":
            v = np.sort(np.asarray(self.params["values"], dtype=float))
            out = 1.0 - np.searchsorted(v, x, side="right") / v.size
        else:
            out = np.asarray(self._scipy().sf(x), dtype=float)
        return float(out) if out.ndim == 0 else out

    def mean(self) -> float:
        """Expected value (of the truncated distribution for normal), in closed form."""
        p, d = self.params, self.dist
        if d == "fixed":
            return p["value"]
        if d == "uniform":
            return (p["low"] + p["high"]) / 2
        if d == "triangular":
            return (p["low"] + p["mode"] + p["high"]) / 3
        if d == "pert":
            return (p["low"] + 4 * p["mode"] + p["high"]) / 6
        if d == "normal":
            m, sd = p["mean"], p["sd"]
            return m + sd * truncated_normal_mean((self.lower - m) / sd, (self.upper - m) / sd)
        if d == "lognormal":  # inf where it overflows (sigma near 38 and above)
            return _exp_times(p["median"], p["sigma"] * p["sigma"] / 2)
        if d in ("gamma", "exponential", "beta"):
            return p["mean"]
        if d == "weibull":
            return _exp_times(p["scale"], math.lgamma(1 + 1 / p["shape"]))
        return float(np.mean(p["values"]))  # empirical


def _exp_times(x: float, log_factor: float) -> float:
    """x * exp(log_factor) for x > 0, inf where it overflows."""
    log = math.log(x) + log_factor
    return math.inf if log > 709.0 else math.exp(log)


def truncated_normal_mean(a: float, b: float) -> float:
    """E[Z | a <= Z <= b] for Z ~ N(0, 1), a < b (either may be infinite), in closed form
    that holds far in the tails: (phi(a) - phi(b)) / (Phi(b) - Phi(a)), written with the
    scaled complementary error function where the interval lies in a tail (a = 100 gives
    100.00999..., where the plain formula is 0 / 0)."""
    from scipy.special import erfcx

    if b <= 0.0:  # mirror the left tail to the right
        return -truncated_normal_mean(-b, -a)
    if a < 0.0:  # the interval holds a good share of the mass around 0: the plain formula
        phi = lambda z: 0.0 if math.isinf(z) else math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        mass = 0.5 * (math.erfc(-b / math.sqrt(2)) - math.erfc(-a / math.sqrt(2)))
        return (phi(a) - phi(b)) / mass
    # 0 <= a < b: phi(x) = exp(-x^2/2) / sqrt(2 pi), Q(x) = exp(-x^2/2) erfcx(x / sqrt 2) / 2;
    # divide numerator and denominator by exp(-a^2/2)
    r = 0.0 if math.isinf(b) else math.exp(-(b - a) * (b + a) / 2)
    num = (1.0 - r) / math.sqrt(2 * math.pi)
    den = 0.5 * (float(erfcx(a / math.sqrt(2))) - (0.0 if math.isinf(b) else r * float(erfcx(b / math.sqrt(2)))))
    if den <= 0.0:  # a narrow interval far out: its mean is its middle, to rounding
        return (a + b) / 2
    return min(max(num / den, a), b)


def pert_shapes(low: float, mode: float, high: float) -> tuple[float, float]:
    """Beta shapes of a PERT (lambda 4) on [low, high]."""
    w = high - low
    return 1.0 + 4.0 * (mode - low) / w, 1.0 + 4.0 * (high - mode) / w


def beta_shapes(mean: float, concentration: float) -> tuple[float, float]:
    return mean * concentration, (1.0 - mean) * concentration


MAX_SAME_AS = 2000
"""Longest key path a ``same_as`` may name [characters]."""


@dataclass(frozen=True)
class SameAs:
    """``{same_as: PATH}`` as read (v2 E.1): the quantity takes the draw of the per-trial
    quantity at key path ``path`` (the text, as messages write key paths). Only while a file
    is checked: :mod:`forecaster.scenario.same_as` replaces it by that quantity's
    :class:`Distribution` and records the link on the scenario."""

    path: str


@dataclass
class Quantity(Node):
    """A number or a distribution playing a :class:`Role`; with ``per_trial`` (a rate or a
    probability drawn once per trial), also ``{same_as: PATH}`` (v2 E.1)."""

    role: Role = NONNEGATIVE
    doc: str = ""
    per_trial: bool = False

    def expected(self) -> str:
        return (f"{self.role.num().expected()} or a distribution ({{dist: ...}})"
                + (" or {same_as: <key path>}" if self.per_trial else ""))

    def _same_as(self, value: dict, path: Path, ctx: Context) -> Any:
        """``{same_as: PATH}``: the link as read (:class:`SameAs`), checked for its form only."""
        if not self.per_trial:
            return ctx.error(path, "cannot be {same_as: ...}: it is not drawn once per trial (only a rate or a "
                                   "probability drawn once per trial may be the same draw as another)")
        ok = True
        for key in value:
            if key != "same_as":
                ok = False
                ctx.error(path + (str(key),), "cannot be given beside same_as: {same_as: <key path>} stands "
                                              "alone (the quantity takes that key's draw)")
        text = value["same_as"]
        at = path + ("same_as",)
        if not isinstance(text, str) or not text.strip():
            return ctx.error(at, f"must be a key path of this file such as segments.web.funnel.deal.convert; "
                                 f"got {show(text)}")
        bad = unsafe_character(text)
        if bad:
            return ctx.error(at, f"must be a key path without {bad}")
        if len(text) > MAX_SAME_AS:
            return ctx.error(at, f"must be a key path of at most {MAX_SAME_AS:,} characters; got {len(text):,}")
        return SameAs(text) if ok else INVALID

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        role = self.role
        if isinstance(value, dict) and "same_as" in value:
            return self._same_as(value, path, ctx)
        if not isinstance(value, dict):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return ctx.error(path, f"must be {role.num().expected()}, or a distribution "
                                       f"such as {{dist: lognormal, median: ..., sigma: ...}}; got {show(value)}")
            got = role.num().validate(value, path, ctx)
            return INVALID if got is INVALID else Distribution.fixed(got)
        name = value.get("dist")
        if "dist" not in value:
            return ctx.error(path + ("dist",), "is missing: a distribution needs `dist`, one of "
                                               + ", ".join(PARAMETERS))
        if not isinstance(name, str) or name not in PARAMETERS:
            hint = suggest(name, PARAMETERS) if isinstance(name, str) else ""
            return ctx.error(path + ("dist",), f"must be one of {', '.join(PARAMETERS)}; got {show(name)}{hint}")
        if name not in role.families:
            return ctx.error(path, f"must be {role.what}: its distribution must have support in "
                                   f"{role.num().interval()} ({', '.join(f for f in role.families if f != 'normal')})"
                                   f" or be normal (truncated to {role.num().interval()}); got dist: {name}")
        spec = PARAMETERS[name]
        ok = True
        for key in value:
            if key != "dist" and key not in spec:
                ok = False
                ctx.error(path + (str(key),), f"is not a parameter of {name}{suggest(key, spec)}; "
                                         f"{name} takes: {', '.join(spec)}")
        params: Params = {}
        for key, node in spec.items():
            if key not in value:
                ok = False
                ctx.error(path + (key,), f"is missing: {name} needs {', '.join(spec)}")
                continue
            got = node.validate(value[key], path + (key,), ctx)
            ok = ok and got is not INVALID
            params[key] = tuple(got) if isinstance(got, list) else got
        if not ok:
            return INVALID
        if name in CHECKS and not CHECKS[name](params, path, ctx):
            return INVALID
        if name == "gamma" and params["cv"] < MIN_GAMMA_CV:  # shape 1 / cv^2 past 1e12
            return ctx.error(path + ("cv",), f"must be at least {MIN_GAMMA_CV:g}, the smallest the engine "
                                             f"samples (use a fixed value for a quantity that does not vary); "
                                             f"got {fmt_number(params['cv'])}")
        if name == "gamma" and params["cv"] > MAX_GAMMA_CV:  # shape 1 / cv^2 below 1e-6
            return ctx.error(path + ("cv",), f"must be at most {MAX_GAMMA_CV:g}, the largest the engine samples "
                                             f"(a gamma of shape 1e-6 is 0 but for one draw in millions); "
                                             f"got {fmt_number(params['cv'])}")
        if name == "normal":
            return Distribution(name, params, lower=role.lo, upper=role.hi)
        dist = Distribution(name, params)
        lo, hi = dist.support()
        attained_lo = name in ("fixed", "uniform", "triangular", "pert", "empirical")
        bad = (lo < role.lo or (role.lo_open and lo == role.lo and attained_lo)
               or hi > role.hi or (role.hi_open and hi == role.hi and attained_lo))
        if bad:
            return ctx.error(path, f"must be {role.what} in {role.num().interval()}: this {name} ranges over "
                                   f"[{fmt_number(lo)}, {fmt_number(hi)}]")
        return dist

    def json_schema(self) -> JSONSchema:
        variants = []
        for name in self.role.families:
            spec = PARAMETERS[name]
            props = {"dist": {"const": name}}
            props.update({k: n.json_schema() for k, n in spec.items()})
            variants.append({"type": "object", "description": DESCRIPTIONS[name], "properties": props,
                             "required": ["dist", *spec], "additionalProperties": False})
        if self.per_trial:
            variants.append({"type": "object", "description": "the very value drawn in each trial for the "
                             "per-trial quantity of the same kind at this key path of the file (v2 E.1)",
                             "properties": {"same_as": {"type": "string", "minLength": 1}},
                             "required": ["same_as"], "additionalProperties": False})
        return self._schema({"anyOf": [self.role.num().json_schema(), *variants]})
