"""Where a deal history lives: a file (CSV, Parquet, XLSX), a DuckDB database or a
PostgreSQL server, read into one :class:`Table` of rows for :mod:`forecaster.history.readers`.

What a history is, is decided by its content, not its name: a file starting with Parquet's
``PAR1`` is Parquet, a zip archive is an XLSX workbook, a file with DuckDB's header is a
DuckDB database, anything else is CSV text. A database (DuckDB file or ``postgresql://``
URL) is read through a query (``--query "SELECT ..."``), which runs read-only.

============  =================================================================================
CSV           Python's csv module over UTF-8 text (bounded, regular file, see :func:`read_text`),
              comma-, semicolon- or tab-separated (see :func:`delimiter`): cells are text,
              each row located by its first line in the file
Parquet       DuckDB (embedded, parquet bundled): cells typed (dates, numbers), rows numbered 1, 2...
XLSX          openpyxl, read-only and streamed, the first worksheet: cells typed, rows located by
              the sheet's own row numbers (the header's row is the first not blank)
DuckDB        DuckDB, the file opened read-only and external access disabled (the query reads
              the database's tables, no other file, extension or database), ``--query`` run:
              typed, rows numbered 1, 2...
PostgreSQL    psycopg (the ``postgres`` extra, imported when needed), a read-only transaction with
              a connect timeout and a statement timeout, ``--query`` through a server-side cursor
============  =================================================================================

Every kind has the same bounds: at most :data:`MAX_BYTES` of file (or of cell text fetched),
:data:`MAX_ROWS` rows, :data:`MAX_COLUMNS` columns and :data:`MAX_RECORD_CHARS` characters a
row, so that a stray dump or a query returning 10^8 rows is refused rather than read. Every
refusal is a :class:`~forecaster.errors.ScenarioError` naming the history (a URL shown without
its password), what was found and what was expected.
"""
from __future__ import annotations

import csv
import io
import os
import re
import stat
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from forecaster.errors import Problem, ScenarioError

MAX_BYTES = 256 * 2**20
"""The largest history file read [bytes]: more is refused, not read (a stray /dev/zero or
a database dump would otherwise fill the memory). For a query, the most text fetched."""
MAX_RECORD_CHARS = 2**20
"""The longest row [characters, its quoted cells' line breaks included]."""
MAX_COLUMNS = 10_000
"""The most columns a header may have."""
MAX_ROWS = 5_000_000
"""The most rows a history may have (a CSV of :data:`MAX_BYTES` holds about as many)."""
MAX_CACHED = 16 * 2**20
"""A CSV file of at most this many characters is parsed once and its rows kept for the
second pass over them; a larger one is parsed again (its rows would take several times its
size in memory)."""
MAX_UNZIPPED = 4 * MAX_BYTES
"""The most an XLSX workbook may hold once unzipped [bytes] (its XML is several times the
CSV it stands for; more is a zip bomb or not a history)."""
CONNECT_TIMEOUT = 10
"""Seconds to wait for a database server to answer before giving up."""
QUERY_TIMEOUT = 600
"""Seconds a query may run (the server's, or DuckDB's) before it is stopped and refused."""
FETCH = 10_000
"""Rows fetched at a time from a query."""

POSTGRES_EXTRA = "pip install 'forecaster[postgres]'"

Cell = object
"""A cell: text (CSV, or a text column), or a typed value (date, datetime, int, float,
Decimal, bool) from Parquet, XLSX or a query; None or "" when blank."""


@dataclass
class Table:
    """A history's rows, wherever they came from.

    ``shown`` names the history in messages; ``header`` holds its column names (stripped);
    ``header_at`` where the header is (its line or row, None for a query); ``unit`` how a
    row's position is said (``line`` in a CSV file, ``row`` elsewhere); ``rows()`` iterates
    (position, cells) over the rows whose cells are not all blank, as often as asked.
    """
    shown: str
    kind: str
    header: list[str]
    header_at: int | None
    unit: str
    rows: Callable[[], Iterator[tuple[int, Sequence[Cell]]]]
    notes: list[str] = field(default_factory=list)
    """What was read that the user may not expect (a workbook's other sheets left out)."""
    sheet: str | None = None
    """The worksheet read (a workbook's first), None for other kinds."""
    other_sheets: Callable[[], dict[str, list[str]]] | None = None
    """A workbook's other sheets, each with its header (the names on its first row not blank),
    read when asked (for a message: which sheet holds the columns looked for)."""

    def at(self, position: int | None) -> str:
        """``line 5`` or ``row 5``."""
        return f"{self.unit} {position}"


