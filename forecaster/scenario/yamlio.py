"""Safe YAML 1.2 loading with line numbers and duplicate-key detection, and the bounded
reading of the files a scenario is made of.

PyYAML reads YAML 1.1, where ``1e6`` is a string and ``no`` is a boolean. The scenario
format is YAML 1.2 (core schema), so this module installs the 1.2 resolvers on a private
loader, composes the node tree, and builds plain Python values from it itself: only the
core tags (str, int, float, bool, null, seq, map) are accepted, a key given twice in one
mapping is an error, and the line of every value is recorded by its key path. Nothing in a
file can make the loader construct an object or run code.

Hostile or broken input is refused with a :class:`~forecaster.errors.ScenarioError` naming
the line: characters YAML does not allow (NUL, ESC, form feed, ...), control characters
written as escapes inside text, nesting deeper than :data:`MAX_DEPTH`, aliases that expand
beyond :data:`MAX_VALUES` values or refer to themselves, integers beyond the range of a
float, and literals such as ``1e999`` that overflow to infinity.

:func:`open_input` opens an input file for reading without ever blocking (a FIFO) or
reading forever (``/dev/zero``): only regular files are read.
"""
from __future__ import annotations

import math
import os
import re
import stat
import sys
import unicodedata
from typing import BinaryIO, TypeAlias

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from forecaster.errors import Problem, ScenarioError

Path: TypeAlias = tuple[str | int, ...]  # a key path: str mapping keys and int list indices

_T = "tag:yaml.org,2002:"
MAX_VALUES = 500_000  # bounds alias expansion ("billion laughs")
MAX_DEPTH = 100  # lists and mappings nested in one another; a scenario needs fewer than 10
MAX_KEY_CHARS = 200  # a key is a name
MAX_PROBLEMS = 50  # problems listed from one document before summarising the rest
_MAX_INT_DIGITS = 400  # longer integer literals are refused before Python converts them

# what YAML 1.2 allows in a stream (the same set PyYAML's reader checks)
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
# inside text, after escapes: control characters other than tab and line feed, and lone
# surrogates (which cannot be written to a UTF-8 file or a netCDF attribute)
_BAD_IN_TEXT = re.compile("[\x00-\x08\x0B-\x1F\x7F-\x9F\uD800-\uDFFF]")
_BAD_IN_KEY = re.compile("[\x00-\x1F\x7F-\x9F\uD800-\uDFFF]")
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")

_CONTROL_NAMES = {0: "NUL", 7: "BEL", 8: "backspace", 9: "tab", 10: "line feed", 11: "vertical tab",
                  12: "form feed", 13: "carriage return", 27: "ESC", 127: "DEL"}


def describe_char(ch: str) -> str:
    """``U+001B (ESC)``: a character named without printing it."""
    code = ord(ch)
    name = _CONTROL_NAMES.get(code)
    if name is None:
        if 0xD800 <= code <= 0xDFFF:
            name = "a lone surrogate"
        else:
            name = unicodedata.name(ch, "") or ("a control character" if unicodedata.category(ch) == "Cc"
                                                 else "")
    return f"U+{code:04X}" + (f" ({name})" if name else "")


def show_text(text: str, limit: int = 60) -> str:
    """``text`` quoted and escaped for a message, cut to about ``limit`` characters."""
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} characters)"
    return repr(text)


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core-schema implicit resolvers instead of 1.1's, and a
    bound on nesting (PyYAML composes nested nodes recursively)."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"nests lists and mappings more than {MAX_DEPTH} levels deep", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Yaml12Loader.yaml_implicit_resolvers = {}
_RESOLVERS = {}
for _tag, _regex, _first in [
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
]:
    _RESOLVERS[_T + _tag] = re.compile(_regex)
    _Yaml12Loader.add_implicit_resolver(_T + _tag, _RESOLVERS[_T + _tag], list(_first))
# an explicit tag (``!!int 12``) must still hold what the tag says; a signed hex or octal
# integer is accepted there as before
_EXPLICIT = {**_RESOLVERS, _T + "int": re.compile(r"^(?:[-+]?[0-9]+|[-+]?0o[0-7]+|[-+]?0x[0-9a-fA-F]+)$")}


