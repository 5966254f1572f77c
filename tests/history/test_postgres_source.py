"""A history read from a real PostgreSQL server (issue 14): the server named by
``FORECASTER_PG_URL``, seeded by ``.ci/postgres.sh start`` with the synthetic history of
history_tables.py (``FORECASTER_PG_ROWS`` rows, seed ``FORECASTER_PG_SEED``).

Without ``FORECASTER_PG_URL`` these tests are skipped, unless ``FORECASTER_REQUIRE_POSTGRES=1``
(CI sets it): then they fail, as they do when the server named cannot be reached."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import history_tables as ht  # noqa: E402

from forecaster.cli import main  # noqa: E402
from forecaster.errors import ScenarioError  # noqa: E402
from forecaster.history import sources  # noqa: E402
from forecaster.history.readers import load_deals  # noqa: E402


@pytest.fixture(scope="module")
def url():
    value = os.environ.get("FORECASTER_PG_URL", "").strip()
    if not value:
        if os.environ.get("FORECASTER_REQUIRE_POSTGRES", "").strip() not in ("", "0"):
            pytest.fail("FORECASTER_REQUIRE_POSTGRES is set but FORECASTER_PG_URL is not: start a server with "
                        "eval \"$(.ci/postgres.sh start)\"")
        pytest.skip("no PostgreSQL server: set FORECASTER_PG_URL (eval \"$(.ci/postgres.sh start)\")")
    return value


@pytest.fixture(scope="module")
def csv_history(tmp_path_factory):
    rows = ht.synthetic_history(int(os.environ.get("FORECASTER_PG_ROWS", ht.N)),
                                int(os.environ.get("FORECASTER_PG_SEED", ht.SEED)))
    return ht.write_csv(rows, tmp_path_factory.mktemp("pg") / "deals.csv")


def deals_of(history, **kw):
    deals, _, _ = load_deals(history, "salesforce", segment_column="Segment", **kw)
    return deals


def test_the_servers_rows_are_the_csvs_deals(url, csv_history):
    expected = deals_of(csv_history)
    assert len(expected) == int(os.environ.get("FORECASTER_PG_ROWS", ht.N))
    assert deals_of(url, query="SELECT * FROM deals;") == expected
    won = deals_of(url, query="""SELECT * FROM deals WHERE "StageName" = 'Closed Won' ORDER BY "Id" """)
    assert won == sorted((d for d in expected if d.outcome == "won"), key=lambda d: d.deal_id)


def test_calibrate_from_the_server_writes_the_csvs_scenario(url, csv_history, tmp_path):
    common = ["--preset", "salesforce", "--segment-column", "Segment", "--as-of", str(ht.AS_OF)]
    a = CliRunner().invoke(main, ["calibrate", str(csv_history), *common, "-o", str(tmp_path / "csv" / "s.yaml")])
    b = CliRunner().invoke(main, ["calibrate", url, "--query", "SELECT * FROM deals", *common,
                                  "-o", str(tmp_path / "pg" / "s.yaml")])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    text = (tmp_path / "pg" / "s.yaml").read_text()
    password = urlsplit(url).password
    assert password and password not in text and password not in b.output
    assert text.split("\n", 1)[1] == (tmp_path / "csv" / "s.yaml").read_text().split("\n", 1)[1]
    assert (tmp_path / "pg" / "s-pipeline.csv").read_text() == (tmp_path / "csv" / "s-pipeline.csv").read_text()


def test_a_wrong_password_is_a_clear_error_without_the_password(url):
    parts = urlsplit(url)
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username}:not-the-password@{parts.hostname}:{parts.port}"))
    start = time.perf_counter()
    with pytest.raises(ScenarioError) as err:
        deals_of(wrong, query="SELECT * FROM deals")
    assert time.perf_counter() - start < sources.CONNECT_TIMEOUT + 5
    text = str(err.value)
    assert text.startswith(f"postgresql://{parts.username}:***@{parts.hostname}:{parts.port}/")
    assert "cannot connect: " in text and "password authentication failed" in text
    assert "not-the-password" not in text


def test_the_query_runs_read_only(url):
    with pytest.raises(ScenarioError, match="cannot be run: cannot execute SELECT FOR UPDATE in a read-only "
                                            "transaction; expected one SELECT"):
        deals_of(url, query="SELECT * FROM deals FOR UPDATE")
    with pytest.raises(ScenarioError, match='cannot be run: syntax error at or near "UPDATE"; expected one SELECT'):
        deals_of(url, query='UPDATE deals SET "Amount" = 0 RETURNING *')
    with pytest.raises(ScenarioError, match="cannot be run: .*data-modifying"):
        deals_of(url, query="WITH gone AS (DELETE FROM deals RETURNING *) SELECT * FROM gone")
    with pytest.raises(ScenarioError, match="cannot be run: .*syntax error"):
        deals_of(url, query="SELEKT 1")
    with pytest.raises(ScenarioError, match="cannot be run: .*does not exist"):
        deals_of(url, query="SELECT * FROM no_such_table")


def test_a_query_returning_too_many_rows_is_stopped_not_sent(url, monkeypatch):
    monkeypatch.setattr(sources, "MAX_ROWS", 1000)
    start = time.perf_counter()
    with pytest.raises(ScenarioError, match="the query returns more than 1,000 rows, the most a history may have"):
        deals_of(url, query="SELECT d.* FROM deals d, generate_series(1, 250000000)")  # 10^11 rows
    # sent whole, 10^11 rows would take hours; stopped after the first 1,001 they take seconds
    # (27 s once on a 2-core machine shared with other jobs, hence the margin)
    assert time.perf_counter() - start < 60


def test_a_query_running_too_long_is_stopped_by_the_server(url, monkeypatch):
    monkeypatch.setattr(sources, "QUERY_TIMEOUT", 1)
    start = time.perf_counter()
    with pytest.raises(ScenarioError, match="ran longer than 1 s and was stopped"):
        deals_of(url, query="SELECT d.*, pg_sleep(30) FROM deals d")
    assert time.perf_counter() - start < 15