def refused(shown: str, message: str, line: int | None = None) -> ScenarioError:
    return ScenarioError(shown, [Problem("", message, line=line)])


# --- what a history is -------------------------------------------------------------------

_URL = re.compile(r"postgres(?:ql)?://", re.IGNORECASE)


def is_url(history: str | Path) -> bool:
    """Whether ``history`` names a PostgreSQL server (``postgresql://`` or ``postgres://``)."""
    return isinstance(history, str) and _URL.match(history.strip()) is not None


def shown_name(history: str | Path) -> str:
    """``history`` as messages and outputs name it: a URL without its password."""
    if not is_url(history):
        return str(history)
    parts = urlsplit(str(history).strip())
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{host}"
    query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_MAGIC = ((b"PAR1", 0, "parquet"), (b"PK\x03\x04", 0, "xlsx"), (b"DUCK", 8, "duckdb"))


def kind_of(path: Path) -> str:
    """``parquet``, ``xlsx``, ``duckdb`` or ``csv``, from the file's first bytes (a file
    that cannot be opened is ``csv``: reading it then says why)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return "csv"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "csv"
        head = os.read(fd, 16)
    except OSError:
        return "csv"
    finally:
        os.close(fd)
    for magic, offset, kind in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return kind
    return "csv"


def open_table(history: str | Path, query: str | None = None, *,
               expected: str = "a CSV file, Parquet file or XLSX workbook (one row per deal)") -> Table:
    """The rows of ``history``: a file (CSV, Parquet, XLSX), or a DuckDB database file or
    ``postgresql://`` URL with ``query``.

    Raises
    ------
    ScenarioError
        When the history cannot be read as a table (see the module docstring); the
        message names it, what was found and what was expected.
    ValueError
        A usage error: ``query`` given for a file or missing for a database.
    """
    shown = shown_name(history)
    if is_url(history):
        if not query or not query.strip():
            raise ValueError(f"{shown} is a database: give --query \"SELECT ...\" (the rows of the history, one a deal)")
        return _postgres(str(history).strip(), query, shown)
    path = Path(history)
    kind = kind_of(path)
    named = _SUFFIXES.get(path.suffix.lower())
    if named is not None and named != kind and path.is_file():
        what, magic = _NAMED[named]
        raise refused(shown, f"is named {path.suffix} but is not {what}: {magic}; found "
                             f"{_KIND_NAMES[kind] if kind != 'csv' else 'other content'} (save it again as {what}, or "
                             "name it for what it holds)")
    if kind == "duckdb":
        if not query or not query.strip():
            raise ValueError(f"{shown} is a DuckDB database: give --query \"SELECT ...\" (the rows of the history, "
                             f"one a deal){_duckdb_tables(path)}")
        return _duckdb_query(path, query, shown)
    if query is not None:
        raise ValueError(f"--query reads a database (a DuckDB file or a postgresql:// URL); {shown} is "
                         f"{_KIND_NAMES[kind]}, read whole")
    _check_file(path, shown, expected)
    if kind == "parquet":
        return _parquet(path, shown)
    if kind == "xlsx":
        return _xlsx(path, shown)
    return csv_table(path, shown, expected)


_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".xlsx": "xlsx", ".xlsm": "xlsx", ".duckdb": "duckdb",
             ".ddb": "duckdb"}
"""Names that say what a file is: one that holds something else is refused (a CSV named
.csv is not checked: any text is read as CSV, and a .csv holding Parquet is read as Parquet)."""
_NAMED = {"parquet": ("a Parquet file", "it does not start with PAR1"),
          "xlsx": ("an XLSX workbook", "it is not a zip archive"),
          "duckdb": ("a DuckDB database", "it has no DuckDB header")}
_KIND_NAMES = {"csv": "a CSV file", "parquet": "a Parquet file", "xlsx": "an XLSX workbook",
               "duckdb": "a DuckDB database"}

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _check_file(path: Path, shown: str, expected: str) -> None:
    """A regular file of at most :data:`MAX_BYTES` (without opening it for reading: a FIFO
    is refused without waiting for a writer)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise refused(shown, f"does not exist; expected {expected}") from None
    except OSError as exc:
        raise refused(shown, f"cannot be read: {exc.strerror or exc}; expected {expected}") from None
    _check_stat(st, shown, expected)


