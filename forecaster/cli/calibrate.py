"""``forecaster calibrate``: a scenario fitted from a deal history, as known on a date.

Also the command line's guards for a history and the files made from it, shared with
``backtest``: dates and horizons within bounds, outputs that never overwrite an input, and
files written whole or not at all.
"""
from __future__ import annotations

import os
import re
import stat
from datetime import date
from pathlib import Path

import click

from forecaster.cli import main
from forecaster.cli.options import column_option, mechanism_option, outcome_option

MAX_HORIZON_MONTHS = 120
MAX_HORIZON_DAYS = 3660
"""The longest ``--horizon``: ten years, in months or days."""


SEGMENT_WARNINGS_SHOWN = 10
"""How many warnings about one segment each calibrate prints before counting the rest (the
scenario's header and the report list them all)."""


def _shown_warnings(warnings: list[str], segments: list[str]) -> list[str]:
    """``warnings`` as printed: those about one segment each (a
    :class:`~forecaster.history.parts.SegmentWarning`) past :data:`SEGMENT_WARNINGS_SHOWN`
    counted in one line (review: an owner column of 300 names read as segments printed 900
    lines)."""
    about = [getattr(w, "segment", None) if len(segments) > 1 else None for w in warnings]
    single = [i for i, name in enumerate(about) if name is not None]
    if len(single) <= SEGMENT_WARNINGS_SHOWN:
        return list(warnings)
    hidden = set(single[SEGMENT_WARNINGS_SHOWN:])
    said = {about[i] for i in single}
    return [w for i, w in enumerate(warnings) if i not in hidden] + [
        f"and {len(hidden):,} more warnings about single segments ({len(said):,} of the {len(segments):,} segments have "
        "one; the scenario's header lists every one)" + ("; so many segments with too few deals of their own: is "
                                                          "--segment-column the lead source?" if len(said) > 50 else "")]


def _horizon(ctx, param, value):
    """``90`` or ``90d`` (days) or ``3m`` (whole calendar months after the as-of date)."""
    m = re.fullmatch(r"(\d{1,9})\s*([dm]?)", str(value).strip().lower(), re.ASCII)
    number, unit = (int(m.group(1)), m.group(2) or "d") if m else (0, "")
    most = MAX_HORIZON_MONTHS if unit == "m" else MAX_HORIZON_DAYS
    if not m or not 1 <= number <= most:
        raise click.BadParameter(f"expected days (90 or 90d) or months (3m), from 1 to {MAX_HORIZON_DAYS} days or "
                                 f"{MAX_HORIZON_MONTHS} months; got {value!r}")
    return number, unit


def parse_day(value: str) -> date:
    """An ISO date within the dates a history may hold; ValueError saying what was expected."""
    from forecaster.history.readers import FIRST_DATE, LAST_DATE

    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):  # the form is right, the day is not
            raise ValueError(f"expected a day that exists (YYYY-MM-DD); got {value!r}, which the calendar has "
                             "not") from None
        raise ValueError(f"expected an ISO date (YYYY-MM-DD); got {value!r}") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise ValueError(f"expected a date from {FIRST_DATE} to {LAST_DATE}; got {value!r}")
    return day


