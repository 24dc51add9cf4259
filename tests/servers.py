"""The machine's PostgreSQL and MariaDB for integration tests: a fresh database per test.

Locally a server that is not reachable skips its tests; under CI=true it fails them, so that a
missing service can never pass silently.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

ADMIN = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/mysql",
}
DATABASE = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4",
}


def fresh_database(kind: str) -> Iterator[str]:
    """A new empty database on server `kind`, dropped afterwards; yields its URL."""
    admin = sa.create_engine(ADMIN[kind], isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        message = f"{kind} at {ADMIN[kind]} is not reachable: {str(exc.orig).strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"reconcile_test_{secrets.token_hex(4)}"
    charset = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if kind == "mariadb" else ""
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}{charset}"))
    try:
        yield DATABASE[kind].format(name=name)
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()
