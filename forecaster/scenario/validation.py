"""Declarative validation: nodes that check plain YAML values and describe themselves.

Each node knows three things: how to check a value (collecting *every* problem with its key
path), how to say what it expects (for messages), and how to write itself as JSON Schema.
The scenario format in :mod:`forecaster.scenario.schema` is one table built from these nodes, so the
messages, the checks and ``forecaster schema`` can never disagree.
"""
from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeAlias

from forecaster.errors import Problem
from forecaster.scenario.yamlio import Path, format_path


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()
"""Returned by a node whose value had a problem (already recorded)."""

JSONSchema: TypeAlias = dict[str, Any]
"""A JSON Schema object, as :meth:`Node.json_schema` writes it."""


class Context:
    """Collects problems while a document is checked.

    Parameters
    ----------
    lines : dict
        1-based line of each value by key path (from :func:`forecaster.scenario.yamlio.load_yaml`).
    """

    def __init__(self, lines: dict[Path, int] | None = None):
        self.lines = lines or {}
        self.problems: list[Problem] = []

    def line(self, path: Path) -> int | None:
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def error(self, path: Path, message: str) -> Any:
        self.problems.append(Problem(format_path(path), message, self.line(path)))
        return INVALID


Check: TypeAlias = Callable[[dict[str, Any], Path, Context], bool]
"""A rule joining several keys of a :class:`Record`: ``(values, path, ctx)`` -> whether it holds."""


