"""`--since-last`: compare only the records changed since the last recorded run.

A record counts as changed when its updated-at field (the dictionary's `updated_at`) on either
side is at or after the previous run's start. Both sides are then read for exactly the changed
link keys, so a changed old record is still compared with its unchanged new counterpart. The
previous run's findings about records not re-checked are carried forward, so that every
finding's lifecycle stays right: nothing unchecked is called resolved.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

from .extract import ROW_ID, Extracted, concat, read_entity, subset
from .mapping.model import EntityMap, Filter

CHUNK = 500  # keys per IN (...) list


@dataclass
class Changed:
    """What a partial run re-checked for one entity."""

    since: dt.datetime
    keys: set[str] = field(default_factory=set)
    source_ids: set[str] = field(default_factory=set)
    target_ids: set[str] = field(default_factory=set)

    def summary(self) -> dict:
        return {
            "since": self.since.isoformat(),
            "records": len(self.keys),  # changed link keys (records without a key come on top)
        }


def supported(emap: EntityMap, src_entity, tgt_entity) -> bool:
    return bool(emap.link.uid and src_entity.updated_at and tgt_entity.updated_at)


def changed(proj, emap: EntityMap, src_entity, tgt_entity, since: dt.datetime) -> Changed:
    from .run import key_text

    out = Changed(since)
    for side, system, entity, link_field in (
        ("source", proj.source, src_entity, emap.link.uid.source),
        ("target", proj.target, tgt_entity, emap.link.uid.target),
    ):
        # Without the scope: a record archived or soft-deleted since must be looked at again.
        recent = Filter(field=entity.updated_at, op="ge", value=since.isoformat())
        names = list(dict.fromkeys([entity.primary_key, link_field, entity.updated_at]))
        got = read_entity(system, entity, names, [recent])
        keys = key_text(got.frame[link_field])
        out.keys |= set(keys.dropna())
        ids = set(got.frame[ROW_ID].dropna())
        (out.source_ids if side == "source" else out.target_ids).update(ids)
    # `reconcile apply` changes the new CRM without touching updated_at: its records count too.
    for uid, target_id in _applied_since(proj, emap, since):
        if uid:
            out.keys.add(uid)
        if target_id:
            out.target_ids.add(target_id)
    return out


def _applied_since(
    proj, emap: EntityMap, since: dt.datetime
) -> list[tuple[str | None, str | None]]:
    import sqlalchemy as sa

    from .history import changes

    if not proj.has_history():
        return []
    name = next(n for n, m in proj.mapping.entities.items() if m is emap)
    history = proj.history()
    try:
        with history.engine.connect() as conn:
            rows = conn.execute(
                sa.select(changes.c.uid, changes.c.target_id).where(
                    changes.c.entity == name,
                    changes.c.status == "applied",
                    changes.c.at >= since.astimezone(dt.UTC).replace(tzinfo=None),
                )
            ).all()
    finally:
        history.close()
    return [(u, t) for u, t in rows]


def read_changed(
    system,
    entity,
    names: list[str],
    scope: list[Filter],
    link_field: str,
    keys: set[str],
    ids: set[str],
) -> Extracted:
    """The in-scope records whose link key is in `keys` or whose id is in `ids`, each once."""
    parts = []
    for name, values in ((link_field, sorted(keys)), (entity.primary_key, sorted(ids))):
        for start in range(0, len(values), CHUNK):
            chunk = Filter(field=name, op="in", value=values[start : start + CHUNK])
            parts.append(read_entity(system, entity, names, [*scope, chunk]))
    if not parts:
        parts.append(
            read_entity(
                system, entity, names, [*scope, Filter(field=entity.primary_key, op="in", value=[])]
            )
        )
    return _dedupe(concat(parts))


def _dedupe(ext: Extracted) -> Extracted:
    keep = ~ext.frame[ROW_ID].duplicated()
    return ext if keep.all() else subset(ext, keep, ext.tags)


def carry_forward(previous: pd.DataFrame, rechecked: dict[str, Changed]) -> pd.DataFrame:
    """The previous run's findings about records this run did not look at.

    Only entities compared partially carry anything: an entity read in full has all its
    findings anew."""
    if previous.empty:
        return previous
    keep = pd.Series(False, index=previous.index)
    for entity, ch in rechecked.items():
        mine = previous["entity"] == entity
        looked = (
            previous["uid"].isin(list(ch.keys))
            | _any_id(previous["source_id"], ch.source_ids)
            | _any_id(previous["target_id"], ch.target_ids)
        )
        keep |= mine & ~looked
    return previous[keep]


def _any_id(ids: pd.Series, wanted: set[str]) -> pd.Series:
    """Does a finding name one of `wanted`? Duplicate findings list several ids, comma-joined."""
    text = ids.fillna("")
    hit = text.isin(list(wanted))
    joined = text.str.contains(",", regex=False)
    if joined.any():
        hit[joined] = text[joined].map(lambda v: any(i in wanted for i in v.split(",")))
    return hit