class _Yaml12Dumper(yaml.SafeDumper):
    """SafeDumper that quotes every string :func:`load_yaml` would read as something else.

    PyYAML writes a string plain unless its own (YAML 1.1) resolvers would read it back as
    another type, but the reader uses YAML 1.2's core schema, which differs: ``1e3`` is a
    float and ``0o17`` an integer there, plain strings to YAML 1.1. The dumper knows both
    sets, so a segment named ``3E8`` is written ``'3E8'`` and read back as that name."""


for _resolved, _pattern in _RESOLVERS.items():
    _Yaml12Dumper.add_implicit_resolver(_resolved, _pattern, None)


def dump_yaml(doc) -> str:
    """``doc`` (mappings, lists, strings, numbers, booleans, None) as YAML text that
    :func:`load_yaml` reads back as the same values: keys in their order, nested lists in
    flow style, lines wrapped at 120 characters. Names are written as they read (``München``,
    ``日本``, not ``"M\\xFCnchen"``) unless some string holds a character that would not read
    back or not show (a control or format character, a line or paragraph separator): then
    every character outside ASCII is escaped."""
    return yaml.dump(doc, Dumper=_Yaml12Dumper, sort_keys=False, default_flow_style=None, width=120,
                     allow_unicode=not any(_unshown(s) for s in _strings(doc)))


def _strings(doc):
    """Every string in ``doc``, keys included."""
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for k, v in doc.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(doc, (list, tuple)):
        for v in doc:
            yield from _strings(v)


def _unshown(text: str) -> bool:
    """Whether ``text`` holds a character PyYAML would write raw but that does not read back
    (NEL, U+0085, became a line break) or that an editor does not show (Unicode's control,
    format, surrogate and private-use characters, line and paragraph separators)."""
    return any(ord(c) > 126 and unicodedata.category(c)[0] in "CZ" and unicodedata.category(c) != "Zs"
               for c in text)


