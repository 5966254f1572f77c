"""Loading a scenario: YAML text -> checked, typed :class:`~forecaster.scenario.model.Scenario`.

This is the one place a Scenario is built. Every problem in the file (and in the pipeline
CSV it names) is collected and raised together as one :class:`~forecaster.errors.ScenarioError`.
"""
from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

from forecaster.errors import Problem, ScenarioError
from forecaster.scenario.customers import read_customers
from forecaster.scenario.limits import check_limits
from forecaster.scenario.model import Scenario
from forecaster.scenario.pipeline import read_pipeline
from forecaster.scenario.schema import SCENARIO
from forecaster.scenario.validation import INVALID, Context
from forecaster.scenario.yamlio import NotRegularFile, format_size, load_yaml, read_limited

MAX_SCENARIO_BYTES = 16 * 1024 * 1024
"""The most a scenario file may hold [bytes]: a real one is a few kilobytes."""

# the outputs hold period dates as nanosecond datetimes (numpy/xarray's datetime64[ns])
FIRST_DAY = date(1677, 9, 22)
LAST_DAY = date(2262, 4, 11)


def read_document(path: str | Path) -> tuple[object, dict, bytes]:
    """Read a YAML file: its data, the line of each value by key path, and its bytes.

    Only a regular file of at most :data:`MAX_SCENARIO_BYTES` is read: a folder, FIFO,
    device or socket is refused without waiting on it, and so is a larger file.
    """
    path = Path(path)
    shown = str(path)

    def refuse(message: str, line: int | None = None):
        return ScenarioError(shown, [Problem("", message, line)])

    try:
        raw = read_limited(path, MAX_SCENARIO_BYTES)
    except FileNotFoundError:
        raise refuse("does not exist") from None
    except NotRegularFile as exc:
        raise refuse(f"is {exc.kind}; expected a YAML file") from None
    except IsADirectoryError:
        raise refuse("is a folder; expected a YAML file") from None
    except ValueError:  # a NUL in the path
        raise refuse("is not a usable file name (it holds a NUL character)") from None
    except OSError as exc:
        raise refuse(f"cannot be read: {exc.strerror or exc}") from None
    if raw is None:
        raise refuse(f"is larger than {format_size(MAX_SCENARIO_BYTES)}, the most a scenario file may hold; "
                     "is it the right file?")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise refuse("is UTF-16 text; save it as UTF-8", 1)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise refuse(f"is not UTF-8 text: line {line} holds the byte 0x{raw[exc.start]:02x} ({exc.reason}); "
                     "save it as UTF-8", line) from None
    data, lines = load_yaml(text, shown)
    return data, lines, raw


def load_scenario(path: str | Path) -> Scenario:
    """Read, check and build a scenario from a YAML file.

    Parameters
    ----------
    path : str or Path
        The scenario file. A pipeline or customers file it names is read relative to its
        folder (:func:`files_folder`: for a symbolic link whose files lie beside the file it
        leads to and not beside the link, that file's folder).

    Raises
    ------
    ScenarioError
        With every problem found, each naming the file, the key path and what was expected.
    """
    path = Path(path)
    return scenario_of_document(path, *read_document(path))


def scenario_of_document(path: Path, data: object, lines: dict, raw: bytes) -> Scenario:
    """:func:`load_scenario` of a file already read by :func:`read_document` (a caller that
    first looks at the document, to tell a variant file, need not read it twice)."""
    return build_scenario(data, lines, str(path), base_dir=files_folder(path, data), raw=raw, source=path)


def files_folder(path: Path, data: object) -> Path:
    """The folder a scenario's own files (``pipeline.file``, ``customers.file``) are read from:
    the scenario file's; for a symbolic link (a batch folder of links into a repository), the
    folder of the file it leads to when every file named is there and not every one is beside
    the link. Beside the link wins when both hold them, so a link never changes a scenario
    that read its files beside it before."""
    here = path.parent
    if not isinstance(data, dict) or not path.is_symlink():
        return here
    names = [part["file"] for part in (data.get("pipeline"), data.get("customers"))
             if isinstance(part, dict) and isinstance(part.get("file"), str) and part["file"]]
    try:
        there = path.resolve().parent
    except (OSError, RuntimeError):
        return here
    if not names or all((here / n).is_file() for n in names) or not all((there / n).is_file() for n in names):
        return here
    return there


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
    dates_ok = _check_date_range(values, ctx)
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
            reps=[r.name for r in team["reps"]] if team else [], line=ctx.line(("pipeline", "file")),
            digest=digest)
        ctx.problems.extend(problems)
    installed: tuple = ()
    needed = [values[k] for k in ("customers", "start", "segments", "team")]
    if values["customers"] and all(v is not INVALID for v in needed):
        team = values["team"]
        file = base_dir / values["customers"]["file"]
        installed, problems = read_customers(
            file, values["customers"]["file"], start=values["start"], segments=values["segments"],
            reps=[r.name for r in team["reps"]] if team else [], line=ctx.line(("customers", "file")), digest=digest)
        ctx.problems.extend(problems)
    if dates_ok:  # limits walk the horizon day by day: not one of thousands of years
        check_limits(values, deals, ctx)  # the engine's largest exact sizes (forecaster.scenario.limits)
    if ctx.problems:
        raise ScenarioError(shown, ctx.problems)
    v = values
    return Scenario(
        name=v["name"], description=v["description"], start=v["start"], end=v["end"],
        report_by=v["report_by"], currency=v["currency"],
        fiscal_year_start=int(v["fiscal_year_start"]) if v["fiscal_year_start"] is not None else None, trials=v["trials"], seed=v["seed"],
        stages=tuple(v["stages"]), segments=v["segments"],
        pipeline_file=v["pipeline"]["file"] if v["pipeline"] else None, pipeline=deals,
        reps=tuple(v["team"]["reps"]) if v["team"] else (), commission=v["commission"],
        targets=dict(v["targets"]), shocks=v["shocks"], closing=v["closing"], stalled=dict(v["stalled"]),
        capacity=v["capacity"], clv=v["clv"], regular_from=int(v["regular_from"]),
        customers_file=v["customers"]["file"] if v["customers"] else None, customers=installed,
        outputs=v["outputs"], same_as=v["same_as"], source=source, sha256=digest.hexdigest())


def _check_date_range(values: dict, ctx: Context) -> bool:
    """Refuse a horizon the outputs cannot date: their period coordinates are nanosecond
    datetimes, which end on 2262-04-11 (and a date past it would wrap around silently).
    False when refused."""
    ok = True
    for key in ("start", "end"):
        day = values.get(key)
        if not isinstance(day, date):
            continue
        ok = ok and FIRST_DAY <= day <= LAST_DAY
        if day < FIRST_DAY:
            ctx.error((key,), f"must be on or after {FIRST_DAY.isoformat()}, the first day the outputs can "
                              f"date; got {day.isoformat()}")
        elif day > LAST_DAY:
            ctx.error((key,), f"must be on or before {LAST_DAY.isoformat()}, the last day the outputs can "
                              f"date; got {day.isoformat()}")
    return ok
