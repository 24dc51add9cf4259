"""The diff against real servers: legacy tables on MariaDB, new ones on PostgreSQL, typed columns.

The same cases give the same findings (fingerprints included) as from SQLite text columns.
"""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
import sqlalchemy as sa

from reconcile.project import load_project
from reconcile.run import run_project
from tests.servers import fresh_database
from tests.test_diff_cases import CASES_DIR, SPEC, apply_case, run_case

meta = sa.MetaData()
TABLES = {
    "opps": sa.Table(
        "opps",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uid", sa.String(40)),
        sa.Column("stage", sa.String(20)),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("closes", sa.String(20)),
        sa.Column("created", sa.DateTime),
        sa.Column("deleted", sa.Boolean),
        sa.Column("tags", sa.String(200)),
    ),
    "deals": sa.Table(
        "deals",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("legacy_uid", sa.String(40)),
        sa.Column("stage", sa.String(20)),
        sa.Column("active", sa.Boolean),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("closes", sa.Date),
        sa.Column("created", sa.DateTime),
    ),
    "deal_labels": sa.Table(
        "deal_labels", meta, sa.Column("deal_id", sa.Integer), sa.Column("label", sa.String(40))
    ),
}


def _typed(table: sa.Table, row: dict) -> dict:
    out = {}
    for col in table.columns:
        v = row.get(col.name)
        if v is not None and isinstance(col.type, sa.DateTime):
            v = dt.datetime.fromisoformat(v)
        elif v is not None and isinstance(col.type, sa.Date):
            v = dt.date.fromisoformat(v)
        elif v is not None and isinstance(col.type, sa.Boolean):
            v = bool(v)
        out[col.name] = v
    return out


def load(url: str, tables: dict[str, list[dict]]) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name, rows in tables.items():
            TABLES[name].create(conn)
            if rows:
                conn.execute(TABLES[name].insert(), [_typed(TABLES[name], r) for r in rows])
    engine.dispose()


@pytest.fixture(scope="module")
def mariadb():
    yield from fresh_database("mariadb")


@pytest.fixture(scope="module")
def postgresql():
    yield from fresh_database("postgresql")


# Cases whose values both servers can store (the unparseable ones need text in typed columns).
CASES = [c for c in SPEC["cases"] if "cannot be read" not in c["name"]]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_mariadb_to_postgresql_finds_what_sqlite_finds(
    case, mariadb, postgresql, tmp_path, monkeypatch
):
    data = apply_case(case)
    for url, tables in ((mariadb, data["source"]), (postgresql, data["target"])):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            meta.drop_all(conn, tables=[TABLES[n] for n in tables])
        engine.dispose()
        load(url, tables)
    root = tmp_path / "p"
    shutil.copytree(CASES_DIR / "diff_project", root)
    config = root / "reconcile.yaml"
    config.write_text(
        config.read_text("utf-8")
        .replace("url: 'sqlite:///old.sqlite'", "url: '${OLD_URL}'")
        .replace("url: 'sqlite:///new.sqlite'", "url: '${NEW_URL}'"),
        "utf-8",
    )
    monkeypatch.setenv("OLD_URL", mariadb)
    monkeypatch.setenv("NEW_URL", postgresql)
    on_servers = run_project(load_project(root)).findings
    on_sqlite = run_case(case, tmp_path / "sqlite").findings
    assert on_servers.to_dict(orient="records") == on_sqlite.to_dict(orient="records")
