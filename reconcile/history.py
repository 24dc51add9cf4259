"""The run-history database: the audit of every apply, and decisions that outlive a run.

SQLite in the project's output folder by default (`OUTPUT/history.sqlite`); any SQLAlchemy URL
works. Tables are created on first use.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import sqlalchemy as sa

meta = sa.MetaData()

applies = sa.Table(
    "applies",
    meta,
    sa.Column("apply_id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("worksheet", sa.Text, nullable=False),
    sa.Column("worksheet_sha256", sa.String(64), nullable=False),
    sa.Column("executed", sa.Boolean, nullable=False),
    sa.Column("started", sa.DateTime, nullable=False),
    sa.Column("finished", sa.DateTime),
    sa.Column("counts", sa.Text),
    sa.Column("undo_patch", sa.Text),
)

changes = sa.Table(
    "changes",
    meta,
    sa.Column("apply_id", sa.String(64), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("entity", sa.String(200), nullable=False),
    sa.Column("target_id", sa.String(200)),
    sa.Column("field", sa.String(200)),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("before", sa.Text),
    sa.Column("after", sa.Text),
    sa.Column("reviewer", sa.String(200)),
    sa.Column("at", sa.DateTime, nullable=False),
)

decisions = sa.Table(
    "decisions",
    meta,
    sa.Column("fingerprint", sa.String(32), primary_key=True),
    sa.Column("entity", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("decision", sa.String(32), nullable=False),  # 'accepted': a known, agreed difference
    sa.Column("reason", sa.Text),
    sa.Column("reviewer", sa.String(200)),
    sa.Column("until", sa.Date),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("decided_at", sa.DateTime, nullable=False),
)


def history_url(output_dir: Path) -> str:
    return f"sqlite:///{(Path(output_dir) / 'history.sqlite').as_posix()}"


class History:
    """A handle on the history database."""

    def __init__(self, url: str):
        self.engine = sa.create_engine(url)
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        meta.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def record_apply(self, row: dict, change_rows: list[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(applies.insert(), [{**row, "counts": json.dumps(row.get("counts", {}))}])
            if change_rows:
                conn.execute(changes.insert(), change_rows)

    def accept(self, rows: list[dict]) -> None:
        """Remember accepted differences; a later decision on the same finding replaces it."""
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(
                decisions.delete().where(
                    decisions.c.fingerprint.in_([r["fingerprint"] for r in rows])
                )
            )
            conn.execute(decisions.insert(), rows)

    def accepted(self, as_of: dt.date) -> dict[str, dict]:
        """Fingerprints of accepted differences still in force on `as_of`."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(decisions).where(
                    decisions.c.decision == "accepted",
                    sa.or_(decisions.c.until.is_(None), decisions.c.until >= as_of),
                )
            ).mappings()
            return {r["fingerprint"]: dict(r) for r in rows}

    def applied_changes(self, apply_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(changes).where(changes.c.apply_id == apply_id).order_by(changes.c.seq)
            ).mappings()
            return [dict(r) for r in rows]