def _too_big(shown: str, expected: str):
    return refused(shown, f"is larger than {MAX_BYTES // 2**20} MiB, the most a history may be; expected {expected} "
                          "(leave out the columns not needed, or the oldest rows)")


def _check_stat(st: os.stat_result, shown: str, expected: str) -> None:
    """Refuse a folder, anything not a regular file, or a file over :data:`MAX_BYTES`."""
    if stat.S_ISDIR(st.st_mode):
        raise refused(shown, f"is a folder; expected {expected}")
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise refused(shown, f"is {kind}, not a regular file; expected {expected}")
    if st.st_size > MAX_BYTES:
        raise _too_big(shown, expected)


# --- CSV -----------------------------------------------------------------------------------

def read_text(path: Path, shown: str, expected: str = "a CSV file (one row per deal)") -> str:
    """The text of a history file: a regular file of at most :data:`MAX_BYTES` of UTF-8.

    Never blocks (a FIFO is refused without waiting for a writer) and never reads more than
    :data:`MAX_BYTES` + 1 bytes (``/dev/zero``, a file that grows).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise refused(shown, f"does not exist; expected {expected}") from None
    except IsADirectoryError:
        raise refused(shown, f"is a folder; expected {expected}") from None
    except OSError as exc:
        raise refused(shown, f"cannot be read: {exc.strerror or exc}; expected {expected}") from None
    try:
        _check_stat(os.fstat(fd), shown, expected)
        with open(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise refused(shown, f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:  # it grew while read
        raise _too_big(shown, expected)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise refused(shown, "is UTF-16 text; save it as UTF-8 CSV")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise refused(shown, f"is not text: it holds a NUL byte (byte {nul}), so it is a binary file or not UTF-8 "
                             f"(UTF-16?); expected {expected}, saved as UTF-8", line=raw.count(b"\n", 0, nul) + 1)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise refused(shown, f"is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV",
                      line=line) from None


class _LongRow(Exception):
    pass


DELIMITERS = (",", ";", "\t")
"""The delimiters a CSV file may use: the comma, or the semicolon of a European Excel export,
or a tab."""


def delimiter(text: str) -> str:
    """The delimiter of a CSV file's text, from its header (its first line not blank): the
    comma, unless the header is one field with it and more with a semicolon or a tab (the
    one giving the most fields)."""
    for line in io.StringIO(text[:MAX_RECORD_CHARS], newline=""):
        if not line.strip():
            continue

        def fields(d: str, line: str = line) -> int:
            try:
                return len(next(csv.reader([line], delimiter=d), []))
            except csv.Error:
                return 0

        if fields(",") > 1:
            return ","
        best = max(DELIMITERS[1:], key=fields)
        return best if fields(best) > 1 else ","
    return ","


def records(text: str, shown: str, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """Each CSV record whose cells are not all blank, the header first, as (its first line
    in the file, its cells); a record longer than :data:`MAX_RECORD_CHARS` is refused.
    ``delimiter``: the cells' separator (see :func:`delimiter`)."""
    source = io.StringIO(text, newline="")
    size = 0

    def lines():
        nonlocal size
        while piece := source.readline(MAX_RECORD_CHARS + 1):
            size += len(piece)
            if size > MAX_RECORD_CHARS:
                raise _LongRow
            yield piece

    reader = csv.reader(lines(), delimiter=delimiter)
    line = 1
    try:
        for cells in reader:
            first, line, size = line, reader.line_num + 1, 0  # a quoted cell may span lines
            if any(c.strip() for c in cells):
                yield first, cells
    except csv.Error as exc:
        raise refused(shown, f"is not a readable CSV file: {exc}", line=line) from None
    except _LongRow:
        raise refused(shown, f"has a row longer than {MAX_RECORD_CHARS:,} characters (a quote never closed?); "
                             "expected a CSV file (one row per deal)", line=line) from None


