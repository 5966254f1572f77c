"""Exceptions raised by forecaster.

Every error a user can cause derives from :class:`ForecasterError`; the command line turns
these into a message and exit status 2, and anything else into exit status 1.
"""
from __future__ import annotations

from dataclasses import dataclass


class ForecasterError(Exception):
    """Root of every error forecaster raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file.

    Parameters
    ----------
    path : str
        Key path inside the scenario, e.g. ``segments.smb.funnel.mql.convert``; empty for
        the document itself.
    message : str
        What was expected and what was found.
    line : int or None
        1-based line in the file where the value stands, when known.
    file : str or None
        File the problem is in, when it is not the scenario file itself (a pipeline CSV).
    more : int
        When > 0, this entry is not a problem but says that ``more`` further problems were
        found and not listed ("and 579 more problems like these"): they count in the total.
    """

    path: str
    message: str
    line: int | None = None
    file: str | None = None
    more: int = 0

    def render(self, default_file: str) -> str:
        where = self.file or default_file
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.path} {self.message}" if self.path else f"{where}: {self.message}"


class ScenarioError(ForecasterError, ValueError):
    """A scenario file (or a file it names) breaks the format.

    Holds every problem found, so that a user fixes them all in one pass, and an optional
    ``hint``: what to do about them (an option that reads them), shown last and not counted
    as a problem.
    """

    def __init__(self, file: str, problems: list[Problem], hint: str | None = None):
        self.file = file
        self.problems = list(problems)
        self.hint = hint
        super().__init__(self._text())

    def _text(self) -> str:
        lines = [p.render(self.file) for p in self.problems]
        count = sum(p.more or 1 for p in self.problems)  # an "and N more" line counts its N, not itself
        if len(lines) == 1:
            text = lines[0]
        else:
            text = f"{self.file}: {count:,} problems\n" + "\n".join("  " + line for line in lines)
        return text + (f"\n  {self.hint}" if self.hint else "")


class OutputError(ForecasterError, OSError):
    """The results could not be written where they were asked for."""
