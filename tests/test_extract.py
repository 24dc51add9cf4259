"""Extraction paths agree: ADBC (Arrow) and the driver cursor read the same values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@given(
    st.lists(st.one_of(st.none(), st.text(alphabet="ab ^,\t无\u3000", max_size=12)), max_size=40),
    st.sampled_from([",", "^,^", ", "]),
    st.sampled_from(["", "^"]),
)
@settings(max_examples=300, deadline=None)
def test_delimited_tags_split_as_python_splits_them(values, separator, wrap):
    from reconcile.extract.tags import split_delimited

    index = [7 + 3 * i for i in range(len(values))]  # not positions: rows are index labels
    want = []
    for row, value in zip(index, values, strict=True):
        for piece in (value or "").split(separator) if value is not None else []:
            tag = piece.strip()
            if wrap:
                tag = tag.removeprefix(wrap).removesuffix(wrap).strip()
            if tag:
                want.append((row, tag))
    got = split_delimited(pd.Series(values, index=index, dtype="string"), separator, wrap)
    assert list(zip(got["row"].tolist(), got["tag"].tolist(), strict=True)) == want


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
        assert len(arrow_reads) == 2  # deals and tags by ADBC; MariaDB's DATETIME by its driver
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


def test_serial_ids_matched_by_array_lookup_agree_with_arrow_index_in():
    import pyarrow as pa
    import pyarrow.compute as pc

    from reconcile.extract.tags import _dense_index_in

    rng = np.random.default_rng(3)
    ids = pa.array(rng.permutation(np.r_[np.arange(1, 500), [7, 9]]).astype(str), pa.large_string())
    keys = pa.array(np.r_[rng.integers(-3, 520, 2000)].astype(str), pa.large_string())
    keys = pa.concat_arrays([keys, pa.array([None, "12"], pa.large_string())])
    fast = _dense_index_in(keys, ids)
    assert fast is not None  # a repeated id is given to its first record, as index_in does
    assert (fast == pc.index_in(keys, ids).fill_null(-1).to_numpy(zero_copy_only=False)).all()


@pytest.mark.parametrize(
    "ids, keys",
    [(["7", "8"], ["007"]), (["1", "+2"], ["2"]), (["1", "99999999999"], ["1"]), (["a"], ["a"])],
    ids=["leading zero", "plus sign", "sparse", "not numbers"],
)
def test_ids_not_written_as_serial_integers_are_matched_as_text(ids, keys):
    import pyarrow as pa

    from reconcile.extract.tags import _dense_index_in

    assert (
        _dense_index_in(pa.array(keys, pa.large_string()), pa.array(ids, pa.large_string())) is None
    )


def test_iso_dates_read_by_arrow_agree_with_pandas_value_by_value():
    from reconcile.extract.types import _datetimes

    values = [
        "2024-02-29 10:00:00",
        None,
        "2023-02-30 00:00:00",
        "2023-1-5 1:2:3",
        " 2023-01-01 00:00:05",
        "2024-01-05 10:00５",  # 19 bytes, 17 characters
    ]
    values = pd.Series(values * 40_000 + ["2023-01-01T00:00:05", "2023-01-01"], dtype="string")
    for fmt in (None, "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        want = pd.to_datetime(values, format=fmt or "ISO8601", errors="coerce")
        assert _datetimes(values, fmt).equals(want.astype("datetime64[us]")), fmt


def test_integers_are_typed_as_their_text_would_be():
    from reconcile.dictionary.model import Field
    from reconcile.extract.types import coerce

    signed = pd.Series([1, 0, None, 2, -1, 1, 2**62], dtype="Int64")
    unsigned = pd.Series([2**63, 1, 0], dtype="uint64")  # BIGINT UNSIGNED past int64
    for numbers, kinds in ((signed, ("boolean", "integer")), (unsigned, ("boolean",))):
        for kind in kinds:
            fdef = Field.model_validate({"type": kind})
            typed, bad = coerce(numbers, fdef)
            want, want_bad = coerce(numbers.astype("string"), fdef)
            assert typed.equals(want) and bad.equals(want_bad), (kind, numbers.dtype)


def test_null_tokens_are_found_among_values_of_every_length():
    from reconcile.dictionary.model import Field
    from reconcile.extract.types import coerce

    fdef = Field.model_validate({"type": "string", "null_tokens": ["N/A", "无"]})
    values = pd.Series(["", "N/A", "无", "无无", "N/A ", "N", None, "138-0000"] * 3, dtype="string")
    typed, _ = coerce(values, fdef)
    assert typed.equals(values.mask(values.isin(["", "N/A", "无"])))
    assert coerce(pd.Series(["long enough"] * 3, dtype="string"), fdef)[0].notna().all()
    sliced = values.iloc[2:]  # Arrow data that starts part-way into its buffers
    assert coerce(sliced, fdef)[0].equals(sliced.mask(sliced.isin(["", "N/A", "无"])))


@pytest.mark.parametrize(
    "values",
    [["12", None, "", "3.5"], [" 12", "12 ", "\u300012", "12\t", None, "", "\x1f1"], [None, None]],
    ids=["nothing to strip", "spaces of every kind at either end", "nothing at all"],
)
def test_text_is_stripped_exactly_as_pandas_strips_it(values):
    from reconcile.extract.types import strip

    text = pd.Series(values * 1000, dtype="string")
    assert strip(text).equals(text.str.strip())
    assert strip(text.iloc[1:]).equals(text.iloc[1:].str.strip())


def test_a_date_field_holds_midnights_whether_or_not_the_values_had_a_time():
    from reconcile.dictionary.model import Field
    from reconcile.extract.types import coerce

    fdef = Field.model_validate({"type": "date"})
    for values in (["2024-03-01", None], ["2024-03-01 10:30:00", None]):
        typed, _ = coerce(pd.Series(values, dtype="string"), fdef)
        assert typed.iloc[0] == pd.Timestamp("2024-03-01") and pd.isna(typed.iloc[1])


def test_iso_times_with_utc_offsets_are_left_to_pandas_as_instants():
    from reconcile.extract.types import _datetimes

    got = _datetimes(pd.Series(["2025-03-01T10:00:00+08:00", "2025-07-01T10:00:00+02:00"]), None)
    assert str(got.dt.tz) == "UTC" and list(got.dt.hour) == [2, 8]


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://root@127.0.0.1/crm?ssl_ca=/etc/ca.pem",
        "mysql+pymysql://root@127.0.0.1/crm?charset=latin1",
        "mysql+pymysql://root@/crm?unix_socket=/run/mysqld.sock",
    ],
    ids=["TLS options", "another character set", "a unix socket"],
)
def test_mysql_urls_with_options_connectorx_cannot_honour_are_read_by_the_driver(url):
    import sqlalchemy as sa

    stmt = sa.select(sa.column("id")).select_from(sa.table("deals"))
    assert sql_extract._connectorx_batches(stmt, url, None) is None


def test_a_mysql_statement_with_a_bound_value_is_never_sent_to_connectorx(monkeypatch):
    import sqlalchemy as sa

    monkeypatch.setattr(sql_extract._connectorx, "read_sql", lambda *a, **k: pytest.fail("sent"))
    stmt = (
        sa.select(sa.column("id")).select_from(sa.table("deals")).where(sa.column("owner") == "x")
    )
    assert sql_extract._connectorx_batches(stmt, "mysql+pymysql://root@127.0.0.1/crm", None) is None


# table, columns as (SQL type, dictionary type), does connectorx read it?
MARIADB_TYPES = [
    (
        "plain",
        "name VARCHAR(50) string, n INT integer, big BIGINT integer, x DOUBLE decimal(30,10), "
        "flag TINYINT(1) boolean, j JSON string",
        True,
    ),
    ("money", "amount DECIMAL(12,2) decimal(12,2), code DECIMAL(10,0) string", True),  # as text
    (
        "days",
        "born DATE date, due DATE string",
        True,
    ),  # as text, as the driver's dates reach coerce
    ("stamps", "seen DATETIME datetime, fine DATETIME(6) datetime, day DATETIME date", False),
    ("times", "t TIME string, f FLOAT decimal(10,4)", False),  # long times panic; float32
    ("wide", "big BIGINT UNSIGNED integer", False),  # uint64: float with NULLs
]
MARIADB_ROWS = {
    "plain": "(1, '李娜 ', 1, NULL, 0.1, 1, '[\"vip\"]'), (2, 'b', -2, 9007199254740993, 1e300, NULL, NULL)",
    "money": "(1, 1234567.89, 1001), (2, NULL, 7)",
    "days": "(1, '1980-05-01', '2025-01-31'), (2, '0000-00-00', NULL)",
    "stamps": "(1, '2025-03-30 02:30:00', '2025-01-01 10:00:00.123456', '2025-01-05 00:00:00'), "
    "(2, '0000-00-00 00:00:00', NULL, NULL)",
    "times": "(1, '26:00:00', 0.1), (2, NULL, NULL)",
    "wide": "(1, 18446744073709551615), (2, NULL), (3, 9007199254740993)",
}


@pytest.mark.parametrize("table, columns, fast", MARIADB_TYPES, ids=[t[0] for t in MARIADB_TYPES])
def test_mariadb_columns_connectorx_reads_exactly_go_to_it_and_the_rest_to_the_driver(
    table, columns, fast, monkeypatch, arrow_reads
):
    import sqlalchemy as sa

    from reconcile.dictionary.model import Field
    from reconcile.extract.types import as_text, coerce
    from tests.servers import fresh_database

    specs = [(c.split()[0], " ".join(c.split()[1:-1]), c.split()[-1]) for c in columns.split(", ")]
    # formats as for dates kept as text: the driver's datetimes must not be held to them
    formats = {
        "datetime": {"timezone": "Asia/Shanghai", "format": "%Y-%m-%d %H:%M:%S"},
        "date": {"format": "%Y-%m-%d"},
    }
    fields = {n: Field.model_validate({"type": k, **formats.get(k, {})}) for n, _, k in specs}
    gen = fresh_database("mariadb")
    url = next(gen)
    try:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("SET SESSION sql_mode = ''"))  # legacy data: zero dates
            ddl = ", ".join(f"{n} {t}" for n, t, _ in specs)
            conn.execute(sa.text(f"CREATE TABLE {table} (id INT PRIMARY KEY, {ddl})"))
            conn.execute(sa.text(f"INSERT INTO {table} VALUES {MARIADB_ROWS[table]}"))
        names = ["id", *fields]
        stmt = (
            sa.select(*map(sa.column, names)).select_from(sa.table(table)).order_by(sa.column("id"))
        )

        def read():  # as the run sees them: typed by the dictionary, and what cannot be read
            with engine.connect() as conn:
                frame = next(sql_extract.fetch_batches(conn, stmt, names, url))
            typed = {n: coerce(frame[n], f) for n, f in fields.items()}
            return {n: (as_text(v).tolist(), bad.tolist()) for n, (v, bad) in typed.items()}

        got = read()
        assert bool(arrow_reads) == fast
        monkeypatch.setattr(sql_extract, "_connectorx", None)
        assert got == read()
        engine.dispose()
    finally:
        gen.close()


def test_a_true_or_false_scope_filter_is_a_constant_in_the_sql_not_a_value():
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql

    from reconcile.dictionary.model import Field
    from reconcile.mapping.model import Filter

    flag = Field.model_validate({"type": "boolean"})
    for op, value in (("eq", True), ("ne", True), ("in", [True, False]), ("not_in", [False])):
        where = sql_extract._condition(sa.column("d"), flag, Filter(field="d", op=op, value=value))
        compiled = where.compile(
            dialect=mysql.dialect(), compile_kwargs={"render_postcompile": True}
        )
        assert not compiled.construct_params(), (op, str(compiled))


def test_a_far_future_date_is_read_whatever_the_precision_of_other_rows():
    from reconcile.extract.types import _datetimes

    values = pd.Series(["2025-01-01 10:00:00"] * 70_000, dtype="string")
    values[0], values[69_000] = "9999-12-31 00:00:00", "2025-01-01 10:00:00.1234567"
    got = _datetimes(values, None)  # pandas alone read the column in nanoseconds: 9999 was NaT
    assert got[0] == pd.Timestamp("9999-12-31") and got[69_000] == pd.Timestamp(
        "2025-01-01 10:00:00.123456"
    )
