"""Safe YAML 1.2 loading with line numbers and duplicate-key detection.

PyYAML reads YAML 1.1, where ``1e6`` is a string and ``no`` is a boolean. The scenario
format is YAML 1.2 (core schema), so this module installs the 1.2 resolvers on a private
loader, composes the node tree, and builds plain Python values from it itself: only the
core tags (str, int, float, bool, null, seq, map) are accepted, a key given twice in one
mapping is an error, and the line of every value is recorded by its key path.
"""
from __future__ import annotations

import math
import re

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .errors import Problem, ScenarioError

Path = tuple  # a key path: a tuple of str keys and int list indices

_T = "tag:yaml.org,2002:"
_MAX_NODES = 500_000  # bounds alias expansion ("billion laughs")


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core-schema implicit resolvers instead of 1.1's."""


_Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _regex, _first in [
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
]:
    _Yaml12Loader.add_implicit_resolver(_T + _tag, re.compile(_regex), list(_first))


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

    def fail(self, path: Path, message: str, node) -> None:
        self.problems.append(Problem(format_path(path), message, node.start_mark.line + 1))

    def build(self, node, path: Path):
        self.count += 1
        if self.count > _MAX_NODES:
            raise ScenarioError(self.file, [Problem("", f"has more than {_MAX_NODES} values "
                                                         "(expanded aliases?); refusing to read it")])
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _T + "seq":
                self.fail(path, f"uses the YAML tag {node.tag!r}, which is not allowed "
                                "(plain lists, mappings, text and numbers only)", node)
                return None
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _T + "map":
                self.fail(path, f"uses the YAML tag {node.tag!r}, which is not allowed "
                                "(plain lists, mappings, text and numbers only)", node)
                return None
            out: dict = {}
            first_line: dict = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    self.fail(path, "has a key that is a list or mapping; keys must be plain names",
                              key_node)
                    continue
                key = self.scalar(key_node, path)
                if key in out or key in first_line:
                    self.fail(path + (str(key),), f"is given twice in one mapping (lines "
                                             f"{first_line[key]} and {key_node.start_mark.line + 1}); "
                                             "keep one", key_node)
                    continue
                first_line[key] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, path + (str(key),))
            return out
        raise AssertionError(f"unknown YAML node {node!r}")  # pragma: no cover

    def scalar(self, node: ScalarNode, path: Path):
        tag, text = node.tag, node.value
        if tag == _T + "str":
            return text
        if tag == _T + "int":
            sign = -1 if text.startswith("-") else 1
            body = text.lstrip("+-")
            if body.startswith("0o"):
                return sign * int(body[2:], 8)
            if body.startswith("0x"):
                return sign * int(body[2:], 16)
            return sign * int(body)
        if tag == _T + "float":
            low = text.lower()
            if low.endswith(".inf"):
                return -math.inf if low.startswith("-") else math.inf
            if low == ".nan":
                return math.nan
            return float(text)
        if tag == _T + "bool":
            return text.lower() == "true"
        if tag == _T + "null":
            return None
        self.fail(path, f"uses the YAML tag {tag!r}, which is not allowed "
                        "(plain lists, mappings, text and numbers only)", node)
        return None


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
        On a syntax error, a second document, a non-core tag or a duplicate key.
    """
    loader = _Yaml12Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        raise ScenarioError(file, [Problem("", f"is not valid YAML: {what}{where}",
                                           mark.line + 1 if mark else None)]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(file, [Problem("", f"is not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if node is None:
        return None, {}
    builder = _Builder(file)
    data = builder.build(node, ())
    if builder.problems:
        raise ScenarioError(file, builder.problems)
    return data, builder.lines