def _as_of(ctx, param, value):
    try:
        return parse_day(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _output_file(ctx, param, value):
    """``-o``: a file's name, not a folder's (``o/`` would otherwise become a file ``o``)."""
    text = str(value)
    seps = tuple(sep for sep in (os.sep, os.altsep) if sep)
    if not text.strip() or os.path.basename(text) in (".", ".."):
        raise click.BadParameter(f"expected a file name, e.g. out/q3.yaml; got {text!r}")
    if text.endswith(seps):
        raise click.BadParameter(f"expected a file name, e.g. {text}q3.yaml; got {text!r}, which ends in a folder "
                                 "separator (nothing was written)")
    if os.path.isdir(text):
        raise click.BadParameter(f"expected a file name; got {text!r}, which is a folder (nothing was written)")
    if text.strip() == "-":
        raise click.BadParameter("expected a file name, e.g. out/q3.yaml; got '-' (the scenario comes with a "
                                 "pipeline CSV beside it, so it is not written to standard output)")
    return Path(text)


drop_option = click.option(
    "--drop-bad-rows", "drop_bad_rows", is_flag=True,
    help="Leave out the rows that cannot be read as a deal (a blank deal id; a segment name holding a control "
         "character, line break or bidirectional override, or longer than 200; a date unreadable or outside "
         "1900-2199; an amount negative, not a number or above 1e15; a won or lost deal without a close date or "
         "closed before its first stage), counted by reason in a warning, instead of refusing the file.")


PRESET_CHOICES = ("generic", "maven", "salesforce", "hubspot", "crm", "olist")
"""``--preset``: :data:`forecaster.history.readers.PRESET_NAMES` (spelt out, so that the
command line starts without importing the readers)."""
preset_help = ("Column names and outcome values of a known export: salesforce (Opportunity: Id, CreatedDate, "
               "StageName, CloseDate, Amount; the standard stages), hubspot (deals: Record ID, Create Date, Deal "
               "Stage, Close Date, Amount; the default pipeline's stages), crm (the same as salesforce), maven, "
               "olist (HISTORY is the dataset's folder), generic (--stages names the stage columns).")


def _history(ctx, param, value):
    """HISTORY: a file or folder that exists, or a ``postgresql://`` URL."""
    from forecaster.history.sources import is_url

    if is_url(value):
        return value.strip()
    return click.Path(exists=True, path_type=Path).convert(value, param, ctx)


def _date_format(ctx, param, value):
    if value is None:
        return None
    from forecaster.history.readers import check_date_format

    try:
        return check_date_format(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


history_argument = click.argument("history", callback=_history)
query_option = click.option(
    "--query", default=None, metavar="SQL",
    help="When HISTORY is a DuckDB database file or a postgresql://user:password@host/db URL: the query whose rows "
         "are the deals, e.g. --query \"SELECT * FROM opportunities WHERE pipeline = 'new'\". Run read-only.")
date_format_option = click.option(
    "--date-format", "date_format", default=None, metavar="FORMAT", callback=_date_format,
    help="How the history writes dates that are not ISO, when a column's dates leave the order of day and month "
         "open (no day above 12): %d/%m/%Y (day first), %m/%d/%Y (month first), %d.%m.%Y, ... Otherwise each "
         "column's order is read from its values.")
decimal_option = click.option(
    "--decimal", type=click.Choice([".", ","]), default=None,
    help="The amounts' decimal separator, when the amount column's values leave it open (1,234 or 1.234 only). "
         "Otherwise it is read from the values (15,271.58; 15.271,58; 15 271,58; $15,271.58; EUR 1.234,56).")


def history_inputs(history: Path | str, preset: str) -> list[Path]:
    """The files read for ``history`` (the Olist folder's files for ``--preset olist``;
    none for a database URL)."""
    from forecaster.history.sources import is_url

    if is_url(history):
        return []
    if preset == "olist":
        from forecaster.history.readers import OLIST_FILES

        return [Path(history) / name for name in OLIST_FILES]
    return [Path(history)]


def _kind(mode: int) -> str:
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "not a regular file")


TEMP_ROOM = 32
"""Bytes a file's temporary name (``.NAME.PID.TAG.tmp``, see :func:`forecaster.results.files.write_together`) adds to its name."""


def check_outputs(targets: list[tuple[str, Path]], inputs: list[Path]) -> None:
    """Refuse, before any work, output files that would overwrite an input (the same file
    by any path: a symlink, a hard link, ``./``) or that cannot be files: an existing folder,
    device or FIFO in their place, or a file where their folder should be.

    ``targets``: (how the user named it, e.g. ``-o q1.yaml``, path) pairs.

    Raises
    ------
    OutputError
        Saying which output, what is in the way, and that nothing was written.
    """
    from forecaster.errors import OutputError
    from forecaster.results.files import check_path, shorten, stat_or_none

    read = []
    for p in inputs:
        try:
            read.append((p, os.stat(p)))
        except (OSError, ValueError):
            pass
    for shown, target in targets:
        if not target.name or target.name in (".", ".."):
            raise OutputError(f"{shown}: expected a file name; nothing was written")
        # a name or path too long for the system, before any folder is made for it
        check_path(target, shown, name_room=TEMP_ROOM, label=shown)
        folder = target.parent
        while not os.path.lexists(folder) and folder != folder.parent:
            folder = folder.parent
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise OutputError(f"{shown}: {shorten(folder)} is a file, not a folder, so {shorten(target)} cannot be "
                              "written; nothing was written")
        st = stat_or_none(target, shown)  # None: not there (or a dangling link, which is replaced)
        if st is None:
            continue
        for p, ist in read:
            if os.path.samestat(st, ist):
                raise OutputError(f"{shown}: {shorten(target)} is the history {p} (the same file), which writing it "
                                  "would destroy; choose another output name (nothing was written)")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{shown}: {shorten(target)} is {_kind(st.st_mode)}; expected a file name to write "
                              "(nothing was written)")


