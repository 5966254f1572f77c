"""``forecaster report``: a self-contained HTML page and a Markdown summary of a run."""
from __future__ import annotations

import click

from forecaster.cli import main


@main.command("report")
@click.argument("folder", type=click.Path(file_okay=False, path_type=str))
def report_command(folder):
    """Write the reports of FOLDER: a run (report.html, report.md), compare.html, sensitivity.html.

    The page needs no network to view (inline CSS and SVG): headline numbers, a fan chart
    of revenue per period, a histogram of total revenue with the target, the funnel per
    segment, a table per segment, commission per rep and, when segments have customers,
    recognised revenue against bookings, active customers per period and the after-sale
    totals. A folder whose files are missing,
    corrupt or not of the shape forecaster writes is an error naming the file (exit 2).

    \b
    Example:
      forecaster run scenarios/saas-quarter.yaml --out out/saas && forecaster report out/saas
    """
    from forecaster.present.console import printable
    from forecaster.present.report import write_report

    written = write_report(folder)
    click.echo("Wrote " + " and ".join(printable(p) for p in written.values()))
