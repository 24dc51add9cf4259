"""SaaS targets: corrections as import files keyed by external id, one CSV per object."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ..atomic import atomic_path
from ..extract import read_entity
from ..project import Project
from ..worksheet import neutralise
from .plan import Change
from .run import insert_default, projections


def emit(proj: Project, writes: list[Change], out: Path) -> dict[str, str]:
    """Write OUT/<object>.csv: the external id (the link UID) and the corrected fields.

    Multi-value tag fields are written whole (the SaaS import replaces the set), so the current
    tags are read from the new system first and the approved additions and removals applied.
    """
    paths = {}
    for entity in sorted({c.entity for c in writes}):
        emap = proj.mapping.entities[entity]
        t_ent = proj.target.dictionary.entities[emap.target]
        ext = emap.link.uid.target if emap.link.uid else t_ent.primary_key
        mine = [c for c in writes if c.entity == entity]
        inserts = projections(proj, [c for c in mine if c.action == "insert"])
        tag_fields = sorted({c.field for c in mine if c.action in ("add_tag", "remove_tag")})
        current = read_entity(proj.target, t_ent, [ext, *tag_fields], emap.scope.target)
        rows: dict[str, dict] = {}
        for c in mine:
            key = c.uid if emap.link.uid else c.target_id
            row = rows.setdefault(key, {ext: key})
            if c.action == "set":
                row[c.field] = c.after
            elif c.action == "insert":
                values, tags = inserts.get(c.uid, ({}, {}))
                defaults = {k: insert_default(v, proj, emap, k) for k, v in emap.on_insert.items()}
                row.update({k: _text(v) for k, v in {**defaults, **values}.items()})
                row.update({k: set(v) for k, v in tags.items()})
                row["_insert"] = "yes"
            else:
                if c.field not in row:
                    row[c.field] = set(_tags_of(current, c.field, ext, key))
                (row[c.field].add if c.action == "add_tag" else row[c.field].discard)(c.after)
        columns = [ext, *sorted({k for r in rows.values() for k in r} - {ext})]
        frame = pd.DataFrame(
            [
                {k: (";".join(sorted(v)) if isinstance(v, set) else v) for k, v in r.items()}
                for r in rows.values()
            ],
            columns=columns,
        ).map(lambda v: neutralise(str(v)) if pd.notna(v) else "")
        path = out / f"{emap.target}.csv"
        with atomic_path(path) as tmp:
            frame.to_csv(
                tmp,
                index=False,
                encoding="utf-8-sig",
                quoting=csv.QUOTE_MINIMAL,
                lineterminator="\n",
            )
        paths[f"upsert_{emap.target}"] = str(path)
    return paths


def _text(value) -> str:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    return str(value).lower() if isinstance(value, bool) else str(value)


def _tags_of(current, field: str, ext: str, key: str) -> list[str]:
    rows = current.frame.index[current.frame[ext].astype("string") == key]
    long = current.tags[field]
    return list(long.loc[long["row"].isin(rows), "tag"])
