"""``forecaster calibrate``: a scenario fitted from a deal history, as known on a date."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from . import main
from .options import column_option, mechanism_option, outcome_option


def _horizon(ctx, param, value):
    """``90`` or ``90d`` (days) or ``3m`` (whole calendar months after the as-of date)."""
    text = str(value).strip().lower()
    unit = text[-1] if text[-1:] in ("d", "m") else "d"
    number = text[:-1] if text[-1:] in ("d", "m") else text
    if not number.isdigit() or int(number) < 1:
        raise click.BadParameter(f"expected days (90 or 90d) or months (3m), at least 1; got {value!r}")
    return int(number), unit


def _as_of(ctx, param, value):
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO date (YYYY-MM-DD); got {value!r}")


@main.command("calibrate")
@click.argument("history", type=click.Path(exists=True, path_type=Path))
@click.option("--as-of", "as_of", required=True, callback=_as_of, help="Use only what was known on this date.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Scenario file to write (its pipeline CSV is written beside it).")
@click.option("--preset", type=click.Choice(["generic", "maven", "crm", "olist"]), default="generic", show_default=True,
              help="Column names of a known export (olist: HISTORY is the dataset's folder).")
@click.option("--stages", default=None, help="Stage columns, in order, e.g. lead,mql,sql (generic preset).")
@click.option("--segment-column", default=None, help="Column that names each deal's segment.")
@column_option
@outcome_option
@click.option("--horizon", default="3m", show_default=True, callback=_horizon,
              help="What to forecast: days (90 or 90d) or calendar months after the as-of date's (3m).")
@click.option("--capacity", is_flag=True,
              help="Keep the team's capacity (fitted from its last whole quarters of wins) whatever the evidence: "
                   "for a team whose deals wait for it (the open backlog grows while wins stay flat). Same as "
                   "--mechanism capacity=on.")
@mechanism_option
@click.option("--report", "report", is_flag=True,
              help="Also write NAME-calibration.md beside the scenario: the optional parts tried in the in-history "
                   "walk-forward, their scores, which were kept, and the in-history coverage.")
def calibrate_command(history, as_of, output, preset, stages, segment_column, mapping, outcomes, horizon,
                      capacity, mechanisms, report):
    """Fit a scenario from HISTORY (one row per deal) using only what was known --as-of.

    Times in each stage are fitted by maximum likelihood with deals still open treated as
    unfinished (censored), not lost; conversions are counted against their exposure, and
    their drift between monthly cohorts (like that of arrivals) becomes shared `shocks`
    with a monthly `drift`; thin segments borrow from the whole. Each optional part (shocks,
    stalled deals, cycle speed, trend, seasonality, quarter-end closing, capacity) is kept
    only when a walk-forward inside the history shows it improves the forecast; the shocks
    are then widened until that walk-forward's P10-P90 covers 80% of its months. Writes the scenario (with the counts behind each estimate as
    comments) and the open pipeline on the as-of date, once the scenario is checked (an
    invalid one is reported and nothing is written). See the README for the history format.

    \b
    Example:
      forecaster calibrate ../shared/data/maven-crm-sales-opportunities/sales_pipeline.csv \\
          --preset maven --as-of 2017-06-30 -o out/maven-q3.yaml
      forecaster calibrate opportunities.csv --preset crm --as-of 2026-06-30 -o out/q3.yaml \\
          --outcome open="Prospecting,Qualification,Needs Analysis,Negotiation/Review"
    """
    import yaml

    from ..calibrate import calibrate, pipeline_csv
    from ..errors import ForecasterError, ScenarioError
    from ..history import load_deals
    from ..outputs import _Staged, prepare_folder

    name = output.stem
    count, unit = horizon
    if unit == "m":  # to the end of the count-th month after as_of's month
        from ..backtest import add_months
        horizon_days = (add_months(as_of.replace(day=1), count + 1) - as_of).days - 1
    else:
        horizon_days = count
    warnings: list[str] = []
    try:
        deals, stage_list, lost_observed = load_deals(history, preset, stages, segment_column, mapping, outcomes,
                                                      warnings=warnings)
    except ForecasterError:
        raise
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    pipeline_file = f"{name}-pipeline.csv"
    try:
        cal = calibrate(deals, stage_list, as_of, horizon_days=horizon_days, name=name, lost_observed=lost_observed,
                        capacity=capacity, force=mechanisms, pipeline_file=pipeline_file)
    except ScenarioError as exc:  # calibration builds its scenario to size the shocks
        raise _refused(exc, output=output, history=history, as_of=as_of) from None
    except ValueError as exc:
        raise ForecasterError(f"{history}: cannot calibrate on {as_of}: {exc}") from None
    header = ["# Calibrated by forecaster from " + str(history) + f", as known on {as_of}.",
              "# Counts behind each estimate:"] + [f"#   {n}" for n in cal.notes]
    header += ["# Evidence for the optional parts (in-history walk-forward):"] + [
        f"#   {line}" for line in evidence_lines(cal)]
    header += ["# Warnings:"] + [f"#   {w}" for w in cal.warnings] if cal.warnings else []
    text = "\n".join(header) + "\n" + yaml.safe_dump(cal.scenario, sort_keys=False, default_flow_style=None, width=120)
    pipeline = pipeline_csv(cal.pipeline) if cal.pipeline else None
    check_scenario(text, pipeline_file, pipeline, output=output, history=history, as_of=as_of)
    folder = prepare_folder(output.parent)
    with _Staged(folder) as staged:
        staged.path(output.name).write_text(text)
        if pipeline is not None:
            staged.path(pipeline_file).write_text(pipeline)
        if report:
            staged.path(f"{name}-calibration.md").write_text(calibration_report(cal, history, as_of))
        written = staged.publish()
    for w in cal.warnings:
        click.echo(f"warning: {w}", err=True)
    ev = cal.evidence
    if ev.get("coverage_p10_p90") is not None:
        click.echo(f"Kept {', '.join(cal.kept) or 'no optional part'}; in-history P10-P90 coverage of monthly won "
                   f"deals {ev['coverage_p10_p90']:.0%} over {len(ev['cutoffs'])} month ends x {ev['months']} months "
                   f"(shared shocks x{ev['widen']:g}).")
    else:
        click.echo(f"Kept {', '.join(cal.kept) or 'no optional part'}; {ev.get('note', 'no in-history evidence')}.")
    click.echo("Wrote " + " and ".join(str(p) for p in written.values()))


def evidence_lines(cal) -> list[str]:
    """The in-history walk-forward behind the choice of optional parts, as lines of text."""
    ev = cal.evidence
    if not ev.get("steps"):
        return [ev.get("note", "no evidence")]
    lines = [f"month ends {', '.join(ev['cutoffs'])}, {ev['months']} months each; score: mean CRPS of monthly won "
             "deals (and revenue) over their mean, lower is better"]
    lines.append(f"none: {ev['score_base']:.4f}")
    for step in ev["steps"][1:]:
        tried = ", ".join(f"+{m} {v:.4f}" for m, v in step["tried"].items())
        lines.append(f"tried {tried}; best {step['best']}")
    lines.append(f"kept: {', '.join(ev['kept']) or 'none'} ({ev['score']:.4f}); shared shocks x{ev['widen']:g}; "
                 f"P10-P90 coverage {ev['coverage_before_widening']:.0%} before widening, "
                 f"{ev['coverage_p10_p90']:.0%} after")
    return lines


def calibration_report(cal, history: Path, as_of: date) -> str:
    """A short Markdown report of a calibration: the parts fitted and kept, and the evidence."""
    out = [f"# Calibration of {history} as known on {as_of}", "",
           "| optional part | fitted | kept |", "|---|---|---|"]
    from ..calibrate import MECHANISMS

    for m in MECHANISMS:
        fitted = cal.mechanisms.get(m)
        out.append(f"| {m} | {fitted.summary if fitted else 'not fitted (no basis in the history)'} | "
                   f"{'yes' if m in cal.kept else 'no'} |")
    out += ["", "## Evidence (walk-forward inside the history)", ""] + [f"- {x}" for x in evidence_lines(cal)]
    out += ["", "## What was fitted", ""] + [f"- {n}" for n in cal.notes]
    if cal.warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in cal.warnings]
    return "\n".join(out) + "\n"


def check_scenario(text: str, pipeline_file: str, pipeline: str | None, *, output: Path, history: Path,
                   as_of: date) -> None:
    """Check a calibrated scenario as ``forecaster validate`` would read it, before anything
    is written: ``text`` is the YAML file, ``pipeline`` the CSV it names as ``pipeline_file``
    (None when there is none), checked in a temporary folder.

    Raises
    ------
    ForecasterError
        Listing the problems, when the scenario is refused.
    """
    import tempfile

    from ..errors import ScenarioError
    from ..loading import build_scenario
    from ..yamlio import load_yaml

    try:
        with tempfile.TemporaryDirectory(prefix="forecaster-calibrate-") as tmp:
            if pipeline is not None:
                (Path(tmp) / pipeline_file).write_text(pipeline)
            data, lines = load_yaml(text, output.name)
            build_scenario(data, lines, output.name, base_dir=Path(tmp), raw=text.encode(), source=None)
    except ScenarioError as exc:
        raise _refused(exc, output=output, history=history, as_of=as_of) from None


def _refused(exc, *, output: Path, history: Path, as_of: date):
    """The error for a calibrated scenario that the format refuses (a ScenarioError ``exc``)."""
    from dataclasses import replace

    from ..errors import ForecasterError

    # no line numbers: they would point into a file that is not there
    problems = "\n".join(f"  {replace(p, line=None).render(output.name)}" for p in exc.problems)
    return ForecasterError(
        f"{history}: the scenario calibrated on {as_of} is not valid, so nothing was written ({output} is as it "
        f"was):\n{problems}\nThis is a bug in calibration (what it fitted on this history breaks the format); "
        "please report it.")
