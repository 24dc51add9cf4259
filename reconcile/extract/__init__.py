"""Read one entity of one system into typed columns, long-form tags and unreadable values."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..dictionary.model import Entity
from ..errors import SourceError
from ..mapping.model import Filter
from .tags import attach
from .types import as_text, coerce

ROW_ID = "_id"


@dataclass
class Extracted:
    """An entity's in-scope records.

    `frame` has one typed column per dictionary field read, plus `_id` (the native primary key as
    text). `tags[field]` is long-form: one row per (record position, tag). `bad[field]` marks
    values present but unreadable, and `raw[field]` keeps their original text for the report.
    """

    frame: pd.DataFrame
    tags: dict[str, pd.DataFrame] = field(default_factory=dict)
    bad: dict[str, pd.Series] = field(default_factory=dict)
    raw: dict[str, pd.Series] = field(default_factory=dict)


def read_entity(system, entity: Entity, names: list[str], filters: list[Filter]) -> Extracted:
    """Read `names` (scalar and tag fields) of `entity` from `system`, in scope only."""
    whole = concat(list(stream_entity(system, entity, names, filters)))
    for name in joined_tags(entity, names):
        pairs = pd.concat(list(join_tags(system, entity, name)), ignore_index=True)
        whole.tags[name] = attach(whole.frame[ROW_ID], pairs)
    return whole


def stream_entity(system, entity: Entity, names: list[str], filters: list[Filter], rows=None):
    """The in-scope records in typed chunks of at most `rows` rows read (one chunk for None).

    Tags kept in a join table are not attached: join_tags reads them apart, so that a caller
    holding one chunk at a time can route them.
    """
    from .files import read_export
    from .sql import read_table

    scalars = [n for n in names if entity.fields[n].kind.name != "tags"]
    inline = [n for n in names if n not in scalars and n not in joined_tags(entity, names)]
    if system.url is not None:
        chunks = read_table(system.url, entity, scalars, inline, filters, rows)
    else:
        chunks = read_export(system.exports, entity, scalars, inline, filters, rows)
    for raw, tags, late in chunks:
        result = Extracted(pd.DataFrame(index=raw.index))
        for name in scalars:
            typed, bad = coerce(raw[name], entity.fields[name])
            result.frame[name] = typed
            if bad.any():
                result.bad[name] = bad
                result.raw[name] = raw[name].astype("string")
        result.frame[ROW_ID] = as_text(raw[entity.primary_key])
        keep = _post_filter(result.frame, entity, late)
        if keep is not None:
            result = subset(result, keep, tags)
        else:
            result.tags = tags
        yield result


def joined_tags(entity: Entity, names: list[str]) -> list[str]:
    """The tag fields among `names` kept in a join table."""
    return [
        n
        for n in names
        if entity.fields[n].kind.name == "tags"
        and entity.fields[n].storage.chosen() == "join_table"
    ]


def join_tags(system, entity: Entity, name: str, rows=None):
    """Chunks of (key, tag) rows of a join-table tag field; key is the record's primary key."""
    from .sql import read_join_tags

    if system.url is None:
        raise SourceError(
            f"{entity.source.name}: a join-table tag field cannot be read from an export",
            hint="Declare the tags as delimited or json_array for file sources.",
        )
    for pairs in read_join_tags(system.url, entity, name, rows):
        tags = pairs["tag"].astype("string")
        keep = (tags.notna() & (tags.str.strip() != "")).fillna(False).to_numpy(dtype=bool)
        yield pd.DataFrame({"key": as_text(pairs["key"])[keep], "tag": tags[keep]})


def concat(parts: list[Extracted]) -> Extracted:
    """Chunks of one entity as one."""
    if len(parts) == 1:
        return parts[0]
    out = Extracted(pd.concat([p.frame for p in parts], ignore_index=True))
    offsets = np.cumsum([0] + [len(p.frame) for p in parts])
    for name in dict.fromkeys(n for p in parts for n in p.tags):
        out.tags[name] = pd.concat(
            [
                p.tags[name].assign(row=p.tags[name]["row"] + at)
                for p, at in zip(parts, offsets, strict=False)
                if name in p.tags
            ],
            ignore_index=True,
        )
    for name in dict.fromkeys(n for p in parts for n in p.bad):
        out.bad[name] = pd.concat(
            [p.bad.get(name, pd.Series(False, index=p.frame.index)) for p in parts],
            ignore_index=True,
        )
        out.raw[name] = pd.concat(
            [p.raw.get(name, pd.Series(pd.NA, index=p.frame.index, dtype="string")) for p in parts],
            ignore_index=True,
        )
    return out


def _post_filter(frame: pd.DataFrame, entity: Entity, filters: list[Filter]) -> pd.Series | None:
    """Scope filters that could not be pushed into the source (lookups, exports)."""
    from ..dictionary.values import parse_value

    if not filters:
        return None
    keep = pd.Series(True, index=frame.index)
    for flt in filters:
        col = frame[flt.field]
        fdef = entity.fields[flt.field]
        value = flt.value
        if flt.op in ("in", "not_in"):
            value = [parse_value(fdef, v) for v in value]
        elif value is not None:
            value = parse_value(fdef, value)
        if fdef.kind.name in ("date", "datetime") and value is not None:
            value = pd.Timestamp(value)
            if fdef.kind.name == "datetime" and value.tzinfo is None:
                value = value.tz_localize(fdef.timezone)
        match flt.op:
            case "eq":
                cond = col == value
            case "ne":
                cond = (col != value) | col.isna()
            case "in":
                cond = col.isin(value)
            case "not_in":
                cond = ~col.isin(value) | col.isna()
            case "is_null":
                cond = col.isna()
            case "not_null":
                cond = col.notna()
            case "lt":
                cond = col < value
            case "le":
                cond = col <= value
            case "gt":
                cond = col > value
            case "ge":
                cond = col >= value
        keep &= cond.fillna(False).astype(bool)
    return keep


def subset(result: Extracted, keep: pd.Series, tags: dict[str, pd.DataFrame]) -> Extracted:
    positions = keep[keep].index
    out = Extracted(result.frame.loc[positions].reset_index(drop=True))
    renumber = pd.Series(range(len(positions)), index=positions)
    for name, long in tags.items():
        kept = long[long["row"].isin(positions)]
        out.tags[name] = pd.DataFrame(
            {"row": renumber.loc[kept["row"]].to_numpy(), "tag": kept["tag"].to_numpy()}
        )
    for name, bad in result.bad.items():
        out.bad[name] = bad.loc[positions].reset_index(drop=True)
        out.raw[name] = result.raw[name].loc[positions].reset_index(drop=True)
    return out
