"""Writes to the new CRM's database: compare-and-set, in one transaction, with exact SQL kept.

Every change first reads the value the target holds now (locking the row where the database can)
and compares it, as the run would show it, with what the run saw. Only if they are equal is the
row changed, and the UPDATE itself repeats the condition. A value that already equals the
correction is reported as already applied; anything else is a conflict and left alone.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa

from ..dictionary.model import Entity, Field
from ..dictionary.values import parse_value
from ..diff import render
from ..errors import SourceError
from ..extract.sql import redact, sql_table
from ..extract.types import as_text, coerce
from .plan import Change


def write_engine(url: str) -> sa.Engine:
    try:
        if url.startswith("sqlite"):
            # Autocommit at the driver so that BEGIN IMMEDIATE below is ours: it takes the write
            # lock before the first read, which is what makes the compare-and-set hold.
            return sa.create_engine(url, isolation_level="AUTOCOMMIT")
        return sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise SourceError(f"cannot open {redact(url)} for writing: {exc}") from None


@contextlib.contextmanager
def transaction(engine: sa.Engine, write: bool):
    """One transaction for the whole apply: a failure or a kill leaves nothing half-done."""
    try:
        with _transaction(engine, write) as conn:
            yield conn
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise SourceError(
            f"the new CRM refused a change: {reason}",
            hint="Nothing was changed: the whole apply was rolled back. For inserts, give the "
            "fields the new CRM requires in the mapping's on_insert.",
        ) from None


@contextlib.contextmanager
def _transaction(engine: sa.Engine, write: bool):
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT" if write else "ROLLBACK")
        else:
            trans = conn.begin()
            try:
                yield conn
            except BaseException:
                trans.rollback()
                raise
            if write:
                trans.commit()
            else:
                trans.rollback()


def to_json(value: Any) -> Any:
    """A raw database value as JSON that comes back as the very same value."""
    if hasattr(value, "item") and not isinstance(value, (pd.Timestamp, Decimal)):
        value = value.item()
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode()}
    return value


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        ((kind, text),) = value.items()
        return {
            "decimal": Decimal,
            "datetime": dt.datetime.fromisoformat,
            "date": dt.date.fromisoformat,
            "bytes": base64.b64decode,
        }[kind](text)
    return value


class EntityWriter:
    """Compare-and-set writes for one target entity."""

    def __init__(self, conn, entity: Entity, execute: bool):
        if entity.source.table is None:
            raise SourceError(
                f"{entity.source.name} is not a table; corrections need a table to write"
            )
        self.conn, self.entity, self.execute = conn, entity, execute
        self.table = sql_table(entity.source.table)
        self.pk = sa.column(self._col(entity.primary_key))
        self.sqlite = conn.dialect.name == "sqlite"
        self._lookups: dict[str, tuple[dict, dict]] = {}
        self._column_types: dict | None = None

    # -- plumbing ------------------------------------------------------------------------------
    def _col(self, name: str) -> str:
        return self.entity.fields[name].column or name

    def _pk(self, text: str) -> Any:
        return parse_value(self.entity.fields[self.entity.primary_key], text)

    def run(self, change: Change, stmt) -> sa.CursorResult | None:
        compiled = stmt.compile(dialect=self.conn.dialect)
        params = compiled.construct_params(escape_names=False)
        ordered = [params[k] for k in compiled.positiontup] if compiled.positional else params
        change.sql.append(
            (
                str(compiled),
                [to_json(p) for p in (ordered if isinstance(ordered, list) else ordered.values())],
            )
        )
        if self.execute:
            return self.conn.execute(stmt)
        return None

    def lookup(self, lk) -> tuple[dict, dict]:
        """(code -> id, id -> code) for a lookup table."""
        key = f"{lk.table}.{lk.key}.{lk.code}"
        if key not in self._lookups:
            rows = self.conn.execute(
                sa.select(sa.column(lk.key), sa.column(lk.code)).select_from(sql_table(lk.table))
            ).all()
            self._lookups[key] = ({str(c): i for i, c in rows}, {str(i): str(c) for i, c in rows})
        return self._lookups[key]

    def shown(self, fdef: Field, raw: Any) -> str | None:
        """A raw database value as the run shows it (code, ISO date, scaled decimal)."""
        if raw is None:
            return None
        if fdef.lookup is not None:
            raw = self.lookup(fdef.lookup)[1].get(str(raw), f"#{raw}")
        typed, bad = coerce(pd.Series([raw], dtype=object), fdef)
        if bad.iloc[0]:
            return str(raw)
        return render(typed, fdef).iloc[0] if typed.notna().iloc[0] else None

    def raw(self, fdef: Field, value: Any) -> Any:
        """A corrected value as the database stores it (lookup ids, naive local datetimes)."""
        if value is None:
            return None
        if hasattr(value, "item") and not isinstance(value, pd.Timestamp):
            value = value.item()  # numpy scalars from a projection: the driver needs Python values
        typed = parse_value(fdef, value) if isinstance(value, str) else value
        kind = fdef.kind.name
        if fdef.lookup is not None:
            codes = self.lookup(fdef.lookup)[0]
            if typed not in codes:
                raise SourceError(f"{fdef.lookup.table} has no row for code {typed!r}")
            return codes[typed]
        if kind == "datetime":
            if isinstance(typed, pd.Timestamp):
                typed = typed.to_pydatetime()
            if typed.tzinfo is None:
                typed = typed.replace(tzinfo=dt.UTC)
            if self._zoned(fdef):
                return typed.astimezone(
                    dt.UTC
                )  # a timestamp-with-time-zone column keeps the instant
            typed = typed.astimezone(ZoneInfo(fdef.timezone)).replace(tzinfo=None)
            return typed.strftime(fdef.format or "%Y-%m-%d %H:%M:%S") if self.sqlite else typed
        if kind == "date":
            typed = typed.date() if isinstance(typed, dt.datetime) else typed
            return typed.strftime(fdef.format or "%Y-%m-%d") if self.sqlite else typed
        if kind == "decimal" and self.sqlite:
            return float(typed)
        if kind == "boolean" and self.sqlite:
            return int(typed)
        return typed

    def _zoned(self, fdef: Field) -> bool:
        """Is the column a timestamp *with* time zone? Such a column takes the instant itself."""
        if self.sqlite:
            return False
        if self._column_types is None:
            schema, _, table = self.entity.source.table.rpartition(".")
            try:
                cols = sa.inspect(self.conn).get_columns(table, schema=schema or None)
            except sa.exc.SQLAlchemyError:
                cols = []
            self._column_types = {c["name"]: c["type"] for c in cols}
        name = next(n for n, f in self.entity.fields.items() if f is fdef)
        return bool(getattr(self._column_types.get(self._col(name)), "timezone", False))

    def read(self, column: str, pk: Any, lock: bool = True) -> tuple[bool, Any]:
        stmt = sa.select(sa.column(column)).select_from(self.table).where(self.pk == pk)
        if lock and not self.sqlite:
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        return (row is not None), (row[0] if row is not None else None)

    def _update(self, change: Change, pk: Any, column: str, current: Any, new: Any) -> None:
        """UPDATE one value, only where it still is `current`; the undo step keeps both raw
        values as the database holds them."""
        col = sa.column(column)
        cond = col.is_(None) if current is None else col == current
        table = sql_table(self.entity.source.table, column)
        self.run(change, sa.update(table).where(self.pk == pk, cond).values({column: new}))
        if self.execute:
            change.undo.append(
                {
                    "op": "update",
                    "table": self.entity.source.table,
                    "pk": self._col(self.entity.primary_key),
                    "id": to_json(pk),
                    "column": column,
                    "before": to_json(current),
                    "after": to_json(self.read(column, pk, lock=False)[1]),
                }
            )

    # -- changes -------------------------------------------------------------------------------
    def set(self, change: Change) -> None:
        fdef = self.entity.fields[change.field]
        column = self._col(change.field)
        pk = self._pk(change.target_id)
        exists, current = self.read(column, pk)
        want = self.raw(fdef, change.after)
        if not exists:
            change.status, change.note = "conflict", "the record no longer exists"
            return
        now, after = self.shown(fdef, current), self.shown(fdef, want)
        if now == after:
            change.status = "already"
            return
        if now != change.before:
            change.status, change.note = "conflict", f"changed since the run: now {now!r}"
            return
        self._update(change, pk, column, current, want)
        change.status = "applied" if self.execute else "planned"

    def tag(self, change: Change) -> None:
        fdef = self.entity.fields[change.field]
        storage = fdef.storage
        pk = self._pk(change.target_id)
        tag = change.after
        if not isinstance(tag, str):
            raise SourceError(f"a tag must be one code, got {tag!r}")
        add = change.action == "add_tag"
        kind = storage.chosen()
        if kind == "join_table":
            jt = storage.join_table
            value = self.lookup(jt.lookup)[0].get(tag) if jt.lookup else tag
            if value is None:
                change.status, change.note = (
                    "conflict",
                    f"{jt.lookup.table} has no row for tag {tag!r}",
                )
                return
            table = sql_table(jt.table, jt.key, jt.value)
            key, val = sa.column(jt.key), sa.column(jt.value)
            present = self.conn.execute(
                sa.select(sa.func.count()).select_from(table).where(key == pk, val == value)
            ).scalar_one()
            if bool(present) == add:
                change.status = "already"
                return
            row = {jt.key: pk, jt.value: value}
            if not add:
                # keep the whole row (other columns too), so that undo puts back exactly this
                full = (
                    self.conn.execute(
                        sa.select(sa.text("*"))
                        .select_from(table)
                        .where(key == pk, val == value)
                        .limit(1)
                    )
                    .mappings()
                    .first()
                )
                row = dict(full) if full is not None else row
            stmt = (
                sa.insert(table).values(row)
                if add
                else sa.delete(table).where(key == pk, val == value)
            )
            self.run(change, stmt)
            if self.execute:
                change.undo.append(
                    {
                        "op": "delete_row" if add else "insert_row",
                        "table": jt.table,
                        "values": {k: to_json(v) for k, v in row.items()},
                    }
                )
        else:
            column = getattr(storage, kind).column or change.field
            exists, current = self.read(column, pk)
            if not exists:
                change.status, change.note = "conflict", "the record no longer exists"
                return
            tags = _parse_tags(storage, current)
            if (tag in tags) == add:
                change.status = "already"
                return
            tags = [*tags, tag] if add else [t for t in tags if t != tag]
            self._update(change, pk, column, current, _format_tags(storage, tags))
        change.status = "applied" if self.execute else "planned"

    def insert(
        self,
        change: Change,
        values: dict[str, Any],
        tags: dict[str, list[str]],
        link: tuple[str, str],
    ) -> None:
        """Insert the mapped projection of an old record, unless a record with its UID exists."""
        link_col = sa.column(self._col(link[0]))
        found = self.conn.execute(
            sa.select(self.pk).select_from(self.table).where(link_col == link[1])
        ).first()
        if found is not None:
            change.status, change.note = "already", f"a record with this UID exists (id {found[0]})"
            return
        row = {self._col(name): self.raw(self.entity.fields[name], v) for name, v in values.items()}
        row[self._col(link[0])] = link[1]
        table = sql_table(self.entity.source.table, *row, self._col(self.entity.primary_key))
        stmt = sa.insert(table).values(row).returning(table.c[self._col(self.entity.primary_key)])
        result = self.run(change, stmt)
        new_id = result.scalar_one() if result is not None else None
        change.target_id = str(new_id) if new_id is not None else "(new)"
        if self.execute:
            change.undo.append(
                {
                    "op": "delete_row",
                    "table": self.entity.source.table,
                    "values": {self._col(self.entity.primary_key): to_json(new_id)},
                }
            )
        for name, items in tags.items():
            for t in items:
                sub = Change(
                    change.seq,
                    change.fingerprint,
                    change.entity,
                    "add_tag",
                    change.target_id,
                    change.uid,
                    name,
                    None,
                    t,
                    change.reviewer,
                )
                if self.execute:
                    self.tag(sub)
                else:
                    sub.sql.append(("(tag rows inserted once the new id is known)", [name, t]))
                change.sql += sub.sql
                change.undo = (
                    change.undo + sub.undo
                )  # undone newest first: tag rows, then the record
        change.status = "applied" if self.execute else "planned"


def _parse_tags(storage, raw) -> list[str]:
    from ..extract import tags as tagio

    if raw is None or raw == "":
        return []
    series = pd.Series([raw], dtype=object)
    if storage.chosen() == "delimited":
        long = tagio.split_delimited(series, storage.delimited.separator, storage.delimited.wrap)
    else:
        long = tagio.split_json(as_text(series))
    return list(long["tag"])


def _format_tags(storage, tags: list[str]) -> str:
    if storage.chosen() == "delimited":
        d = storage.delimited
        return d.separator.join(f"{d.wrap}{t}{d.wrap}" for t in tags)
    return json.dumps(tags, ensure_ascii=False)


def undo(conn, steps: list[dict], execute: bool) -> list[dict]:
    """Run an undo patch (newest change first), each step compare-and-set on what apply wrote."""
    report = []
    for step in reversed(steps):
        names = [step["column"]] if step["op"] == "update" else list(step["values"])
        table = sql_table(step["table"], *names)
        if step["op"] == "update":
            pk, col = sa.column(step["pk"]), sa.column(step["column"])
            ident, after, before = (
                from_json(step["id"]),
                from_json(step["after"]),
                from_json(step["before"]),
            )
            row = conn.execute(sa.select(col).select_from(table).where(pk == ident)).first()
            if row is None or row[0] != after:
                report.append({**step, "status": "conflict"})
                continue
            cond = col.is_(None) if after is None else col == after
            stmt = sa.update(table).where(pk == ident, cond).values({step["column"]: before})
        else:
            values = {k: from_json(v) for k, v in step["values"].items()}
            if not values:
                raise SourceError("an undo step names no row; the patch is damaged")
            where = [
                sa.column(k).is_(None) if v is None else sa.column(k) == v
                for k, v in values.items()
            ]
            present = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(*where)
            ).scalar_one()
            if step["op"] == "delete_row":
                if not present:
                    report.append({**step, "status": "already"})
                    continue
                stmt = sa.delete(table).where(*where)
            else:
                if present:
                    report.append({**step, "status": "already"})
                    continue
                stmt = sa.insert(table).values(values)
        if execute:
            conn.execute(stmt)
        report.append(
            {
                **step,
                "status": "applied" if execute else "planned",
                "sql": str(stmt.compile(dialect=conn.dialect)),
            }
        )
    return report