def format_path(path: Path) -> str:
    """``('segments', 'smb', 'funnel')`` -> ``segments.smb.funnel``; ints become ``[i]``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class _Builder:
    def __init__(self, file: str):
        self.file = file
        self.lines: dict[Path, int] = {}
        self.problems: list[Problem] = []
        self.count = 0
        self.open: set[int] = set()  # ids of the collections being built (to catch cycles)

    def fail(self, path: Path, message: str, node) -> None:
        self.problems.append(Problem(format_path(path), message, node.start_mark.line + 1))

    def build(self, node, path: Path):
        self.count += 1
        if self.count > MAX_VALUES:
            raise ScenarioError(self.file, [Problem("", f"has more than {MAX_VALUES:,} values (aliases "
                                                         "expanding into copies of copies?); refusing to read it",
                                                    node.start_mark.line + 1)])
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.open:
            self.fail(path, f"is an alias of a list or mapping that contains it (the anchor on line "
                            f"{node.start_mark.line + 1}): a value cannot hold itself", node)
            return None
        if len(path) >= MAX_DEPTH:  # aliases can nest deeper than the text does
            self.fail(path, f"nests lists and mappings more than {MAX_DEPTH} levels deep", node)
            return None
        self.open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self.sequence(node, path)
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
        finally:
            self.open.discard(id(node))
        raise AssertionError(f"unknown YAML node {node!r}")  # pragma: no cover

    def sequence(self, node: SequenceNode, path: Path):
        if node.tag != _T + "seq":
            self.fail(path, f"uses the YAML tag {show_text(node.tag)}, which is not allowed "
                            "(plain lists, mappings, text and numbers only)", node)
            return None
        return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]

    def mapping(self, node: MappingNode, path: Path):
        if node.tag != _T + "map":
            self.fail(path, f"uses the YAML tag {show_text(node.tag)}, which is not allowed "
                            "(plain lists, mappings, text and numbers only)", node)
            return None
        out: dict = {}
        first_line: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.fail(path, "has a key that is a list or mapping; keys must be plain names", key_node)
                continue
            if key_node.tag == _T + "str":
                text = key_node.value
                if len(text) > MAX_KEY_CHARS:
                    self.fail(path, f"has a key of {len(text):,} characters ({show_text(text, 40)}); "
                                    f"keys are names of at most {MAX_KEY_CHARS} characters", key_node)
                    continue
                bad = _BAD_IN_KEY.search(text)
                if bad:
                    self.fail(path, f"has a key holding the character {describe_char(bad.group())} "
                                    f"({show_text(text, 40)}); keys are plain names", key_node)
                    continue
            before = len(self.problems)
            key = self.scalar(key_node, path)
            if len(self.problems) > before:
                continue  # refused
            if isinstance(key, float) and math.isnan(key):
                self.fail(path, "has the key .nan, which is not a name or a number", key_node)
                continue
            if key in out or key in first_line:
                self.fail(path + (str(key),), f"is given twice in one mapping (lines "
                                              f"{first_line[key]} and {key_node.start_mark.line + 1}); "
                                              "keep one", key_node)
                continue
            first_line[key] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, path + (str(key),))
        return out

    def scalar(self, node: ScalarNode, path: Path):
        tag, text = node.tag, node.value
        if tag == _T + "str":
            bad = _BAD_IN_TEXT.search(text)
            if bad:
                where = f" at character {bad.start() + 1}" if len(text) > 1 else ""
                self.fail(path, f"holds the control character {describe_char(bad.group())}{where} "
                                "(written as an escape?); text cannot hold control characters", node)
                return None
            return text
        pattern = _EXPLICIT.get(tag)
        if pattern is None:
            self.fail(path, f"uses the YAML tag {show_text(tag)}, which is not allowed "
                            "(plain lists, mappings, text and numbers only)", node)
            return None
        if not pattern.match(text):
            self.fail(path, f"is tagged {tag.replace(_T, '!!')} but {show_text(text)} is not one", node)
            return None
        if tag == _T + "int":
            sign = -1 if text.startswith("-") else 1
            body = text.lstrip("+-")
            too_large = (f"is an integer of {len(body):,} digits, beyond the largest number a scenario "
                         "holds (about 1.8e308)")
            if len(body) > _MAX_INT_DIGITS:
                self.fail(path, too_large, node)
                return None
            if body.startswith("0o"):
                value = sign * int(body[2:], 8)
            elif body.startswith("0x"):
                value = sign * int(body[2:], 16)
            else:
                value = sign * int(body)
            if abs(value) > sys.float_info.max:
                self.fail(path, too_large, node)
                return None
            return value
        if tag == _T + "float":
            low = text.lower()
            if low.endswith(".inf"):
                return -math.inf if low.startswith("-") else math.inf
            if low == ".nan":
                return math.nan
            number = float(text)
            if math.isinf(number):
                self.fail(path, f"is {show_text(text, 40)}, beyond the largest number a scenario holds "
                                "(about 1.8e308)", node)
                return None
            return number
        if tag == _T + "bool":
            return text.lower() == "true"
        return None  # null


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``, counting YAML's line breaks."""
    line, start = 1, 0
    for m in _LINE_BREAK.finditer(text, 0, index):
        line, start = line + 1, m.end()
    return line, index - start + 1


def _check_characters(text: str, file: str) -> None:
    bad = _NON_PRINTABLE.search(text)
    if bad is None:
        return
    line, column = _position(text, bad.start())
    what = f"has the character {describe_char(bad.group())} at line {line}, column {column}"
    nuls = text.count("\x00")
    if nuls > 1:
        what += f": it holds {nuls:,} NUL characters, so it is a binary file or UTF-16 text, not a UTF-8 YAML file"
    else:
        what += ", which a YAML file may not hold; remove it"
    raise ScenarioError(file, [Problem("", what, line)])