def csv_table(path: Path, shown: str, expected: str = "a CSV file (one row per deal)") -> Table:
    """A CSV history: its text read once, its records parsed on each ``rows()``."""
    text = read_text(path, shown, expected)
    sep = delimiter(text)
    first = next(records(text, shown, sep), None)
    if first is None:
        raise refused(shown, "is empty; expected a header row and one row per deal")

    cached: list[tuple[int, list[str]]] = []

    def rows():
        if cached:
            return iter(cached)
        it = records(text, shown, sep)
        next(it)
        if len(text) > MAX_CACHED:
            return it
        cached.extend(it)
        return iter(cached)

    notes = [f"read as {_SEPARATED[sep]}-separated (its header has no comma)"] if sep != "," else []
    return Table(shown, "CSV file", [c.strip() for c in first[1]], first[0], "line", rows, notes)


_SEPARATED = {",": "comma", ";": "semicolon", "\t": "tab"}


# --- typed sources: bounded fetching -------------------------------------------------------------

def _size(cell: Cell) -> int:
    return len(cell) if isinstance(cell, str) else 8


class _Bounds:
    """Counts what was fetched, refusing past :data:`MAX_ROWS`, :data:`MAX_BYTES` of text or
    a row of more than :data:`MAX_RECORD_CHARS`."""

    def __init__(self, shown: str, unit: str, what: str):
        self.shown, self.unit, self.what = shown, unit, what
        self.rows = self.chars = 0

    def add(self, position: int, cells: Sequence[Cell]) -> None:
        self.rows += 1
        if self.rows > MAX_ROWS:
            raise refused(self.shown, f"{self.what} more than {MAX_ROWS:,} rows, the most a history may have "
                                      "(leave out the oldest deals, or those of other teams)")
        row = sum(_size(c) for c in cells)
        if row > MAX_RECORD_CHARS:
            raise refused(self.shown, f"{self.unit} {position} holds {row:,} characters, more than the "
                                      f"{MAX_RECORD_CHARS:,} a row may have; expected one row per deal")
        self.chars += row
        if self.chars > MAX_BYTES:
            raise refused(self.shown, f"{self.what} more than {MAX_BYTES // 2**20} MiB of text, the most a history "
                                      "may be (leave out the columns not needed, or the oldest rows)")


def _typed_table(shown: str, kind: str, header: list, batches, what: str) -> Table:
    """A table of typed rows (numbered 1, 2, ...) fetched from ``batches`` (lists of tuples)."""
    names = ["" if h is None else str(h).strip() for h in header]
    if not names:
        raise refused(shown, "has no columns; expected a header row and one row per deal")
    if len(names) > MAX_COLUMNS:
        raise refused(shown, f"has {len(names):,} columns, more than the {MAX_COLUMNS:,} a history may have")
    bounds = _Bounds(shown, "row", what)
    rows: list[tuple[int, Sequence[Cell]]] = []
    for batch in batches:
        for cells in batch:
            n = bounds.rows + 1
            bounds.add(n, cells)
            if any(c is not None and (not isinstance(c, str) or c.strip()) for c in cells):
                rows.append((n, cells))
    return Table(shown, kind, names, None, "row", lambda: iter(rows))


def _duckdb_connect(database: str | Path = ":memory:", read_only: bool = False):
    import duckdb

    # never reach for the network (an extension autoloaded would hang without internet);
    # dates of timestamps with a time zone read in UTC, as a text timestamp's date is read
    config: dict[str, str | bool | int | float | list[str]] = {"autoinstall_known_extensions": False,
                                                              "autoload_known_extensions": False}
    con = duckdb.connect(str(database), read_only=read_only, config=config)
    con.execute("SET TimeZone = 'UTC'")
    return con