def _comment(text: str | Path) -> str:
    """``text`` made safe for one line of a YAML comment: line breaks and other control
    characters (which could end the comment and inject keys) written as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


@main.command("calibrate")
@history_argument
@click.option("--as-of", "as_of", required=True, callback=_as_of, help="Use only what was known on this date.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str), callback=_output_file,
              help="Scenario file to write (its pipeline CSV is written beside it; the folder is created if "
                   "needed). Never the history itself.")
@query_option
@click.option("--preset", type=click.Choice(PRESET_CHOICES), default="generic", show_default=True, help=preset_help)
@click.option("--stages", default=None, help="Stage columns, in order, e.g. lead,mql,sql (generic preset).")
@click.option("--segment-column", default=None, help="Column that names each deal's segment.")
@column_option
@outcome_option
@date_format_option
@decimal_option
@drop_option
@click.option("--horizon", default="3m", show_default=True, callback=_horizon,
              help="What to forecast: days (90 or 90d) or calendar months after the as-of date's (3m); at most "
                   "ten years.")
@click.option("--fiscal-year-start", "fiscal_year_start", type=click.IntRange(1, 12), default=None, metavar="MONTH",
              help="Month (1-12) the company's fiscal year starts in: quarter-end slips and capacity are read from "
                   "its quarters, and the scenario gets fiscal_year_start (quarters labelled FY27 Q1).")
@click.option("--capacity", is_flag=True,
              help="Keep the team's capacity (fitted from its last whole quarters of wins) whatever the evidence: "
                   "for a team whose deals wait for it (the open backlog grows while wins stay flat). Same as "
                   "--mechanism capacity=on.")
@mechanism_option
@click.option("--open-amounts", "open_amounts", is_flag=True,
              help="Value each deal still open in the export at its own amount (the CRM's amount field) rather "
                   "than as a won deal of its segment is (its won amounts, resampled). Off by default: an open "
                   "deal's amount is an estimate, often set long before it closes.")
@click.option("--report", "report", is_flag=True,
              help="Also write NAME-calibration.md beside the scenario: the optional parts tried in the in-history "
                   "walk-forward, their scores, which were kept, and the in-history coverage.")
@click.option("--transactions", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A transaction log (customer_id, date, amount; optional segment), one row per purchase: fit the "
                   "repeat-purchase model (BG/NBD) of its segment, write its customer.repeat block, and its customers "
                   "as known --as-of into NAME-customers.csv (the installed base) beside the scenario.")
@click.option("--subscriptions", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A subscription log (customer_id, term_start, term_end, outcome renewed/churned/active, value; "
                   "optional segment), one row per term: fit the renewal model (shifted-beta-geometric) of its segment, "
                   "write its customer.subscription block, and the subscriptions active --as-of into "
                   "NAME-customers.csv.")
@click.option("--segment", "customer_segment", default=None,
              help="The segment that --transactions and --subscriptions describe when they have no segment column "
                   "(needed when the calibrated scenario has several segments).")
@click.option("--transaction-column", "transaction_mapping", multiple=True, metavar="NAME=SOURCE",
              help="Map one of customer_id, date, amount, segment to a column of --transactions, e.g. "
                   "--transaction-column customer_id=CustomerID. Repeatable.")
@click.option("--subscription-column", "subscription_mapping", multiple=True, metavar="NAME=SOURCE",
              help="Map one of customer_id, term_start, term_end, outcome, value, segment to a column of "
                   "--subscriptions, e.g. --subscription-column value=MRR. Repeatable.")
@click.option("--term-outcome", "term_outcomes", multiple=True, metavar="OUTCOME=VALUES",
              help="Map --subscriptions' outcome values to renewed, churned or active (case and surrounding spaces "
                   "ignored), e.g. --term-outcome churned=\"Cancelled,Lapsed\". Repeatable.")
def calibrate_command(history, as_of, output, query, preset, stages, segment_column, mapping, outcomes, date_format,
                      decimal, drop_bad_rows, horizon, fiscal_year_start, capacity, mechanisms, open_amounts, report,
                      transactions=None,
                      subscriptions=None, customer_segment=None, transaction_mapping=(), subscription_mapping=(),
                      term_outcomes=()):
    """Fit a scenario from HISTORY (one row per deal) using only what was known --as-of.

    HISTORY is a CSV, Parquet or XLSX file (told apart by their content), or a DuckDB
    database file or postgresql:// URL with --query. Dates may be ISO, day first or month
    first (each column's order read from its values), amounts may have thousands separators,
    a decimal comma and a currency sign.

    Times in each stage are fitted by maximum likelihood with deals still open treated as
    unfinished (censored), not lost; conversions are counted against their exposure, and
    their drift between monthly cohorts (like that of arrivals) becomes shared `shocks`
    with a monthly `drift`; thin segments borrow from the whole. Each optional part (shocks,
    stalled deals, cycle speed, trend, seasonality, quarter-end closing, capacity) is kept
    only when a walk-forward inside the history shows it improves the forecast; the shared
    spread (shocks, a capacity's cv) is then sized so that walk-forward's P10-P90 covers 80%
    of its months. Writes the scenario (with the counts behind each estimate as
    comments) and the open pipeline on the as-of date, once the scenario is checked (an
    invalid one is reported and nothing is written); the files are written whole or not at
    all, and never over the history. See the README for the history format.

    With --transactions or --subscriptions, the after-sale models are fitted too, from what
    was known --as-of (later purchases ignored; renewals decided later censored): a segment's
    `customer` block and the installed base, NAME-customers.csv.

    \b
    Example:
      forecaster calibrate ../shared/data/maven-crm-sales-opportunities/sales_pipeline.csv \\
          --preset maven --as-of 2017-06-30 -o out/maven-q3.yaml
      forecaster calibrate opportunities.xlsx --preset salesforce --as-of 2026-06-30 -o out/q3.yaml \\
          --outcome open="Discovery,Security Review"
      forecaster calibrate postgresql://reader@db/crm --query "SELECT * FROM deals" \\
          --preset hubspot --as-of 2026-06-30 -o out/q3.yaml
      forecaster calibrate deals.csv --stages lead --as-of 2026-06-30 -o out/q3.yaml \\
          --subscriptions terms.csv --term-outcome churned=Cancelled
    """
    from forecaster.errors import ForecasterError, ScenarioError
    from forecaster.history.calibrate import calibrate
    from forecaster.history.parts import pipeline_csv
    from forecaster.history.readers import load_deals
    from forecaster.history.sources import shown_name
    from forecaster.results.files import shorten
    from forecaster.scenario.yamlio import dump_yaml

    source = shown_name(history)  # a URL without its password
    if query is not None:
        source += f" --query {query.strip()!r}"
    name = output.stem
    pipeline_file = f"{name}-pipeline.csv"
    report_file = f"{name}-calibration.md"
    # the folder as the system will find it once created (``new/../h.csv`` is ``h.csv``)
    folder = Path(os.path.realpath(output.parent))
    shown = f"-o {shorten(output)}"
    targets = [(shown, folder / output.name), (f"{shown} (its pipeline)", folder / pipeline_file)]
    if report:
        targets.append((f"{shown} --report", folder / report_file))
    inputs = history_inputs(history, preset)
    customers_file = f"{name}-customers.csv"
    customer_logs = [p for p in (transactions, subscriptions) if p is not None]
    if customer_logs:
        targets.append((f"{shown} (its installed base)", folder / customers_file))
        inputs += customer_logs
    check_outputs(targets, inputs)  # before the work, so a mistyped -o costs nothing
    count, unit = horizon
    if unit == "m":  # to the end of the count-th month after as_of's month
        from forecaster.history.baselines import add_months
        horizon_days = (add_months(as_of.replace(day=1), count + 1) - as_of).days - 1
    else:
        horizon_days = count
    warnings: list[str] = []
    found: dict = {}
    try:
        deals, stage_list, lost_observed = load_deals(history, preset, stages, segment_column, mapping, outcomes,
                                                      warnings=warnings, drop_bad_rows=drop_bad_rows, query=query,
                                                      date_format=date_format, decimal=decimal, found=found)
    except ForecasterError:
        raise
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    purchases, terms = _read_customer_logs(transactions, subscriptions, transaction_mapping, subscription_mapping,
                                           term_outcomes, drop_bad_rows, warnings)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    try:
        cal = calibrate(deals, stage_list, as_of, horizon_days=horizon_days, name=name, lost_observed=lost_observed,
                        capacity=capacity, force=mechanisms, pipeline_file=pipeline_file,
                        fiscal_year_start=fiscal_year_start, open_amounts=True if open_amounts else None)
    except ScenarioError as exc:  # calibration builds its scenario to size the shocks
        raise _refused(exc, output=output, history=source, as_of=as_of) from None
    except ValueError as exc:
        raise ForecasterError(f"{shown_name(history)}: cannot calibrate on {as_of}: {exc}") from None
    if found.get("currency"):  # the history's amounts say their currency: the scenario's label
        cal.scenario = with_currency(cal.scenario, found["currency"])
    first = min((day for deal in deals for day in deal.entered if day is not None and day <= as_of), default=None)
    if first is not None and horizon_days > (as_of - first).days + 1:
        # review: a 10-year horizon from one year of history was taken without a word
        cal.warnings.append(f"the horizon ({horizon_days:,} days) is longer than the history known on {as_of} "
                            f"({(as_of - first).days + 1:,} days, from {first}): its later periods carry the fitted "
                            "drift and trend past anything the history shows; read them as a what-if, not a forecast")
    customers, after_sale = None, ""
    if customer_logs:
        customers, after_sale = _fit_customers(cal, as_of, purchases, terms, customer_segment, customers_file,
                                               [str(p) for p in customer_logs])
    header = ["# Calibrated by forecaster from " + _comment(source) + f", as known on {as_of}.",
              "# Counts behind each estimate:"] + [f"#   {_comment(n)}" for n in cal.notes]
    header += ["# Evidence for the optional parts (in-history walk-forward):"] + [
        f"#   {_comment(line)}" for line in evidence_lines(cal)]
    header += ["# Warnings:"] + [f"#   {_comment(w)}" for w in cal.warnings] if cal.warnings else []
    text = "\n".join(header) + "\n" + dump_yaml(cal.scenario)
    pipeline = pipeline_csv(cal.pipeline) if cal.pipeline else None
    check_scenario(text, pipeline_file, pipeline, output=output, history=source, as_of=as_of,
                   extra_files={customers_file: customers} if customers is not None else None)
    files = {output.name: text}
    if pipeline is not None:
        files[pipeline_file] = pipeline
    if customers is not None:
        files[customers_file] = customers
    if report:
        files[report_file] = calibration_report(cal, source, as_of)
    check_outputs(targets, inputs)  # again: the folder may have changed while calibrating
    from forecaster.results.files import write_together

    write_together(folder, files, shown)
    for w in _shown_warnings(cal.warnings, list(cal.scenario.get("segments", {}))):
        click.echo(f"warning: {w}", err=True)
    ev = cal.evidence
    if ev.get("coverage_p10_p90") is not None:
        from forecaster.history.selection import spread_said

        click.echo(f"Kept {', '.join(cal.kept) or 'no optional part'}; in-history P10-P90 coverage of monthly won "
                   f"deals {ev['coverage_p10_p90']:.0%} over {len(ev['cutoffs'])} month ends x {ev['months']} months "
                   f"({spread_said(cal.kept, ev['widen'])}).")
    else:
        click.echo(f"Kept {', '.join(cal.kept) or 'no optional part'}; {ev.get('note', 'no in-history evidence')}.")
    if after_sale:
        click.echo(after_sale)
    click.echo("Wrote " + " and ".join(str(output.parent / name) for name in files))


def with_currency(scenario: dict, currency: str) -> dict:
    """``scenario`` with its ``currency`` label, placed after its description."""
    out: dict = {}
    for key, value in scenario.items():
        out[key] = value
        if key == "description":
            out["currency"] = currency
    out.setdefault("currency", currency)
    return out


def evidence_lines(cal) -> list[str]:
    """The in-history walk-forward behind the choice of optional parts, as lines of text."""
    ev = cal.evidence
    if not ev.get("steps"):
        return [ev.get("note", "no evidence")]
    lines = [f"month ends {', '.join(ev['cutoffs'])}, {ev['months']} months each; score: mean CRPS of monthly won "
             "deals (and revenue) over their mean, lower is better"]
    lines.append(f"none: {ev['score_base']:.4f}")
    from forecaster.history.selection import spread_said

    for step in ev["steps"][1:]:
        tried = ", ".join(f"+{m} {v:.4f}" for m, v in step["tried"].items())
        verdict = ": added" if step.get("added") else (f": not added, it {step['why_not']}" if "why_not" in step else "")
        lines.append(f"tried {tried}; best {step['best']}{verdict}")
    added = [m for m in ev["kept"] if m not in ev.get("selected", ev["kept"])]
    if added:
        before = ev["coverage_before_widening"]
        lines.append(f"the honesty check added {', '.join(added)}: with the parts chosen above, P10-P90 covered "
                     f"{before:.0%} of the inner months' won deals"
                     + (", short of 80%" if before < 0.8 else f", and with {', '.join(added)} scaled the score was lower"))
    lines.append(f"kept: {', '.join(ev['kept']) or 'none'} ({ev['score']:.4f}); {spread_said(ev['kept'], ev['widen'])}; "
                 f"P10-P90 coverage {ev['coverage_before_widening']:.0%} before widening, "
                 f"{ev['coverage_p10_p90']:.0%} after")
    return lines


def calibration_report(cal, history: Path | str, as_of: date) -> str:
    """A short Markdown report of a calibration: the parts fitted and kept, and the evidence."""
    out = [f"# Calibration of {_comment(history)} as known on {as_of}", "",
           "| optional part | fitted | kept |", "|---|---|---|"]
    from forecaster.history.calibrate import why_not_fitted
    from forecaster.history.parts import MECHANISMS

    for m in MECHANISMS:
        fitted = cal.mechanisms.get(m)
        said = fitted.summary if fitted else "not fitted: " + why_not_fitted(cal.notes, m)
        out.append(f"| {m} | {_comment(said).replace('|', chr(92) + '|')} | "
                   f"{'yes' if m in cal.kept else 'no'} |")
    out += ["", "## Evidence (walk-forward inside the history)", ""] + [f"- {_comment(x)}" for x in evidence_lines(cal)]
    out += ["", "## What was fitted", ""] + [f"- {_comment(n)}" for n in cal.notes]
    if cal.warnings:
        out += ["", "## Warnings", ""] + [f"- {_comment(w)}" for w in cal.warnings]
    return "\n".join(out) + "\n"


def check_scenario(text: str, pipeline_file: str, pipeline: str | None, *, output: Path, history: Path | str,
                   as_of: date, extra_files: dict[str, str] | None = None) -> None:
    """Check a calibrated scenario as ``forecaster validate`` would read it, before anything
    is written: ``text`` is the YAML file, ``pipeline`` the CSV it names as ``pipeline_file``
    (None when there is none), checked in a temporary folder with ``extra_files`` (name ->
    text: the installed base's CSV) beside it.

    Raises
    ------
    ForecasterError
        Listing the problems, when the scenario is refused.
    """
    import tempfile

    from forecaster.errors import ScenarioError
    from forecaster.scenario.loading import build_scenario
    from forecaster.scenario.yamlio import load_yaml

    try:
        with tempfile.TemporaryDirectory(prefix="forecaster-calibrate-") as tmp:
            if pipeline is not None:
                (Path(tmp) / pipeline_file).write_text(pipeline, encoding="utf-8", newline="")
            for extra, content in (extra_files or {}).items():
                (Path(tmp) / extra).write_text(content, encoding="utf-8", newline="")
            data, lines = load_yaml(text, output.name)
            build_scenario(data, lines, output.name, base_dir=Path(tmp), raw=text.encode(), source=None)
    except ScenarioError as exc:
        raise _refused(exc, output=output, history=history, as_of=as_of) from None
    except OSError as exc:  # the temporary copy could not be written (a name too long, a full disk)
        from forecaster.errors import OutputError
        from forecaster.results.files import shorten

        raise OutputError(f"-o {shorten(output)}: cannot check the calibrated scenario in a temporary folder: "
                          f"{exc.strerror or exc}; nothing was written") from None


def _refused(exc, *, output: Path, history: Path | str, as_of: date):
    """The error for a calibrated scenario that the format refuses (a ScenarioError ``exc``)."""
    from dataclasses import replace

    from forecaster.errors import ForecasterError

    # no line numbers: they would point into a file that is not there
    problems = "\n".join(f"  {replace(p, line=None).render(output.name)}" for p in exc.problems)
    return ForecasterError(
        f"{history}: the scenario calibrated on {as_of} is not valid, so nothing was written ({output} is as it "
        f"was):\n{problems}\nThis is a bug in calibration (what it fitted on this history breaks the format); "
        "please report it.")


def _read_customer_logs(transactions: Path | None, subscriptions: Path | None, transaction_mapping,
                        subscription_mapping, term_outcomes, drop_bad_rows: bool, warnings: list):
    """The purchases and terms of ``--transactions`` and ``--subscriptions`` (None where not
    given). A usage error for a malformed map, or a map of a log not given."""
    from forecaster.history.customers import (
        SUBSCRIPTION_FIELDS,
        TRANSACTION_FIELDS,
        column_map,
        parse_term_outcomes,
        read_subscriptions,
        read_transactions,
    )

    for option, given, log in (("--transaction-column", transaction_mapping, transactions),
                               ("--subscription-column", subscription_mapping, subscriptions),
                               ("--term-outcome", term_outcomes, subscriptions)):
        if given and log is None:
            raise click.UsageError(f"{option} maps {'--transactions' if 'transaction' in option else '--subscriptions'}"
                                   "' columns or values; give that log")
    try:
        t_columns = column_map(transaction_mapping, TRANSACTION_FIELDS)
    except ValueError as exc:
        raise click.UsageError(f"--transaction-column {exc}") from None
    try:
        s_columns = column_map(subscription_mapping, SUBSCRIPTION_FIELDS)
    except ValueError as exc:
        raise click.UsageError(f"--subscription-column {exc}") from None
    try:
        outcome_map = parse_term_outcomes(term_outcomes)
    except ValueError as exc:
        raise click.UsageError(f"--term-outcome: {exc}") from None
    purchases = terms = None
    if transactions is not None:
        purchases = read_transactions(transactions, t_columns, warnings=warnings, drop_bad_rows=drop_bad_rows)
    if subscriptions is not None:
        terms = read_subscriptions(subscriptions, s_columns, outcome_map, warnings=warnings,
                                   drop_bad_rows=drop_bad_rows)
    return purchases, terms


def _fit_customers(cal, as_of: date, purchases, terms, segment: str | None, customers_file: str,
                   logs: list[str]) -> tuple[str | None, str]:
    """Fit the after-sale models into ``cal``'s scenario (each segment's ``customer`` block,
    the ``customers`` file's name) and notes: the installed base's CSV (None when empty) and
    a line saying what was fitted."""
    from forecaster.errors import ForecasterError
    from forecaster.history.customers import BGNBDFit, calibrate_customers, customers_csv
    from forecaster.history.readers import same_segment

    segments = list(cal.scenario["segments"])
    if segment is not None:
        segment = same_segment(segment, segments)  # spelt as the scenario spells it (case, spaces)
    if segment is not None and segment not in segments:
        raise click.UsageError(f"--segment {segment!r} is not a segment of the calibrated scenario (its segments: "
                               f"{', '.join(segments)})")
    default = segment if segment is not None else (segments[0] if len(segments) == 1 else None)
    rows = [r for r in (purchases or []) + (terms or []) if r.segment is None]
    if rows and default is None:
        raise click.UsageError(f"the calibrated scenario has segments {', '.join(segments)}: say which one "
                               f"{' and '.join(logs)} describe{'s' * (len(logs) == 1)} with --segment NAME (or give "
                               "the logs a segment column)")
    try:
        fitted = calibrate_customers(segments, as_of, purchases=purchases, terms=terms, default_segment=default)
    except ValueError as exc:
        raise ForecasterError(f"{' and '.join(logs)}: cannot calibrate the after-sale models on {as_of}: {exc}") \
            from None
    for seg, block in fitted.blocks.items():
        cal.scenario["segments"][seg]["customer"] = block
    cal.notes.extend(fitted.notes)
    said = []
    for seg, fit in fitted.fits.items():
        if isinstance(fit, BGNBDFit):
            said.append(f"{seg} buys again {fit.per_month:.3g} times a customer month, dropout {fit.dropout:.3g} "
                        "after each repeat purchase")
        else:
            said.append(f"{seg} renews with probability {fit.renew:.3f} (concentration {fit.concentration:.3g})")
    line = f"After the sale, as known on {as_of}: " + "; ".join(said)
    if not fitted.rows:
        cal.warnings.append(f"no customer of {' or '.join(logs)} is active on {as_of}: no installed base written")
        return None, line + "."
    cal.scenario["customers"] = {"file": customers_file}
    return customers_csv(fitted.rows), line + f"; installed base: {len(fitted.rows):,} customers."
