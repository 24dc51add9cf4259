"""`reconcile run`: extract both systems, project the old records, diff, gather findings."""

from __future__ import annotations

import datetime as dt
import secrets
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import findings as fz
from . import since as since_mod
from .dictionary.model import Entity
from .diff import diff_entity, render, transitions
from .errors import SourceError
from .extract import ROW_ID, read_entity
from .extract.types import as_text, null_out, strip
from .mapping.model import EntityMap
from .normalize import project
from .project import Project
from .spill import spill

Progress = Callable[[str], None]


@dataclass
class RunResult:
    """A finished run: its id, its findings and what it was checked against."""

    run_id: str
    started: dt.datetime
    as_of: dt.date
    findings: pd.DataFrame
    records: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds by stage
    transitions: dict[str, dict] = field(default_factory=dict)  # entity -> state field -> cells
    stale: dict[str, dict] = field(default_factory=dict)  # entity -> open records not updated
    lifecycle: dict = field(default_factory=dict)  # new, persisting, reopened, accepted, resolved
    changed: dict = field(default_factory=dict)  # entity -> since.Changed, for a --since-last run
    since_last: dict = field(default_factory=dict)  # what a partial run re-checked and carried

    def counts(self) -> dict:
        """Open findings by kind and entity; accepted differences counted apart."""
        accepted = self.findings["status"] == "accepted"
        f = self.findings[~accepted]
        by_kind = {k: int(v) for k, v in f["kind"].value_counts().items()}
        by_entity: dict[str, dict[str, int]] = {}
        for (entity, kind), n in f.groupby(["entity", "kind"]).size().items():
            by_entity.setdefault(entity, {})[kind] = int(n)
        ordered = {k: by_kind[k] for k in fz.KINDS if k in by_kind}
        return {
            "total": len(f),
            "by_kind": ordered,
            "by_entity": by_entity,
            "accepted": int(accepted.sum()),
        }


