"""Loading a scenario: YAML text -> checked, typed :class:`~forecaster.scenario.Scenario`.

This is the one place a Scenario is built. Every problem in the file (and in the pipeline
CSV it names) is collected and raised together as one :class:`~forecaster.errors.ScenarioError`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import Problem, ScenarioError
from .pipeline import read_pipeline
from .scenario import Scenario
from .schema import SCENARIO
from .validation import INVALID, Context
from .yamlio import load_yaml


def read_document(path: str | Path) -> tuple[object, dict, bytes]:
    """Read a YAML file: its data, the line of each value by key path, and its bytes."""
    path = Path(path)
    shown = str(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except FileNotFoundError:
        raise ScenarioError(shown, [Problem("", "does not exist")]) from None
    except IsADirectoryError:
        raise ScenarioError(shown, [Problem("", "is a folder; expected a YAML file")]) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(shown, [Problem("", f"is not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    except OSError as exc:
        raise ScenarioError(shown, [Problem("", f"cannot be read: {exc.strerror}")]) from None
    data, lines = load_yaml(text, shown)
    return data, lines, raw


def load_scenario(path: str | Path) -> Scenario:
    """Read, check and build a scenario from a YAML file.

    Parameters
    ----------
    path : str or Path
        The scenario file. A pipeline file it names is read relative to its folder.

    Raises
    ------
    ScenarioError
        With every problem found, each naming the file, the key path and what was expected.
    """
    path = Path(path)
    data, lines, raw = read_document(path)
    return build_scenario(data, lines, str(path), base_dir=path.parent, raw=raw, source=path)


def scenario_from_dict(data: dict, *, base_dir: str | Path = ".", name: str = "<scenario>") -> Scenario:
    """Build a scenario from a mapping with the file's keys (e.g. for notebooks and tests).

    Parameters
    ----------
    data : dict
        The scenario, as the YAML file would load (dates may be ``date`` objects).
    base_dir : str or Path
        Folder the pipeline file is relative to.
    name : str
        How the scenario is named in error messages.
    """
    import json

    raw = json.dumps(data, sort_keys=True, default=str).encode()
    return build_scenario(data, {}, name, base_dir=Path(base_dir), raw=raw, source=None)


def build_scenario(data, lines, shown: str, *, base_dir: Path, raw: bytes, source: Path | None) -> Scenario:
    """Check ``data`` (a loaded YAML document) and build the Scenario; ``shown`` names it in
    messages, ``base_dir`` is where its pipeline file is looked for."""
    if data is None:
        raise ScenarioError(shown, [Problem("", "is empty; expected a scenario mapping (name, start, end, "
                                                "stages, segments, ...)")])
    ctx = Context(lines)
    values, _ = SCENARIO.check(data, (), ctx)
    digest = hashlib.sha256(raw)
    deals: tuple = ()
    # the pipeline is checked whenever what it refers to is valid, so that its problems are
    # reported together with any others in the scenario
    needed = [values[k] for k in ("pipeline", "start", "segments", "stages", "team")]
    if values["pipeline"] and all(v is not INVALID for v in needed):
        pipe, team = values["pipeline"], values["team"]
        file = base_dir / pipe["file"]
        deals, problems = read_pipeline(
            file, pipe["file"], start=values["start"], segments=values["segments"], stages=values["stages"],
            reps=[r.name for r in team["reps"]] if team else [], line=ctx.line(("pipeline", "file")))
        ctx.problems.extend(problems)
        if file.is_file():
            digest.update(file.read_bytes())
    if ctx.problems:
        raise ScenarioError(shown, ctx.problems)
    v = values
    return Scenario(
        name=v["name"], description=v["description"], start=v["start"], end=v["end"],
        report_by=v["report_by"], currency=v["currency"], trials=v["trials"], seed=v["seed"],
        stages=tuple(v["stages"]), segments=v["segments"],
        pipeline_file=v["pipeline"]["file"] if v["pipeline"] else None, pipeline=deals,
        reps=tuple(v["team"]["reps"]) if v["team"] else (), commission=v["commission"],
        targets=dict(v["targets"]), shocks=v["shocks"], closing=v["closing"], stalled=dict(v["stalled"]),
        capacity=v["capacity"], source=source, sha256=digest.hexdigest())