def _duckdb_fetch(con, sql: str, params: list, shown: str, kind: str, what: str) -> Table:
    """Run ``sql`` on a DuckDB connection and fetch its rows, stopped after
    :data:`QUERY_TIMEOUT` seconds."""
    import duckdb

    timer = threading.Timer(QUERY_TIMEOUT, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        cur = con.execute(sql, params)
        if cur.description is None:
            raise refused(shown, f"{what} no rows (is it a SELECT?); expected one row per deal")
        header = [d[0] for d in cur.description]

        def batches():
            while batch := cur.fetchmany(FETCH):
                yield batch

        return _typed_table(shown, kind, header, batches(), what)
    except duckdb.InterruptException:
        raise refused(shown, f"{what} nothing within {QUERY_TIMEOUT} s; stopped (a query that long is not a "
                             "history: filter or aggregate it)") from None
    except duckdb.PermissionException as exc:
        raise refused(shown, f"cannot be run: {_first_line(exc)}; {_READ_ONLY}") from None
    except duckdb.Error as exc:
        if "configuration has been locked" in str(exc):
            raise refused(shown, f"cannot be run: {_first_line(exc)}; {_READ_ONLY}") from None
        raise refused(shown, f"cannot be read as {kind}: {_first_line(exc)}") from None
    finally:
        timer.cancel()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _parquet(path: Path, shown: str) -> Table:
    con = _duckdb_connect()
    try:
        return _duckdb_fetch(con, "SELECT * FROM read_parquet(?)", [str(path)], shown, "a Parquet file", "holds")
    finally:
        con.close()


def _clean_query(query: str) -> str:
    """The query without the semicolons and blanks that may end it."""
    return re.sub(r"[\s;]+$", "", query)


def _duckdb_tables(path: Path) -> str:
    """``; its tables: deals, accounts`` (empty when they cannot be listed)."""
    try:
        con = _duckdb_connect(path, read_only=True)
    except Exception:  # noqa: BLE001 - only a hint for a message
        return ""
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                           "ORDER BY table_name LIMIT 21").fetchall()]
    except Exception:  # noqa: BLE001
        return ""
    finally:
        con.close()
    if not names:
        return "; it holds no table"
    return "; its tables: " + ", ".join(names[:20]) + (" and more" if len(names) > 20 else "")


_READ_ONLY = ("the query may only read the database's tables (not other files, extensions, other databases or "
              "settings); expected one SELECT over its tables")


def _duckdb_query(path: Path, query: str, shown: str) -> Table:
    import duckdb

    _check_file(path, shown, "a DuckDB database file")
    try:
        con = _duckdb_connect(path, read_only=True)
    except duckdb.Error as exc:
        raise refused(shown, f"cannot be opened as a DuckDB database: {_first_line(exc)}") from None
    try:
        # the query may read the database's own tables, nothing else: no other file read or
        # written (COPY ... TO, read_csv, ATTACH), no extension installed or loaded, and the
        # setting locked so that the query cannot turn it back on
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return _duckdb_fetch(con, _clean_query(query), [], f"{shown} (--query)", "a DuckDB query", "the query returns")
    finally:
        con.close()


# --- XLSX ----------------------------------------------------------------------------------------