def new_run_id(now: dt.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run_project(
    proj: Project,
    as_of: dt.date | None = None,
    progress: Progress = lambda _: None,
    stale_days: int = 7,
    started: dt.datetime | None = None,
    since: dt.datetime | None = None,
    partitions: int = 1,
    spill_dir: Path | None = None,
) -> RunResult:
    """Compare both systems of `proj`. `started` fixes the run's clock (tests, re-runs)."""
    # the database drivers load before the clock starts: process start-up, not reading
    from .extract.sql import load_driver

    for system in (proj.source, proj.target):
        if system.url is not None:
            load_driver(system.url)

    started = started or dt.datetime.now(dt.UTC).replace(microsecond=0)
    as_of = as_of or proj.config.as_of or started.date()
    clock = time.perf_counter()
    parts: list[pd.DataFrame] = []
    records: dict[str, dict[str, int]] = {}
    # compare is everything after extract; project, diff and extras (transitions, stale records)
    # are its parts, apart from reading spilled partitions back
    timings = {"extract": 0.0, "compare": 0.0, "project": 0.0, "diff": 0.0, "extras": 0.0}
    moves: dict[str, dict] = {}
    stale: dict[str, dict | None] = {}
    result_changed: dict = {}
    for name, emap in proj.mapping.entities.items():
        tick = time.perf_counter()
        src_entity = proj.source.dictionary.entities[emap.source]
        tgt_entity = proj.target.dictionary.entities[emap.target]
        s_names, t_names = (
            fields_read(emap, src_entity, "source"),
            fields_read(emap, tgt_entity, "target"),
        )
        sides = [
            (
                side,
                system,
                entity,
                names,
                getattr(emap.scope, side),
                keyer(proj, emap, side, entity),
            )
            for side, system, entity, names in (
                ("source", proj.source, src_entity, s_names),
                ("target", proj.target, tgt_entity, t_names),
            )
        ]
        with tempfile.TemporaryDirectory(prefix="reconcile-", dir=spill_dir) as spilled:
            if since is not None and since_mod.supported(emap, src_entity, tgt_entity):
                progress(f"{name}: finding records changed since {since.isoformat()}")
                ch = since_mod.changed(proj, emap, src_entity, tgt_entity, since)
                result_changed[name] = ch
                src, tgt = (
                    since_mod.read_changed(
                        system,
                        entity,
                        names,
                        scope,
                        getattr(emap.link.uid, side),
                        ch.keys,
                        getattr(ch, f"{side}_ids"),
                    )
                    for side, system, entity, names, scope, _ in sides
                )
                pieces = [(src, None, tgt, None)]
                sizes = len(src.frame), len(tgt.frame)
            elif partitions > 1:
                spills = []
                for side, system, entity, names, scope, key_of in sides:
                    progress(
                        f"{name}: reading {system.name}.{getattr(emap, side)} into {partitions} parts"
                    )
                    spills.append(
                        spill(
                            system, entity, names, scope, key_of, partitions, Path(spilled) / side
                        )
                    )
                s_sp, t_sp = spills
                pieces = ((*s_sp.load(p), *t_sp.load(p)) for p in range(partitions))
                sizes = s_sp.records, t_sp.records
            else:
                read = []
                for side, system, entity, names, scope, _ in sides:
                    progress(f"{name}: reading {system.name}.{getattr(emap, side)}")
                    read.append(read_entity(system, entity, names, scope))
                src, tgt = read
                pieces = [(src, None, tgt, None)]  # keyed below, as part of the diff
                sizes = len(src.frame), len(tgt.frame)
            progress(f"{name}: {sizes[0]:,} old and {sizes[1]:,} new records; comparing")
            timings["extract"] += time.perf_counter() - tick
            tick = time.perf_counter()
            matched, cells, stale_parts = 0, [], []
            for s_part, s_key, t_part, t_key in pieces:
                # keys need no projection: worked on the other core meanwhile; stale records
                # too, but after the diff, so that they do not take a core from its join
                aside = ThreadPoolExecutor(1)
                keyed = aside.submit(sides[0][5], s_part.frame) if s_key is None else None
                t_keyed = aside.submit(sides[1][5], t_part.frame) if t_key is None else None
                with _timed(timings, "project"):
                    projection = project(emap, s_part, src_entity, tgt_entity)
                with _timed(timings, "diff"):
                    if keyed is not None:
                        s_key, t_key = keyed.result(), t_keyed.result()
                    found, rs, rt = diff_entity(
                        name,
                        emap,
                        s_part,
                        t_part,
                        s_key,
                        t_key,
                        projection,
                        src_entity,
                        tgt_entity,
                        as_of,
                    )
                stale_part = (
                    aside.submit(stale_records, t_part.frame, emap, tgt_entity, as_of, stale_days)
                    if name not in result_changed
                    else None
                )
                aside.shutdown(wait=False)
                parts += found
                matched += len(rs)
                with _timed(timings, "extras"):
                    cells.append(transitions(projection, s_part.frame, t_part.frame, rs, rt))
                    if stale_part is not None:
                        stale_parts.append(stale_part.result())
        records[name] = {"source": sizes[0], "target": sizes[1], "matched": matched}
        moves[name] = merge_transitions(cells)
        if name in result_changed:  # a partial run reads the few columns stale records need
            needed = [f.target for f in emap.fields if f.role == "state"]
            needed += [n for n in (tgt_entity.updated_at, tgt_entity.owner) if n]
            frame = read_entity(
                proj.target,
                tgt_entity,
                list(dict.fromkeys([tgt_entity.primary_key, *needed])),
                emap.scope.target,
            ).frame
            stale_parts = [stale_records(frame, emap, tgt_entity, as_of, stale_days)]
        stale[name] = merge_stale(stale_parts)
        timings["compare"] += time.perf_counter() - tick
    tick = time.perf_counter()
    with _timed(timings, "diff"):
        findings = fz.finish(parts)
        known = accepted_differences(proj, as_of)
        findings.loc[findings["fingerprint"].isin(list(known)), "status"] = "accepted"
    result = RunResult(new_run_id(started), started, as_of, findings, records)
    result.transitions = moves
    result.changed = result_changed
    result.stale = {k: v for k, v in stale.items() if v is not None}
    timings["compare"] += time.perf_counter() - tick
    result.seconds = round(time.perf_counter() - clock, 3)
    result.timings = {k: round(v, 3) for k, v in timings.items()}
    return result


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    tick = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] += time.perf_counter() - tick


def merge_transitions(parts: list[dict[str, list[dict]]]) -> dict[str, list[dict]]:
    """The transition cells of several parts, added up."""
    total: dict[str, dict[tuple, int]] = {}
    for part in parts:
        for field_name, cells in part.items():
            into = total.setdefault(field_name, {})
            for c in cells:
                key = (c["old"], c["expected"], c["actual"])
                into[key] = into.get(key, 0) + c["count"]
    return {
        f: [
            {"old": o, "expected": e, "actual": a, "count": n}
            for (o, e, a), n in sorted(cells.items())
        ]
        for f, cells in total.items()
    }


def accepted_differences(proj: Project, as_of: dt.date) -> set[str]:
    """Fingerprints reviewers accepted (reconcile apply, decision reject), still in force."""
    if not proj.has_history():
        return set()
    history = proj.history()
    try:
        return set(history.accepted(as_of))
    finally:
        history.close()


