"""The package's layers: each module imports only from its own layer or the ones below, and
no modules import each other in a circle (README, "Map of the code")."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "forecaster"
LAYERS = ["errors", "calendar", "version", "scenario", "engine", "results", "analysis", "history", "present", "cli"]
RANK = {"errors": 0, "calendar": 0, "version": 0, **{name: i for i, name in enumerate(LAYERS)}}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, modules: dict) -> set[str]:
    """Every forecaster module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("forecaster"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("forecaster")]
        found |= {n for n in names if n in modules}
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_imports_point_down_only():
    modules = _modules()
    back_up = []
    for name, path in modules.items():
        mine = _layer(name)
        if mine is None:  # the package face and __main__ sit on top
            continue
        for target in _imports(path, modules):
            theirs = _layer(target)
            if theirs is None:
                back_up.append(f"{name} imports the package face {target}")
            elif RANK[theirs] > RANK[mine]:
                back_up.append(f"{name} ({mine}) imports {target} ({theirs})")
    assert not back_up, "\n".join(back_up)


def test_no_module_imports_itself_through_others():
    modules = _modules()
    graph = {name: {t for t in _imports(path, modules) if t != name and t in modules and modules[t].name != "__init__.py"}
             for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_the_checks_see_a_planted_arrow(tmp_path):
    """The checks can fail: a module of the format importing the engine is an arrow back up."""
    planted = PACKAGE / "scenario" / "_planted_for_test.py"
    planted.write_text("from forecaster.engine import kernels  # noqa: F401\n")
    try:
        try:
            test_imports_point_down_only()
        except AssertionError as exc:
            assert "_planted_for_test (scenario) imports forecaster.engine.kernels (engine)" in str(exc)
        else:
            raise AssertionError("the planted arrow back up was not seen")
    finally:
        planted.unlink()
