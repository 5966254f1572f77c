"""Shared per-trial draws (v2 E.1): ``{same_as: PATH}`` in place of a per-trial quantity.

A rate or a probability drawn once per trial may be written ``{same_as: PATH}``: in every
trial it takes the very value drawn for the quantity at key path PATH of the same file
(before shocks and drift, which then act on each segment as usual). PATH is written as
messages write key paths (``segments.web.funnel.evaluation.moves[0].share``) and may itself
be a ``same_as``: a chain ends at a quantity with a number or a distribution of its own,
its *target*.

What may be the same draw as what (the *kind* of a quantity): any probability for any
probability (``convert``, ``moves[i].share``, ``renew``, ``dropout``,
``cancel.probability``); otherwise the same key in the same place of its segment (a
``leads.per_month`` for a ``leads.per_month``, a ``customer.repeat.per_month`` for a
``customer.repeat.per_month``, ...).

:func:`resolve` is one of the scenario's checks (:mod:`forecaster.scenario.schema`): once
every segment is valid, it reports every link that names no quantity, a quantity that is
not drawn once per trial, another kind, or a chain that loops; otherwise it replaces each
linking quantity by its target's :class:`~forecaster.scenario.distributions.Distribution`
(so every computation at the means, limits and checks of the format reads the law the
quantity follows) and records the links, holder -> target, under ``same_as``, which the
engine turns into copies of drawn values (:mod:`forecaster.engine.plan`).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

from forecaster.scenario.distributions import Distribution, SameAs
from forecaster.scenario.validation import INVALID, Context, suggest
from forecaster.scenario.yamlio import Path, format_path

PROBABILITY = "a probability"
"""The kind of every probability drawn once per trial: any of them may be the same draw as any other."""
PROBABILITY_KEYS = (("customer", "subscription", "renew"), ("customer", "repeat", "dropout"),
                    ("customer", "cancel", "probability"))
"""The after-sale probabilities drawn once per trial (key paths under a segment)."""
RATE_KEYS = (("leads", "per_day"), ("leads", "per_week"), ("leads", "per_month"), ("leads", "cost_per_lead"),
             ("leads", "growth_per_month"), ("customer", "subscription", "expansion"),
             ("customer", "repeat", "per_month"), ("leads", "response", "elasticity"),
             ("leads", "response", "half_saturation"), ("leads", "response", "slope"), ("cost", "per_lead"))
"""The rates drawn once per trial (key paths under a segment): each is its own kind."""


NO_EXPANSION = Distribution.fixed(0.0)
"""An absent ``expansion``'s value, this very object (the schema's default): a ``same_as``
cannot name an absent key."""


def per_trial_quantities(seg: Any) -> Iterator[tuple[Path, str, Any]]:
    """A segment's quantities drawn once per trial: (key path under the segment, kind, value),
    the value a :class:`Distribution` or, while the file is checked, a :class:`SameAs`. Only
    the keys the file gives (an absent ``expansion`` is not one)."""
    for rel in RATE_KEYS + PROBABILITY_KEYS:
        value = _walk(seg, rel[:-1])
        value = getattr(value, rel[-1], None) if value is not None else None
        if value is None or value is NO_EXPANSION:
            continue
        yield rel, PROBABILITY if rel in PROBABILITY_KEYS else format_path(rel), value
    for stage, entry in seg.funnel.items():
        yield ("funnel", stage, "convert"), PROBABILITY, entry.convert
        for i, move in enumerate(entry.moves):
            yield ("funnel", stage, "moves", i, "share"), PROBABILITY, move.share


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _walk(node: Any, parts) -> Any:
    """The value at key path ``parts`` under ``node`` (a checked document: mappings, lists,
    the model's dataclasses), or None where there is none. A distribution is a leaf."""
    for part in parts:
        if node is None or node is INVALID or isinstance(node, (Distribution, SameAs)):
            return None
        if isinstance(node, dict):
            node = node.get(part, node.get(int(part)) if isinstance(part, str) and part.isdigit() else None)
        elif isinstance(node, (list, tuple)):
            node = node[part] if isinstance(part, int) and part < len(node) else None
        elif dataclasses.is_dataclass(node) and isinstance(part, str) \
                and part in {f.name for f in dataclasses.fields(node)}:
            node = getattr(node, part)
        else:
            return None
    return None if node is INVALID or node is NO_EXPANSION else node


def _exists(values: dict, text: str) -> bool:
    """Whether ``text``, read as a key path (``a.b[0].c``), names something of the checked file."""
    parts: list[str | int] = [int(index) if index else name for name, index in _PART.findall(text)]
    return bool(parts) and "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") == text \
        and _walk(values, parts) is not None