def _xlsx(path: Path, shown: str) -> Table:
    """The first worksheet of an XLSX workbook, streamed (openpyxl's read-only mode), its
    cached values rather than its formulas."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            members = {i.filename for i in infos}
            unzipped = sum(i.file_size for i in infos)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise refused(shown, f"is not an XLSX workbook: it starts as a zip archive but cannot be read as one ({exc}); "
                             "expected a workbook saved by Excel, LibreOffice or another spreadsheet") from None
    if "xl/workbook.xml" not in members:
        raise refused(shown, "is a zip archive, not an XLSX workbook (no xl/workbook.xml in it); expected a CSV, "
                             "Parquet or XLSX file")
    if unzipped > MAX_UNZIPPED:
        raise refused(shown, f"unzips to {unzipped / 2**20:,.0f} MiB, more than the {MAX_UNZIPPED // 2**20:,} MiB a "
                             "history workbook may hold (a zip bomb, or not a history?)")
    import openpyxl  # type: ignore[import-untyped]

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds on a damaged workbook
        raise refused(shown, f"is not a readable XLSX workbook: {_first_line(exc)}") from None
    try:
        sheets = wb.worksheets
        if not sheets:
            raise refused(shown, "has no worksheet; expected one row per deal on its first sheet")
        sheet = sheets[0]
        sheet.reset_dimensions()  # a sheet's declared size may lie (A1:XFD1048576): read the rows it holds
        bounds = _Bounds(shown, "row", "holds")
        header: list[str] | None = None
        header_at = None
        rows: list[tuple[int, Sequence[Cell]]] = []
        try:
            for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
                bounds.add(number, cells)
                if not any(c is not None and (not isinstance(c, str) or c.strip()) for c in cells):
                    continue
                if header is None:
                    names = ["" if c is None else str(c).strip() for c in cells]
                    while names and not names[-1]:
                        names.pop()
                    if len(names) > MAX_COLUMNS:
                        raise refused(shown, f"has {len(names):,} columns, more than the {MAX_COLUMNS:,} a history "
                                             f"may have; expected a header row of column names (row {number})")
                    header, header_at = names, number
                else:
                    rows.append((number, cells))
        except ScenarioError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged sheet
            raise refused(shown, f"is not a readable XLSX workbook: {_first_line(exc)}") from None
    finally:
        wb.close()
    if header is None:
        raise refused(shown, f"is empty (its first sheet {sheet.title!r}); expected a header row and one row per deal")
    notes = [f"read its first sheet, {sheet.title!r}, and left out the other {len(sheets) - 1} "
             f"({', '.join(repr(s.title) for s in sheets[1:6])}{' and more' if len(sheets) > 6 else ''})"
             ] if len(sheets) > 1 else []
    others = [s.title for s in sheets[1:]]
    return Table(shown, "an XLSX workbook", header, header_at, "row", lambda: iter(rows), notes, sheet=sheet.title,
                 other_sheets=lambda: _xlsx_headers(path, others))


def _xlsx_headers(path: Path, titles: list[str], most: int = 20, rows: int = 50) -> dict[str, list[str]]:
    """The header of each of the sheets ``titles`` (the first ``most``) of a workbook: the
    names on its first row not blank among its first ``rows`` (empty when none or unreadable)."""
    import openpyxl

    headers: dict[str, list[str]] = {title: [] for title in titles}
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - only a hint for a message
        return headers
    try:
        for title in titles[:most]:
            try:
                sheet = wb[title]
                sheet.reset_dimensions()
                for cells in sheet.iter_rows(values_only=True, max_row=rows):
                    names = ["" if c is None else str(c).strip() for c in cells[:MAX_COLUMNS]]
                    if any(names):
                        while names and not names[-1]:
                            names.pop()
                        headers[title] = names
                        break
            except Exception:  # noqa: BLE001
                continue
    finally:
        wb.close()
    return headers


# --- PostgreSQL ----------------------------------------------------------------------------------

def _postgres(url: str, query: str, shown: str) -> Table:
    """Rows of ``query`` on a PostgreSQL server, in a read-only transaction, through a
    server-side cursor (so at most :data:`MAX_ROWS` + 1 rows are ever sent)."""
    try:
        import psycopg
    except ImportError:
        raise refused(shown, f"is a PostgreSQL URL, which needs psycopg: {POSTGRES_EXTRA}") from None
    params = {k.lower() for k, _ in parse_qsl(urlsplit(url).query)}
    kwargs: dict[str, object] = {}
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
    if "options" not in params:
        kwargs["options"] = f"-c statement_timeout={QUERY_TIMEOUT * 1000} -c TimeZone=UTC"
    try:
        conn = psycopg.connect(url, **kwargs)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        raise refused(shown, f"cannot connect: {_pg_message(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a malformed URL (psycopg.ProgrammingError is a psycopg.Error)
        raise refused(shown, f"is not a usable PostgreSQL URL: {_first_line(exc)}") from None
    shown_query = f"{shown} (--query)"
    try:
        conn.read_only = True
        with conn.cursor(name="forecaster_history") as cur:
            cur.itersize = FETCH
            cur.execute(_clean_query(query))
            if cur.description is None:
                raise refused(shown_query, "returns no rows (is it a SELECT?); expected one row per deal")
            header = [d.name for d in cur.description]

            def batches():
                while batch := cur.fetchmany(FETCH):
                    yield batch

            return _typed_table(shown_query, "a PostgreSQL query", header, batches(), "the query returns")
    except psycopg.errors.QueryCanceled:
        raise refused(shown_query, f"ran longer than {QUERY_TIMEOUT} s and was stopped (a query that long is not a "
                                   "history: filter or aggregate it)") from None
    except psycopg.Error as exc:
        raise refused(shown_query, f"cannot be run: {_pg_message(exc)}; expected one SELECT, run in a read-only "
                                   "transaction") from None
    finally:
        conn.close()


def _pg_message(exc: BaseException) -> str:
    """A psycopg error in one line: the server's own message when there is one (without
    its context, which quotes the cursor the query was declared in)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return " ".join(str(primary or exc).split()) or type(exc).__name__