def stale_records(T: pd.DataFrame, emap: EntityMap, entity: Entity, as_of: dt.date, days: int):
    """Records in an open state (codes marked open: true) not updated for `days` days, by owner.

    Needs the target entity's updated_at and owner, and a state field with open codes; None when
    the dictionary does not say so much.
    """
    state = next(
        (
            f.target
            for f in emap.fields
            if f.role == "state" and any(c.open for c in entity.fields[f.target].codes.values())
        ),
        None,
    )
    if not (entity.updated_at and entity.owner and state):
        return None
    open_codes = [c for c, d in entity.fields[state].codes.items() if d.open]
    cutoff = pd.Timestamp(as_of - dt.timedelta(days=days))
    updated = T[entity.updated_at]
    if getattr(updated.dt, "tz", None) is not None:
        cutoff = cutoff.tz_localize("UTC")
    rows = np.flatnonzero(
        (T[state].isin(open_codes) & (updated < cutoff)).fillna(False).to_numpy(dtype=bool)
    )
    owners = T[entity.owner].iloc[rows].fillna("(none)").value_counts().sort_index()
    # the 50 oldest: only records as old as the 50th can be among them, ties included
    when = updated.to_numpy(dtype="datetime64[us]").astype(np.int64)[rows]
    if len(rows) > 50:
        rows = rows[when <= np.partition(when, 49)[49]]
    columns = [ROW_ID, entity.owner, state, entity.updated_at]
    sample = T[columns].iloc[rows].sort_values([entity.updated_at, ROW_ID]).head(50)
    return {
        "days": days,
        "state_field": state,
        "total": int(owners.sum()),
        "by_owner": {str(k): int(v) for k, v in owners.items()},
        "oldest": [
            {"id": i, "owner": o, "state": st, "updated_at": u, "_order": (t, i)}
            for i, o, st, u, t in zip(
                sample[ROW_ID],
                sample[entity.owner].fillna(""),
                sample[state].fillna(""),
                render(sample[entity.updated_at], entity.fields[entity.updated_at]).fillna(""),
                sample[entity.updated_at].to_numpy(dtype="datetime64[us]").astype(np.int64),
                strict=True,
            )
        ],
    }


def merge_stale(parts: list[dict | None]) -> dict | None:
    """The stale records of several parts as of one whole: totals added, the oldest 50 kept."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    owners: dict[str, int] = {}
    for p in parts:
        for owner, n in p["by_owner"].items():
            owners[owner] = owners.get(owner, 0) + n
    oldest = sorted((r for p in parts for r in p["oldest"]), key=lambda r: r["_order"])[:50]
    return {
        **parts[0],
        "total": sum(p["total"] for p in parts),
        "by_owner": dict(sorted(owners.items(), key=lambda kv: (-kv[1], kv[0]))),
        "oldest": [{k: v for k, v in r.items() if k != "_order"} for r in oldest],
    }


def fields_read(emap: EntityMap, entity: Entity, side: str) -> list[str]:
    """The fields of `side` ('source' or 'target') that the mapping needs: nothing else is read."""
    names = [getattr(f, side) for f in emap.fields if f.role != "ignore"]
    names += [f.field for f in getattr(emap.scope, side)]
    if side == "target":
        names += [t for f in emap.fields for v in f.values.values() for t in v.set]
        if emap.cutover:
            names.append(emap.cutover.field)
        names += [n for n in (entity.updated_at, entity.owner) if n]
    link = emap.link
    if link.uid:
        names.append(getattr(link.uid, side))
    if link.crosswalk:
        names.append(getattr(link.crosswalk, side) or entity.primary_key)
    names += [getattr(k, side) for k in link.natural_key or []]
    return list(dict.fromkeys([entity.primary_key, *names]))


def key_text(values: pd.Series) -> pd.Series:
    """Link keys as trimmed text; blank is no key."""
    return null_out(strip(as_text(values)), [])


def keyer(proj: Project, emap: EntityMap, side: str, entity: Entity):
    """A function giving each record of `side` ('source' or 'target') the key it is matched on,
    as text; NA where a record has none. Row by row, so that chunks can be keyed one by one."""
    link = emap.link
    if link.uid:
        column = getattr(link.uid, side)
        return lambda frame: key_text(frame[column])
    if link.natural_key:
        names = [getattr(k, side) for k in link.natural_key]

        def joined(frame):
            key = key_text(frame[names[0]])
            for n in names[1:]:
                key = key + "\x1f" + key_text(frame[n])
            return key

        return joined
    cw = link.crosswalk
    column = getattr(cw, side) or entity.primary_key
    if side == "target":
        return lambda frame: key_text(frame[column])
    table = _read_crosswalk(proj, cw)
    new_of = pd.Series(table["new"].to_numpy(), index=table["old"].to_numpy())
    new_of = new_of[~new_of.index.duplicated(keep=False)]
    return lambda frame: key_text(frame[column]).map(new_of).astype("string")


def _read_crosswalk(proj: Project, cw) -> pd.DataFrame:
    import sqlalchemy as sa

    from .extract.sql import connect, sql_table

    if cw.file is not None:
        path = proj.root / cw.file
        if not path.is_file():
            raise SourceError(f"crosswalk file not found: {path}")
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        missing = {cw.source_key, cw.target_key} - set(table.columns)
        if missing:
            raise SourceError(
                f"crosswalk {path.name} has no column(s) {', '.join(sorted(missing))}"
            )
        table = table[[cw.source_key, cw.target_key]]
    else:
        system = proj.source if cw.system == "source" else proj.target
        engine = connect(system.url)
        try:
            with engine.connect() as conn:
                stmt = sa.select(sa.column(cw.source_key), sa.column(cw.target_key)).select_from(
                    sql_table(cw.table)
                )
                table = pd.read_sql(stmt, conn)
        finally:
            engine.dispose()
    table.columns = ["old", "new"]
    return pd.DataFrame({"old": key_text(table["old"]), "new": key_text(table["new"])}).dropna()


__all__ = ["ROW_ID", "RunResult", "keyer", "run_project"]