def quantity_at(scenario: Any, path: Path) -> Distribution:
    """The law of the per-trial quantity at key path ``path`` (a tuple) of a built scenario
    (a ``same_as``'s is its target's)."""
    found = _walk({"segments": scenario.segments}, path)
    assert isinstance(found, Distribution), path
    return found


def _describe(kind: str) -> str:
    return kind if kind == PROBABILITY else f"a rate ({kind})"


def _replace_at(node: Any, rel: Path, value: Any) -> Any:
    """A copy of ``node`` (the model's frozen dataclasses, mappings and tuples) with ``value`` at ``rel``."""
    if not rel:
        return value
    part, rest = rel[0], rel[1:]
    if isinstance(node, dict):
        return {**node, part: _replace_at(node[part], rest, value)}
    if isinstance(node, (list, tuple)):
        assert isinstance(part, int)
        items = list(node)
        items[part] = _replace_at(items[part], rest, value)
        return tuple(items) if isinstance(node, tuple) else items
    assert isinstance(part, str)
    return dataclasses.replace(node, **{part: _replace_at(getattr(node, part), rest, value)})


def resolve(v: dict[str, Any], path: Path, ctx: Context) -> bool:
    """The scenario's check of its ``same_as`` links (see the module's docstring): reports
    every bad link, or replaces each holder's value by its target's distribution and sets
    ``v["same_as"]`` to the (holder, target) key paths. With a bad link, ``v["segments"]``
    becomes INVALID (the checks after this one do not read a link that has no law)."""
    segments = v["segments"]
    v["same_as"] = ()
    if segments in (None, INVALID):
        return True
    quantities: dict[str, tuple[Path, str, Any]] = {}  # key path text -> (key path, kind, value)
    for name, seg in segments.items():
        for rel, kind, value in per_trial_quantities(seg):
            at = path + ("segments", name, *rel)
            quantities[format_path(at)] = (at, kind, value)
    holders = {text: q for text, q in quantities.items() if isinstance(q[2], SameAs)}
    if not holders:
        return True
    ok = True
    link: dict[str, str] = {}  # holder -> the quantity it names, for the links that hold
    for text, (at, kind, value) in holders.items():
        target = value.path
        if target not in quantities:
            ok = False
            if _exists(v, target):
                ctx.error(at, f"names {target} in same_as, which is not a per-trial quantity: only a rate or a "
                              "probability drawn once per trial can be shared (not a days, a deal_value or a "
                              "plain number)")
            else:
                ctx.error(at, f"names {target} in same_as, which is not found in this file"
                              f"{suggest(target, quantities)}; same_as names a rate or a probability of this file by "
                              "its key path, as messages write it (e.g. segments.<segment>.funnel.<stage>.convert)")
            continue
        other = quantities[target][1]
        if other != kind:
            ok = False
            if kind == PROBABILITY or other == PROBABILITY:
                why = f"{'a probability' if kind == PROBABILITY else 'a rate'} cannot be the same draw as " \
                      f"{'a probability' if other == PROBABILITY else 'a rate'}"
            else:
                why = f"a {kind} can only be the same draw as a {kind} (the same key in the same place of its segment)"
            ctx.error(at, f"names {target} in same_as, {_describe(other)}, but this is {_describe(kind)}: {why}")
            continue
        link[text] = target
    final: dict[str, str] = {}
    reported: set[str] = set()
    for text in link:
        chain = [text]
        while chain[-1] in link and link[chain[-1]] not in chain:
            chain.append(link[chain[-1]])
        end = chain[-1]
        if end in link:  # the next link is back on the chain: a loop
            ok = False
            loop = chain[chain.index(link[end]):]
            if not reported & set(loop):
                reported |= set(loop)
                ctx.error(quantities[loop[0]][0], "is in a loop of same_as: " + " -> ".join(loop + [loop[0]])
                          + "; a chain of same_as must end at a quantity with a number or a distribution of its own")
        elif end not in holders:  # else it ends at a link that failed, reported there
            final[text] = end
    if not ok:
        v["segments"] = INVALID
        return False
    for text, target in final.items():
        at = quantities[text][0][len(path):]
        name, rel = at[1], at[2:]
        segments[name] = _replace_at(segments[name], rel, quantities[target][2])
    v["same_as"] = tuple((quantities[h][0][len(path):], quantities[t][0][len(path):]) for h, t in final.items())
    return True
