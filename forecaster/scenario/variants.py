"""Variants: a scenario written as a few changes to a base scenario.

A variant file names what changes by key path, in the scenario file's own keys::

    name: proposal-plus-20            # optional (default: the file's name)
    description: what if ...          # optional
    set:                              # replace a value (a number, a distribution, any valid value)
      segments.smb.funnel.opportunity.convert: {dist: beta, mean: 0.264, concentration: 120}
    scale:                            # multiply a quantity (a number or a distribution) by a factor
      segments.mid.leads.budget_per_month: 1.6
      segments.*.funnel.*.days: 0.9   # `*` matches every key at that level

Changes are applied to the base's YAML document, which is then checked like any scenario,
so every rule and message of the format applies to the result. Scaling a distribution
scales the quantity it describes: ``fixed`` value, ``uniform``/``triangular``/``pert``
bounds and mode, ``normal`` mean and sd, ``lognormal`` median, ``gamma``/``exponential``
mean, ``weibull`` scale and ``empirical`` values are multiplied; a ``beta`` (a
probability) has its mean multiplied and keeps its concentration.

A file with ``stages`` or ``segments`` at the top is a whole scenario, not a variant.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard, TypeVar, cast

from forecaster.errors import Problem, ScenarioError
from forecaster.scenario.loading import build_scenario, files_folder, read_document
from forecaster.scenario.model import Scenario
from forecaster.scenario.validation import show, suggest

VARIANT_KEYS = ("name", "description", "set", "scale")
SCALED = {"fixed": ("value",), "uniform": ("low", "high"), "triangular": ("low", "mode", "high"),
          "pert": ("low", "mode", "high"), "normal": ("mean", "sd"), "lognormal": ("median",),
          "gamma": ("mean",), "exponential": ("mean",), "weibull": ("scale",), "beta": ("mean",),
          "empirical": ("values",)}
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

Doc = TypeVar("Doc")
Container = dict[Any, Any] | list[Any]
"""A mapping or list of a YAML document, which a key path walks through."""


def is_variant(data: object) -> TypeGuard[dict[str, Any]]:
    """True for a variant file's document (changes to a base), False for a whole scenario.

    A document with ``set`` or ``scale`` and neither ``stages`` nor ``segments``; or one with
    none of a scenario's ``start``, ``end``, ``stages``, ``segments`` whose keys are all
    variant keys or near spellings of them (``sacle:``): read as a scenario, its error would
    list four missing keys and suggest a scenario key for the misspelt one."""
    if not isinstance(data, dict):
        return False
    keys = {str(k) for k in data}
    if {"stages", "segments"} & keys:
        return False
    if {"set", "scale"} & keys:
        return True
    return bool(keys) and not ({"start", "end"} & keys) \
        and all(k in VARIANT_KEYS or _nearer_a_change(k) for k in keys) \
        and any(k not in VARIANT_KEYS for k in keys)


def _nearer_a_change(key: str) -> bool:
    """Whether ``key`` is a near spelling of ``set`` or ``scale`` (:func:`suggest`'s measure)
    and nearer them than any key of a scenario (``stage`` is a misspelt ``stages``, not
    ``scale``)."""
    import difflib

    from forecaster.scenario.schema import SCENARIO

    def near(choices) -> float:
        return max(difflib.SequenceMatcher(None, key, str(c)).ratio() for c in choices)

    change = near(("set", "scale"))
    return change >= 0.6 and change > near(SCENARIO.fields)


class Literal(tuple):
    """A key path already split into its keys, each taken literally (no ``*``, ``.`` or
    ``[i]`` read in them): how forecaster itself names a quantity whose segment or stage
    name holds such characters."""


def parse_path(text: str | Literal) -> list[str | int]:
    """``segments.smb.funnel.*.days`` -> ['segments', 'smb', 'funnel', '*', 'days'];
    ``team.reps[0].quota`` -> ['team', 'reps', 0, 'quota']; a :class:`Literal` as it is."""
    if isinstance(text, Literal):
        return list(text)
    parts: list[str | int] = []
    for name, index in _PART.findall(text):
        parts.append(int(index) if index else name)
    return parts


def _targets(doc: object, parts: list[str | int], where: str, problems: list[Problem], create_last: bool,
             literal: bool = False) -> list[tuple[Container, Any]]:
    """(container, key) pairs a key path (with ``*``, unless ``literal``) points at in ``doc``;
    ``parts`` is not empty."""
    found: list[tuple[Container | None, Any, Any]] = [(None, None, doc)]
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        nxt: list[tuple[Container | None, Any, Any]] = []
        for _, _, node in found:
            if part == "*" and not literal:
                if isinstance(node, dict):
                    nxt += [(node, k, v) for k, v in node.items()]
                elif isinstance(node, list):
                    nxt += [(node, i, v) for i, v in enumerate(node)]
                continue
            if isinstance(node, dict) and (part in node or (last and create_last)):
                nxt.append((node, part, node.get(part)))
            elif isinstance(node, dict) and isinstance(part, str) and part.isdigit() and int(part) in node:
                nxt.append((node, int(part), node[int(part)]))  # seasonality months
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                nxt.append((node, part, node[part]))
        if not nxt:
            here = ".".join(str(p) for p in parts[:depth]) or "the scenario"
            keys = []
            for _, _, node in found:
                if isinstance(node, dict):
                    keys += [str(k) for k in node]
            hint = suggest(part, keys) if isinstance(part, str) else ""
            problems.append(Problem(where, f"names {'.'.join(str(p) for p in parts)!r}, but {here} has no "
                                           f"{part!r}{hint}" + (f"; it has: {', '.join(keys)}" if keys else "")))
            return []
        found = nxt
    return [(container, key) for container, key, _ in found if container is not None]


def scale_quantity(value: object, factor: float) -> object:
    """The quantity ``value`` (a number or a distribution mapping) multiplied by ``factor``."""
    if isinstance(value, bool):
        raise ValueError("is not a number or a distribution")
    if isinstance(value, (int, float)):
        return value * factor
    if isinstance(value, dict) and value.get("dist") in SCALED:
        out = dict(value)
        for key in SCALED[value["dist"]]:
            if key not in out:
                continue
            if key == "values" and isinstance(out[key], list):
                out[key] = [v * factor for v in out[key]]
            elif isinstance(out[key], (int, float)) and not isinstance(out[key], bool):
                out[key] = out[key] * factor
        return out
    raise ValueError("is not a number or a distribution")


SHIFTED = {"fixed": ("value",), "uniform": ("low", "high"), "triangular": ("low", "mode", "high"),
           "pert": ("low", "mode", "high"), "normal": ("mean",), "beta": ("mean",), "empirical": ("values",)}
"""What :func:`shift_quantity` moves in each family a probability may have."""


def shift_quantity(value: object, delta: float) -> object:
    """The probability ``value`` (a number or a distribution mapping) shifted by ``delta``:
    a ``fixed`` value, ``uniform``/``triangular``/``pert`` bounds and mode, a ``normal``'s
    mean, a ``beta``'s mean (its concentration kept) and ``empirical`` values move by delta."""
    if isinstance(value, bool):
        raise ValueError("is not a number or a distribution")
    if isinstance(value, (int, float)):
        return value + delta
    if isinstance(value, dict) and value.get("dist") in SHIFTED:
        out = dict(value)
        for key in SHIFTED[value["dist"]]:
            if key == "values" and isinstance(out.get(key), list):
                out[key] = [v + delta for v in out[key]]
            elif isinstance(out.get(key), (int, float)) and not isinstance(out[key], bool):
                out[key] = out[key] + delta
        return out
    raise ValueError("is not a probability that can be shifted (a number, or a fixed, uniform, triangular, pert, "
                     "normal, beta or empirical distribution)")


def apply_changes(base: Doc, variant: Mapping[str, object], where: str) -> tuple[Doc, list[Problem]]:
    """A copy of the base document with the variant's ``set`` and ``scale`` applied, and any
    problems. (``shift``, used by sensitivity's ``points`` steps and not a key of a variant
    file, adds a number to a probability: :func:`shift_quantity`.)"""
    doc = copy.deepcopy(base)
    problems: list[Problem] = []
    for section in ("set", "scale", "shift"):
        moved: list[tuple[Container, Any, float, str]] = []  # (container, key, factor or delta, where)
        changes = variant.get(section) or {}
        if not isinstance(changes, dict):
            problems.append(Problem(section, f"must be a mapping of key path -> value; got {show(changes)}"))
            continue
        for path, value in changes.items():
            at = f"{section}.{'.'.join(map(str, path)) if isinstance(path, Literal) else path}"
            if not isinstance(path, (str, Literal)) or not parse_path(path):
                problems.append(Problem(at, "must be a key path such as segments.smb.funnel.lead.convert"))
                continue
            if section == "scale" and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                problems.append(Problem(at, f"must be a factor >= 0 (1.1 raises by 10%); got {show(value)}"))
                continue
            if section == "shift" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                problems.append(Problem(at, f"must be a number (0.1 adds 10 points); got {show(value)}"))
                continue
            found = _targets(doc, parse_path(path), at, problems, create_last=section == "set",
                             literal=isinstance(path, Literal))
            if section == "set":
                for container, key in found:
                    container[key] = copy.deepcopy(value)
                continue
            moved.extend((container, key, cast(float, value), at) for container, key in found)
        # v2 E.1: a {same_as: PATH} takes PATH's draw: it follows PATH's change, and is
        # refused when PATH is not changed alike (it has no law of its own to change)
        changed = {(id(container), key): value for container, key, value, _ in moved}
        for container, key, value, at in moved:
            target = container[key]
            if _is_same_as(target):
                end = _end_of_chain(doc, target)
                if end is None or changed.get((id(end[0]), end[1])) != value:
                    problems.append(Problem(at, f"points at {{same_as: {show(target['same_as'])}}}, which takes "
                                                "that quantity's draw and has no law of its own to change: "
                                                f"{section} that key path instead (each same_as of it follows), or "
                                                "set this key to a number or a distribution"))
                continue
            try:
                change = scale_quantity if section == "scale" else shift_quantity
                container[key] = change(target, value)
            except ValueError as exc:
                problems.append(Problem(at, f"points at {show(target)}, which {exc}"))
    return doc, problems


def _is_same_as(value: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict) and isinstance(value.get("same_as"), str)


def _end_of_chain(doc: object, value: dict[str, Any]) -> tuple[Container, Any] | None:
    """The (container, key) of the quantity a chain of ``same_as`` starting at ``value`` ends
    at in ``doc`` (one with a law of its own), or None when a link names nothing or loops."""
    seen: list[tuple[int, Any]] = []
    while True:
        found = _targets(doc, parse_path(value["same_as"]), "", [], create_last=False, literal=True)
        if len(found) != 1 or (id(found[0][0]), found[0][1]) in seen:
            return None
        container, key = found[0]
        if not _is_same_as(container[key]):
            return container, key
        seen.append((id(container), key))
        value = container[key]


def load_variant(path: str | Path, base_path: str | Path) -> Scenario:
    """A scenario file, or a variant file applied to the base scenario ``base_path``.

    Raises
    ------
    ScenarioError
        For problems in the variant file, or in the scenario it makes (named after the
        variant file, with the base's key paths).
    """
    path, base_path = Path(path), Path(base_path)
    data, lines, raw = read_document(path)
    if not is_variant(data):
        return build_scenario(data, lines, str(path), base_dir=files_folder(path, data), raw=raw, source=path)
    problems = [Problem(str(k), f"is not a known key of a variant file{suggest(k, VARIANT_KEYS)}; "
                                f"valid keys: {', '.join(VARIANT_KEYS)}") for k in data if k not in VARIANT_KEYS]
    base, _, base_raw = read_document(base_path)
    doc, more = apply_changes(base, data, str(path))
    problems += more
    if problems:
        raise ScenarioError(str(path), problems)
    if isinstance(doc, dict):
        doc["name"] = data.get("name") or path.stem
        if data.get("description"):
            doc["description"] = data["description"]
    return build_scenario(doc, {}, f"{path} (applied to {base_path.name})", base_dir=files_folder(base_path, doc),
                          raw=base_raw + raw, source=path)
