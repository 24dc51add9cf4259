"""Extraction paths agree: ADBC (Arrow) and the driver cursor read the same values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reconcile.extract import sql as sql_extract
from reconcile.extract.tags import split_json
from tests.test_diff_cases import SPEC, run_case


@pytest.fixture
def arrow_reads(monkeypatch) -> list:
    """Each Arrow stream reconcile reads (ADBC, connectorx): the fast path must not fall back
    to the cursor without anyone noticing."""
    streams, real = [], sql_extract._rebatch

    def counted(reader, rows, *resources):
        streams.append(reader)
        return real(reader, rows, *resources)

    monkeypatch.setattr(sql_extract, "_rebatch", counted)
    return streams


@pytest.mark.parametrize("case", SPEC["cases"], ids=[c["name"] for c in SPEC["cases"]])
def test_the_arrow_path_and_the_cursor_path_find_the_same(case, tmp_path, monkeypatch, arrow_reads):
    fast = run_case(case, tmp_path / "fast").findings
    assert arrow_reads, "the SQLite files were not read by ADBC"
    monkeypatch.setattr(sql_extract, "_adbc_sqlite", None)
    monkeypatch.setattr(sql_extract, "_adbc_postgresql", None)
    slow = run_case(case, tmp_path / "slow").findings
    assert fast.to_dict(orient="records") == slow.to_dict(orient="records")


def test_json_tags_already_decoded_by_the_driver_are_read_as_lists():
    values = pd.Series([["vip", "q4"], np.array(["partner"], dtype=object), None], dtype=object)
    long = split_json(values)
    assert list(zip(long["row"], long["tag"], strict=True)) == [
        (0, "vip"),
        (0, "q4"),
        (1, "partner"),
    ]


def test_postgresql_through_adbc_and_through_psycopg_find_the_same(
    tmp_path, monkeypatch, run_cli, arrow_reads
):
    import json
    import shutil
    from pathlib import Path

    from fixtures.integration import build
    from tests.servers import fresh_database

    legacy_gen, modern_gen = fresh_database("mariadb"), fresh_database("postgresql")
    legacy, modern = next(legacy_gen), next(modern_gen)
    try:
        build(legacy, modern)
        root = tmp_path / "p"
        shutil.copytree(Path(__file__).resolve().parent.parent / "fixtures" / "integration", root)
        monkeypatch.setenv("LEGACY_URL", legacy)
        monkeypatch.setenv("MODERN_URL", modern)
        fast = json.loads(run_cli("run", root, "--format", "json", "-q").stdout)
        assert len(arrow_reads) >= 3  # MariaDB by connectorx; PostgreSQL's deals and tags by ADBC
        monkeypatch.setattr(sql_extract, "_adbc_postgresql", None)
        slow = json.loads(run_cli("run", root, "--format", "json", "-q").stdout)
        read = lambda d: json.loads(Path(d["outputs"]["findings"]).read_text("utf-8"))  # noqa: E731
        assert read(fast) == read(slow) and fast["findings"]["total"] == 11
    finally:
        legacy_gen.close()
        modern_gen.close()


@pytest.mark.parametrize("case", SPEC["cases"], ids=[c["name"] for c in SPEC["cases"]])
def test_a_diff_split_into_hash_partitions_finds_exactly_what_the_whole_finds(case, tmp_path):
    from reconcile.project import load_project
    from reconcile.run import run_project
    from tests.test_diff_cases import make_project

    proj = load_project(make_project(tmp_path / "p", case))
    whole, split = run_project(proj), run_project(proj, partitions=3)
    assert split.findings.to_dict(orient="records") == whole.findings.to_dict(orient="records")
    assert (split.transitions, split.records) == (whole.transitions, whole.records)


def test_the_demo_spilled_in_chunks_into_partitions_finds_exactly_the_same(tmp_path, monkeypatch):
    from reconcile import spill
    from reconcile.demo import prepare
    from reconcile.project import load_project
    from reconcile.run import run_project

    monkeypatch.setattr(spill, "CHUNK_ROWS", 300)  # 7 chunks a side, join-table tags routed
    prepare(tmp_path / "demo", n=2000)
    proj = load_project(tmp_path / "demo")
    whole, split = run_project(proj), run_project(proj, partitions=7)
    assert len(whole.findings) == 125
    assert split.findings.to_dict(orient="records") == whole.findings.to_dict(orient="records")
    assert (split.transitions, split.records, split.stale) == (
        whole.transitions,
        whole.records,
        whole.stale,
    )


def test_join_table_tags_reach_their_records_even_when_id_hashes_collide(tmp_path, monkeypatch):
    from reconcile import spill
    from reconcile.demo import prepare
    from reconcile.project import load_project
    from reconcile.run import run_project

    prepare(tmp_path / "demo", n=1000)
    proj = load_project(tmp_path / "demo")
    whole = run_project(proj)
    real = spill.id_hash

    def collide(ids):  # the first hash of many ids the same
        hashed = real(ids)
        hashed[:, 0] %= np.uint64(7)
        return hashed

    monkeypatch.setattr(spill, "id_hash", collide)
    monkeypatch.setattr(spill, "CHUNK_ROWS", 150)
    split = run_project(proj, partitions=5)
    assert len(whole.findings) == 125
    assert split.findings.to_dict(orient="records") == whole.findings.to_dict(orient="records")
    assert split.transitions == whole.transitions


def test_a_server_error_in_the_middle_of_an_arrow_stream_is_a_clear_source_error():
    import sqlalchemy as sa

    from reconcile.errors import SourceError
    from tests.servers import fresh_database

    gen = fresh_database("postgresql")
    url = next(gen)
    try:
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # fails only after the first batches have arrived
            conn.exec_driver_sql(
                "CREATE VIEW v AS SELECT g AS id, (1 / (g - 1500000))::text AS x "
                "FROM generate_series(1, 2000000) g"
            )
        engine.dispose()
        stmt = sa.select(sa.column("id"), sa.column("x")).select_from(sql_extract.sql_table("v"))
        with (
            pytest.raises(SourceError, match="division by zero"),
            sql_extract._reading(url, "v") as conn,
        ):
            for _ in sql_extract.fetch_batches(conn, stmt, ["id", "x"], url, 200_000):
                pass
    finally:
        gen.close()


def test_a_spill_that_cannot_be_written_is_a_clear_output_error(tmp_path, monkeypatch):
    import errno

    from reconcile import spill
    from reconcile.demo import prepare
    from reconcile.errors import OutputError
    from reconcile.project import load_project
    from reconcile.run import run_project

    def full_disk(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    prepare(tmp_path / "demo", n=1000)
    monkeypatch.setattr(spill.pq, "write_table", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        run_project(load_project(tmp_path / "demo"), partitions=2)


def test_a_repeated_id_gives_its_join_table_tags_to_its_first_record_in_partitions_too(
    tmp_path, monkeypatch
):
    from reconcile.project import load_project
    from reconcile.run import run_project
    from tests import test_diff_cases

    no_key = ["id INTEGER", *test_diff_cases.COLUMNS["deals"][1:]]  # as a view would have it
    monkeypatch.setitem(test_diff_cases.COLUMNS, "deals", no_key)
    case = {
        "add": {
            "opps": [
                {
                    "id": 4,
                    "uid": "u4",
                    "stage": "A",
                    "amount": 1,
                    "closes": None,
                    "created": "2025-11-01 10:00:00",
                    "deleted": 0,
                    "tags": "Q4",
                }
            ],
            "deals": [
                {
                    "id": 102,
                    "legacy_uid": "u4",
                    "stage": "a",
                    "active": 1,
                    "amount": 1,
                    "closes": None,
                    "created": "2025-11-01 02:00:00",
                }
            ],
        }
    }
    proj = load_project(test_diff_cases.make_project(tmp_path / "p", case))
    whole = run_project(proj).findings
    assert ("missing_tag", "u4") in set(zip(whole["kind"], whole["uid"], strict=True))
    for n in (2, 3, 4, 5):
        split = run_project(proj, partitions=n).findings
        assert split.to_dict(orient="records") == whole.to_dict(orient="records"), n