def show(value: Any) -> str:
    """How a found value is quoted in a message."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        if not value:
            return "an empty text"
        return repr(value[:60]) + (f"... ({len(value):,} characters)" if len(value) > 60 else "")
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value)) if abs(value) >= 1 else repr(value)
    if isinstance(value, float):
        return format(value, ".12g")  # 0.35 * 3 reads 1.05, not 1.0499999999999998
    return repr(value)


MAX_NAME = 200
"""Longest name (segment, stage, rep, variant) accepted [characters]."""
MAX_TEXT = 100_000
"""Longest free text (a description) accepted [characters]."""
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def unsafe_character(text: str, allowed: str = "") -> str | None:
    """A description of the first character of ``text`` that must not reach a terminal or a
    report (control characters, line breaks, bidirectional overrides), else None."""
    import unicodedata

    for i, ch in enumerate(text):
        if ch in allowed:
            continue
        if ch in _BIDI:
            return f"a bidirectional override (U+{ord(ch):04X}, character {i + 1})"
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs") or ch in "\u2028\u2029\x85":
            what = "a line break" if ch in "\n\r\u2028\u2029\x85\x0b\x0c" else "a control character"
            return f"{what} (U+{ord(ch):04X}, character {i + 1})"
    return None


def suggest(word: object, choices: Iterable[object]) -> str:
    """`` (did you mean 'x'?)`` for the nearest choice, or nothing."""
    near = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


class Node:
    """Base of every validation node."""

    doc: str = ""

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:  # pragma: no cover
        raise NotImplementedError

    def expected(self) -> str:  # pragma: no cover
        raise NotImplementedError

    def json_schema(self) -> JSONSchema:  # pragma: no cover
        raise NotImplementedError

    def _schema(self, schema: JSONSchema) -> JSONSchema:
        if self.doc:
            schema["description"] = self.doc
        return schema


@dataclass
class Num(Node):
    """A plain number, optionally an integer, within an interval.

    ``lo``/``hi`` are the bounds (None: unbounded), ``lo_open``/``hi_open`` whether they are
    excluded. Integral floats (``1e4``) are accepted where an integer is asked for.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    what: str | None = None  # e.g. "a probability"
    doc: str = ""

    def interval(self) -> str:
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            return (("(" if self.lo_open else "[") + f"{fmt_number(lo)}, {fmt_number(hi)}"
                    + (")" if self.hi_open else "]"))
        if lo is not None:
            return f"{'>' if self.lo_open else '>='} {fmt_number(lo)}"
        if hi is not None:
            return f"{'<' if self.hi_open else '<='} {fmt_number(hi)}"
        return ""

    def expected(self) -> str:
        noun = self.what or ("an integer" if self.integer else "a number")
        iv = self.interval()
        if not iv:
            return noun
        return f"{noun} in {iv}" if iv[0] in "[(" else f"{noun} {iv}"

    def contains(self, x: float) -> bool:
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            return False
        if self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi)):
            return False
        return True

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return ctx.error(path, f"must be {self.expected()}; got {show(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            return ctx.error(path, f"must be {self.expected()}; got {show(value)}")
        if self.integer:
            if isinstance(value, float):
                if not value.is_integer():
                    return ctx.error(path, f"must be {self.expected()}; got {show(value)}")
                value = int(value)
        else:
            value = float(value)
        if not self.contains(value):
            return ctx.error(path, f"must be {self.expected()}; got {show(value)}")
        return value

    def json_schema(self) -> JSONSchema:
        s: JSONSchema = {"type": "integer" if self.integer else "number"}
        if self.lo is not None:
            s["exclusiveMinimum" if self.lo_open else "minimum"] = self.lo
        if self.hi is not None:
            s["exclusiveMaximum" if self.hi_open else "maximum"] = self.hi
        return self._schema(s)


@dataclass
class Text(Node):
    """Non-empty text, at most :data:`MAX_TEXT` characters, without control characters
    other than line breaks and tabs, nor bidirectional overrides (which reorder what a
    terminal or a report shows)."""

    doc: str = ""

    def expected(self) -> str:
        return "a text"

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        if not isinstance(value, str) or not value.strip():
            return ctx.error(path, f"must be a non-empty text; got {show(value)}")
        bad = unsafe_character(value, allowed="\n\t")
        if bad:
            return ctx.error(path, f"must not hold {bad}")
        if len(value) > MAX_TEXT:
            return ctx.error(path, f"must be at most {MAX_TEXT:,} characters; got {len(value):,}")
        return value

    def json_schema(self) -> JSONSchema:
        return self._schema({"type": "string", "minLength": 1})


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Date(Node):
    """An ISO calendar date, ``YYYY-MM-DD``."""

    doc: str = ""

    def expected(self) -> str:
        return "an ISO date (YYYY-MM-DD)"

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        if isinstance(value, date):
            return value
        if isinstance(value, str) and len(value) == 10 and _ISO_DATE.match(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        return ctx.error(path, f"must be {self.expected()}; got {show(value)}")

    def json_schema(self) -> JSONSchema:
        return self._schema({"type": "string", "format": "date",
                             "pattern": r"^\d{4}-\d{2}-\d{2}$"})


@dataclass
class Choice(Node):
    """One of a fixed set of words."""

    options: tuple[str, ...]
    doc: str = ""

    def expected(self) -> str:
        return "one of " + ", ".join(map(str, self.options))

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        if isinstance(value, str) and value in self.options:
            return value
        hint = suggest(value, self.options) if isinstance(value, str) else ""
        return ctx.error(path, f"must be {self.expected()}; got {show(value)}{hint}")

    def json_schema(self) -> JSONSchema:
        return self._schema({"enum": list(self.options)})


@dataclass
class Flag(Node):
    """true or false."""

    doc: str = ""

    def expected(self) -> str:
        return "true or false"

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        if isinstance(value, bool):
            return value
        return ctx.error(path, f"must be {self.expected()}; got {show(value)}")

    def json_schema(self) -> JSONSchema:
        return self._schema({"type": "boolean"})


@dataclass
class ListOf(Node):
    """A list of items of one kind."""

    item: Node
    min_items: int = 0
    unique: bool = False
    doc: str = ""

    def expected(self) -> str:
        if isinstance(self.item, Record):  # "a list of a move with keys ...s" reads badly
            what = f"a list, each item {self.item.expected()}"
            return what if self.min_items == 0 else f"{what}, at least {self.min_items}"
        return f"a list of {self.item.expected()}s" if self.min_items == 0 else \
            f"a list of at least {self.min_items} ({self.item.expected()})"

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        if not isinstance(value, list):
            return ctx.error(path, f"must be {self.expected()}; got {show(value)}")
        if len(value) < self.min_items:
            return ctx.error(path, f"must have at least {self.min_items} item"
                                   f"{'s' if self.min_items > 1 else ''}; got {len(value)}")
        out = [self.item.validate(v, path + (i,), ctx) for i, v in enumerate(value)]
        if self.unique:
            seen: set[Any] = set()
            for i, v in enumerate(out):
                if v is not INVALID and v in seen:
                    ctx.error(path + (i,), f"repeats {show(v)}; each item must appear once")
                seen.add(v) if v is not INVALID else None
        return INVALID if any(v is INVALID for v in out) else out

    def json_schema(self) -> JSONSchema:
        s: JSONSchema = {"type": "array", "items": self.item.json_schema()}
        if self.min_items:
            s["minItems"] = self.min_items
        if self.unique:
            s["uniqueItems"] = True
        return self._schema(s)


@dataclass
class Field:
    """A key of a :class:`Record`."""

    node: Node
    required: bool = False
    default: Any = None


@dataclass
class Record(Node):
    """A mapping with known keys; unknown keys are errors with the nearest key suggested.

    ``checks`` are functions ``(values, path, ctx)`` for rules that join several keys; they
    run only when every key they read is valid. ``make`` builds the typed object.
    """

    fields: dict[str, Field]
    make: Callable[..., Any] | None = None
    checks: tuple[Check, ...] = ()
    name: str = "a mapping"
    doc: str = ""
    schema_extra: JSONSchema = field(default_factory=dict)

    def expected(self) -> str:
        return f"{self.name} with keys " + ", ".join(self.fields)

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        out, ok = self.check(value, path, ctx)
        if not ok:
            return INVALID
        return self.make(**out) if self.make else out

    def check(self, value: Any, path: Path, ctx: Context) -> tuple[dict[str, Any], bool]:
        """Check every key; return the values found (INVALID where a key was wrong) and
        whether all of them, and the cross-key checks, passed."""
        if not isinstance(value, dict):
            ctx.error(path, f"must be {self.name} (keys: {', '.join(self.fields)}); got {show(value)}")
            return {k: INVALID for k in self.fields}, False
        ok = True
        for key in value:
            if key not in self.fields:
                ok = False
                ctx.error(path + (str(key),), f"is not a known key here{suggest(key, self.fields)}; "
                                         f"valid keys: {', '.join(self.fields)}")
        out: dict[str, Any] = {}
        for key, f in self.fields.items():
            if key in value:
                got = f.node.validate(value[key], path + (key,), ctx)
                ok = ok and got is not INVALID
                out[key] = got
            elif f.required:
                ok = False
                ctx.error(path + (key,), f"is missing: it is required ({f.node.expected()})")
                out[key] = INVALID
            else:
                out[key] = f.default
        for check in self.checks:
            if not check(out, path, ctx):
                ok = False
        return out, ok

    def json_schema(self) -> JSONSchema:
        s: JSONSchema = {"type": "object",
                         "properties": {k: f.node.json_schema() for k, f in self.fields.items()},
                         "additionalProperties": False}
        req = [k for k, f in self.fields.items() if f.required]
        if req:
            s["required"] = req
        s.update(self.schema_extra)
        return self._schema(s)


@dataclass
class MapOf(Node):
    """A mapping from user-chosen keys to values of one kind."""

    key: Node
    value: Node
    min_items: int = 0
    key_pattern: str | None = None  # JSON Schema propertyNames pattern
    doc: str = ""

    def expected(self) -> str:
        return "a mapping"

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        if not isinstance(value, dict):
            return ctx.error(path, f"must be a mapping; got {show(value)}")
        if len(value) < self.min_items:
            return ctx.error(path, f"must have at least {self.min_items} entr"
                                   f"{'ies' if self.min_items > 1 else 'y'}; got none")
        out: dict[Any, Any] = {}
        ok = True
        for k, v in value.items():
            key = self.key.validate(k, path + (str(k),), ctx)
            got = self.value.validate(v, path + (str(k),), ctx)
            ok = ok and key is not INVALID and got is not INVALID
            out[key] = got
        return out if ok else INVALID

    def json_schema(self) -> JSONSchema:
        s: JSONSchema = {"type": "object", "additionalProperties": self.value.json_schema()}
        if self.min_items:
            s["minProperties"] = self.min_items
        if self.key_pattern:
            s["propertyNames"] = {"pattern": self.key_pattern}
        elif isinstance(self.key, Choice):
            s["propertyNames"] = {"enum": list(self.key.options)}
        return self._schema(s)


@dataclass
class Name(Node):
    """A user-chosen name (segment, stage, rep): non-empty text without surrounding spaces."""

    what: str = "a name"
    doc: str = ""

    def expected(self) -> str:
        return self.what

    def validate(self, value: Any, path: Path, ctx: Context) -> Any:
        if not isinstance(value, str) or not value or value != value.strip():
            return ctx.error(path, f"must be {self.what} (non-empty text); got {show(value)}")
        bad = unsafe_character(value)
        if bad:
            return ctx.error(path, f"must be {self.what} without {bad}; got {show(value)}")
        if len(value) > MAX_NAME:
            return ctx.error(path, f"must be {self.what} of at most {MAX_NAME} characters; got {len(value):,}")
        return value

    def json_schema(self) -> JSONSchema:
        return self._schema({"type": "string", "minLength": 1})
