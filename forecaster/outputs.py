"""Writing a run's results: ``forecast.nc`` and ``summary.json``, whole or not at all.

Each file is written to a temporary name in the output folder and renamed into place, so
a reader never sees a half-written file and a failed run leaves the previous results.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import xarray as xr

from .errors import OutputError

FORECAST = "forecast.nc"
SUMMARY = "summary.json"


def _prepare(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create the folder: {exc.strerror}") from None
    return out


def _temp_in(out: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
    os.close(fd)
    return Path(tmp)


def write_outputs(out: str | Path, ds: xr.Dataset, summary: dict) -> dict[str, Path]:
    """Write ``forecast.nc`` and ``summary.json`` into the folder ``out`` atomically.

    Returns
    -------
    dict
        File role -> path written.
    """
    out = _prepare(Path(out))
    written: dict[str, Path] = {}
    temps: list[Path] = []
    try:
        nc_tmp = _temp_in(out, FORECAST)
        temps.append(nc_tmp)
        ds.to_netcdf(nc_tmp, engine="h5netcdf")
        js_tmp = _temp_in(out, SUMMARY)
        temps.append(js_tmp)
        js_tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        for tmp, name in ((nc_tmp, FORECAST), (js_tmp, SUMMARY)):
            os.chmod(tmp, 0o644)
            os.replace(tmp, out / name)
            written[name] = out / name
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write the results: {exc}") from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return written


def run(scenario_path: str | Path, out: str | Path, *, trials: int | None = None, seed: int | None = None,
        threads: int | None = None) -> dict:
    """Load, simulate, summarise and write, as ``forecaster run`` does. Returns the summary."""
    from .loading import load_scenario
    from .simulation import simulate
    from .summary import summarize

    sc = load_scenario(scenario_path).with_run(trials, seed)
    ds = simulate(sc, threads=threads)
    summary = summarize(ds, sc)
    write_outputs(out, ds, summary)
    return summary
