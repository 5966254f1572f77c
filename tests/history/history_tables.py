"""A synthetic Salesforce-like opportunity history, written as CSV, Parquet, XLSX, a DuckDB
database or SQL for PostgreSQL, for the tests that read one history from each source.

Also a script, for .ci/postgres.sh: ``python tests/history/history_tables.py csv OUT.csv
[N SEED]`` writes the CSV that the PostgreSQL test compares its server's rows with.
"""
from __future__ import annotations

import csv
import math
import random
import sys
from datetime import date, timedelta
from pathlib import Path

AS_OF = date(2026, 6, 30)
COLUMNS = ("Id", "Name", "StageName", "CreatedDate", "CloseDate", "Amount", "Segment")
SQL_TYPES = ("VARCHAR", "VARCHAR", "VARCHAR", "DATE", "DATE", "DOUBLE", "VARCHAR")
OPEN_STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
               "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review")
SEGMENTS = ("smb", "mid", "ent")
N, SEED = 400, 14


def synthetic_history(n: int = N, seed: int = SEED, as_of: date = AS_OF) -> list[tuple]:
    """Rows (Id, Name, StageName, CreatedDate, CloseDate, Amount, Segment), typed: the open
    deals in Salesforce's standard open stages with an expected CloseDate (some past), a
    few open deals without an amount, every value a plain one. Python's own generator, so
    that .ci/postgres.sh can seed a server before any package is installed."""
    rng = random.Random(seed)
    first = as_of - timedelta(days=540)
    rows = []
    for i in range(n):
        created = first + timedelta(days=rng.randrange(0, 540))
        end = created + timedelta(days=int(rng.lognormvariate(math.log(30), 0.6)))
        amount: float | None = round(rng.lognormvariate(9, 0.7), 2)
        if end > as_of:
            stage = rng.choice(OPEN_STAGES)
            close = created + timedelta(days=rng.randrange(5, 60))  # expected, not an event
            if rng.random() < 0.1:
                amount = None
        else:
            stage = "Closed Won" if rng.random() < 0.35 else "Closed Lost"
            close = end
        rows.append((f"006{i:06d}", f"Acme, deal {i}", stage, created, close, amount,
                     rng.choice(SEGMENTS)))
    return rows


def _text(value, date_style: str = "iso") -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return {"iso": value.isoformat(), "us": value.strftime("%m/%d/%Y"), "eu": value.strftime("%d/%m/%Y"),
                "de": value.strftime("%d.%m.%Y")}[date_style]
    return str(value)


def write_csv(rows, path: Path, date_style: str = "iso") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows([_text(v, date_style) for v in row] for row in rows)
    return path


def _load(con, rows, table: str = "deals") -> None:
    """The rows into a typed DuckDB table (through a CSV, fast for 100,000 rows)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = write_csv(rows, Path(tmp) / "h.csv")
        types = ", ".join(f"'{c}': '{t}'" for c, t in zip(COLUMNS, SQL_TYPES))
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv('{csv_path}', header = true, "
                    f"columns = {{{types}}}, quote = '\"', escape = '\"', delim = ',')")


def write_parquet(rows, path: Path) -> Path:
    import duckdb

    con = duckdb.connect()
    _load(con, rows)
    con.execute(f"COPY deals TO '{path}' (FORMAT parquet)")
    con.close()
    return path


def write_duckdb(rows, path: Path, table: str = "deals") -> Path:
    import duckdb

    con = duckdb.connect(str(path))
    _load(con, rows, table)
    con.close()
    return path


def write_xlsx(rows, path: Path, extra_sheets: int = 0) -> Path:
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Opportunities")
    ws.append(COLUMNS)
    for row in rows:
        ws.append(list(row))
    for k in range(extra_sheets):
        wb.create_sheet(f"Notes {k + 1}").append(["not deals"])
    wb.save(path)
    return path


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "csv":
        sys.exit("usage: history_tables.py csv OUT.csv [N SEED]")
    n, seed = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (N, SEED)
    write_csv(synthetic_history(n, seed), Path(sys.argv[2]))
