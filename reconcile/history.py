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
    sa.Column("undo_sha256", sa.String(64)),
)

changes = sa.Table(
    "changes",
    meta,
    sa.Column("apply_id", sa.String(64), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("entity", sa.String(200), nullable=False),
    sa.Column("target_id", sa.String(200)),
    sa.Column("uid", sa.String(200)),
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


runs = sa.Table(
    "runs",
    meta,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column(
        "seq", sa.Integer, nullable=False, unique=True
    ),  # recording order: runs may share a second
    sa.Column("started", sa.DateTime, nullable=False, index=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("project", sa.Text),
    sa.Column(
        "project_key", sa.Text, nullable=False, index=True
    ),  # several projects may share a database
    sa.Column("since_last", sa.Boolean, nullable=False, default=False),
    sa.Column("summary", sa.Text, nullable=False),  # summary.json, versions and hashes included
)

run_findings = sa.Table(
    "run_findings",
    meta,
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("fingerprint", sa.String(32), nullable=False, index=True),
    sa.Column("entity", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("field", sa.String(200)),
    sa.Column("uid", sa.String(200)),
    sa.Column("severity", sa.String(16)),
    sa.Column("lifecycle", sa.String(16), nullable=False),  # new, persisting, reopened, accepted
)

LIFECYCLE = ("new", "persisting", "reopened", "accepted")


class History:
    """A handle on the history database."""

    def __init__(self, url: str, project_key: str = ""):
        self.project_key = project_key
        from .errors import SourceError
        from .extract.sql import redact

        try:
            self.engine = sa.create_engine(url)
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            meta.create_all(self.engine)
            self._check_schema(url)
        except (sa.exc.SQLAlchemyError, ImportError, OSError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise SourceError(
                f"the run history at {redact(url)} cannot be opened: {reason}",
                hint="Check history: in reconcile.yaml (any SQLAlchemy URL), or leave it out.",
            ) from None

    def _check_schema(self, url: str) -> None:
        """Tables written by an older reconcile lack columns: say so instead of failing later."""
        from .errors import SourceError
        from .extract.sql import redact

        inspector = sa.inspect(self.engine)
        for table in meta.sorted_tables:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c.name for c in table.columns if c.name not in have]
            if missing:
                raise SourceError(
                    f"the run history at {redact(url)} was written by an older reconcile: table "
                    f"{table.name} lacks {', '.join(missing)}",
                    hint="Move the history database aside (its runs stay readable as files) and run again.",
                )

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

    def _mine(self, stmt):
        return stmt.where(runs.c.project_key == self.project_key)

    def latest_run(self) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                self._mine(sa.select(runs)).order_by(runs.c.seq.desc()).limit(1)
            ).first()
        return dict(row._mapping) if row else None

    def lifecycle(self, findings) -> tuple[list[str], dict]:
        """Each finding's lifecycle against earlier runs, and the counts (resolved included).

        new: never seen before; persisting: in the previous run; reopened: seen in an earlier
        run, gone in the previous one; accepted: a difference reviewers kept. Resolved: in the
        previous run, gone now.
        """
        previous = self.latest_run()
        with self.engine.connect() as conn:
            prev = set()
            if previous is not None:
                prev = set(
                    conn.execute(
                        sa.select(run_findings.c.fingerprint).where(
                            run_findings.c.run_id == previous["run_id"]
                        )
                    ).scalars()
                )
            ever = set(
                conn.execute(
                    sa.select(run_findings.c.fingerprint)
                    .join(runs, runs.c.run_id == run_findings.c.run_id)
                    .where(runs.c.project_key == self.project_key)
                    .distinct()
                ).scalars()
            )
        states = []
        for fp, status in zip(findings["fingerprint"], findings["status"], strict=True):
            if status == "accepted":
                states.append("accepted")
            elif fp in prev:
                states.append("persisting")
            elif fp in ever:
                states.append("reopened")
            else:
                states.append("new")
        counts = {k: states.count(k) for k in LIFECYCLE}
        counts["resolved"] = len(prev - set(findings["fingerprint"]))
        counts["previous_run"] = previous["run_id"] if previous else None
        return states, counts

    def record_run(
        self, summary: dict, findings, states: list[str], since_last: bool = False
    ) -> None:
        """Record a run and its findings; a database that refuses is a SourceError."""
        from .errors import SourceError
        from .extract.sql import redact

        try:
            self._record_run(summary, findings, states, since_last)
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise SourceError(
                f"the run history at {redact(str(self.engine.url))} refused run {summary['run_id']}: {reason}",
                hint="The run folder was written; fix the history database and run again.",
            ) from None

    def _record_run(
        self, summary: dict, findings, states: list[str], since_last: bool = False
    ) -> None:
        rows = [
            {
                "run_id": summary["run_id"],
                "fingerprint": fp,
                "entity": e,
                "kind": k,
                "field": f,
                "uid": u,
                "severity": sev,
                "lifecycle": st,
            }
            for fp, e, k, f, u, sev, st in zip(
                findings["fingerprint"],
                findings["entity"],
                findings["kind"],
                findings["field"].astype(object).where(findings["field"].notna(), None),
                findings["uid"].astype(object).where(findings["uid"].notna(), None),
                findings["severity"],
                states,
                strict=True,
            )
        ]
        with self.engine.begin() as conn:
            seq = conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(runs.c.seq), 0) + 1)
            ).scalar_one()
            conn.execute(
                runs.insert(),
                [
                    {
                        "run_id": summary["run_id"],
                        "seq": seq,
                        "started": dt.datetime.fromisoformat(summary["started"]).replace(
                            tzinfo=None
                        ),
                        "as_of": dt.date.fromisoformat(summary["as_of"]),
                        "project": summary.get("project"),
                        "project_key": self.project_key,
                        "since_last": since_last,
                        "summary": json.dumps(summary, ensure_ascii=False),
                    }
                ],
            )
            for start in range(0, len(rows), 50_000):
                conn.execute(run_findings.insert(), rows[start : start + 50_000])

    def runs(self, limit: int = 20) -> list[dict]:
        """The newest runs first, with their summaries."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                self._mine(sa.select(runs)).order_by(runs.c.seq.desc()).limit(limit)
            ).mappings()
            return [{**dict(r), "summary": json.loads(r["summary"])} for r in rows]

    def run(self, run_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(self._mine(sa.select(runs)).where(runs.c.run_id == run_id))
                .mappings()
                .first()
            )
        return {**dict(row), "summary": json.loads(row["summary"])} if row else None

    def previous(self, run_id: str) -> dict | None:
        """The run recorded just before `run_id`."""
        this = self.run(run_id)
        if this is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(runs.c.run_id)
                .where(runs.c.seq < this["seq"], runs.c.project_key == self.project_key)
                .order_by(runs.c.seq.desc())
                .limit(1)
            ).first()
        return self.run(row[0]) if row else None

    def findings_of(self, run_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(run_findings).where(run_findings.c.run_id == run_id)
            ).mappings()
            return [dict(r) for r in rows]

    def applied_changes(self, apply_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(changes).where(changes.c.apply_id == apply_id).order_by(changes.c.seq)
            ).mappings()
            return [dict(r) for r in rows]