def _syntax_error(exc: yaml.MarkedYAMLError, file: str) -> ScenarioError:
    """A ScenarioError at the line where the problem starts.

    PyYAML gives the ``problem_mark`` (where it gave up) and, for an unfinished
    construct, the ``context_mark`` (where the construct opened). An unclosed quote or
    bracket is found only at the end of the file or many lines later, so then the
    construct's opening line is the one to show; otherwise the problem's.
    """
    problem, context = exc.problem or "", exc.context or ""
    pm, cm = exc.problem_mark, exc.context_mark
    unfinished = cm is not None and ("end of stream" in problem or "quoted" in context or "flow" in context
                                     or "block scalar" in context)
    mark = cm if unfinished or pm is None else pm

    def at(m) -> str:
        return f"line {m.line + 1}, column {m.column + 1}"

    if unfinished and "end of stream" in problem:
        thing = re.sub(r"^while (scanning|parsing) ", "", context)
        what = f"{thing} that opens at {at(cm)} is never closed (the file ends first)"
    elif cm is not None and pm is not None and context:
        what = f"{context} ({at(cm)}): {problem} ({at(pm)})"
    elif mark is not None:
        what = f"{problem or context or 'syntax error'} ({at(mark)})"
    else:
        what = problem or context or "syntax error"
    if len(what) > 300:
        what = what[:300] + "..."
    return ScenarioError(file, [Problem("", f"is not valid YAML: {what}", mark.line + 1 if mark else None)])


def load_yaml(text: str, file: str) -> tuple[object, dict[Path, int]]:
    """Parse one YAML 1.2 document safely.

    Parameters
    ----------
    text : str
        The document.
    file : str
        Name used in error messages.

    Returns
    -------
    data : object
        Plain Python values (dict, list, str, int, float, bool, None).
    lines : dict
        1-based line of each value, by key path.

    Raises
    ------
    ScenarioError
        On a character YAML does not allow, a syntax error, a second document, nesting
        deeper than :data:`MAX_DEPTH`, a non-core tag, a duplicate key, a control character
        in text, a recursive alias, or a number beyond the range of a float.
    """
    _check_characters(text, file)
    try:
        loader = _Yaml12Loader(text)
    except yaml.YAMLError as exc:  # pragma: no cover - _check_characters refused it first
        raise ScenarioError(file, [Problem("", f"is not valid YAML: {exc}")]) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(file, [Problem("", f"is not valid YAML: {str(exc)[:300]}")]) from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH stops it first
        raise ScenarioError(file, [Problem("", "nests lists and mappings too deeply to be read")]) from None
    finally:
        loader.dispose()
    if node is None:
        return None, {}
    builder = _Builder(file)
    data = builder.build(node, ())
    if builder.problems:
        problems = builder.problems
        if len(problems) > MAX_PROBLEMS:
            problems = problems[:MAX_PROBLEMS] + [Problem("", f"and {len(problems) - MAX_PROBLEMS:,} more "
                                                              "problems like these", more=len(problems) - MAX_PROBLEMS)]
        raise ScenarioError(file, problems)
    return data, builder.lines


# --- reading input files -----------------------------------------------------------------

class NotRegularFile(OSError):
    """The path names a folder, FIFO, device or socket: nothing a forecaster input can be."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_input(path) -> BinaryIO:
    """Open an input file for reading in binary, refusing anything but a regular file.

    The type is checked before opening (a socket cannot be opened) and again on the open
    descriptor (the path may have changed in between); the file is opened non-blocking, so a
    FIFO never hangs the reader.

    Raises
    ------
    NotRegularFile
        For a folder, FIFO, device or socket; ``.kind`` says which.
    OSError
        As ``open`` does (FileNotFoundError, PermissionError, ...); ValueError for a path
        holding NUL.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFile(_kind(mode))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(_kind(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def format_size(n: int) -> str:
    """``16 MiB``, ``1 GiB``, ``1,000 bytes``: a size limit for a message."""
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size and n % size == 0:
            return f"{n // size:,} {unit}"
    return f"{n:,} bytes"


def read_limited(path, limit: int) -> bytes | None:
    """The bytes of a regular file, or None when it holds more than ``limit`` bytes.

    Raises as :func:`open_input` does.
    """
    with open_input(path) as f:
        raw = f.read(limit + 1)
    return None if len(raw) > limit else raw
