"""Each side of an entity streamed into UID-hash partitions on disk, read back one at a time.

A run over N partitions holds one chunk of one side while spilling, then one partition of both
sides while comparing: memory follows the partition, not the table. A key lands in the same
partition on both sides, so matching, duplicates and one-sided records are decided within one;
records without a key all go to partition 0. Partitions are independent diff tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .dictionary.model import Entity
from .errors import OutputError
from .extract import ROW_ID, Extracted, join_tags, joined_tags, stream_entity
from .extract.tags import attach

CHUNK_ROWS = 250_000
_KEY = "__key"
_RAW = "__raw__"  # the original text of a value present but unreadable, NA elsewhere


def part_of(key: pd.Series, n: int) -> np.ndarray:
    """The partition of each link key; keyless records go to 0."""
    hashed = pd.util.hash_array(key.fillna("").to_numpy(dtype=object), categorize=False)
    return np.where(key.isna().to_numpy(), 0, hashed % np.uint64(n)).astype(np.int64)


def id_hash(ids: pd.Series) -> np.ndarray:
    """Two independent 64-bit hashes of each record id (n x 2), to route join-table tags to
    their records' partitions: ids that share both are taken as the same id."""
    values = ids.to_numpy(dtype=object)
    return np.column_stack(
        [
            pd.util.hash_array(values, categorize=False),
            pd.util.hash_array(values, hash_key="reconcile-route2", categorize=False),
        ]
    )


@dataclass
class Spilled:
    """One side of an entity, written as `parts` partitions under `folder`."""

    folder: Path
    parts: int
    inline: list[str] = field(default_factory=list)  # tag fields stored in the records
    joined: list[str] = field(default_factory=list)  # tag fields kept in a join table
    records: int = 0
    empty: pd.DataFrame | None = None  # the columns, for a partition with no records

    def load(self, p: int) -> tuple[Extracted, pd.Series]:
        """Partition `p`: its records, with tags and unreadable values, and their link keys."""
        where = self.folder / str(p)
        chunks = sorted(where.glob("c*.parquet"), key=lambda f: int(f.stem[1:]))
        if not chunks:
            return self._empty(), pd.Series([], dtype="string")
        frames = [pq.read_table(f).to_pandas() for f in chunks]
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        out = Extracted(frame)
        offsets = np.cumsum([0] + [len(f) for f in frames])
        for k, name in enumerate(self.inline):
            out.tags[name] = pd.concat(
                [
                    pq.read_table(c.with_name(f"t{k}.{c.name}"))
                    .to_pandas()
                    .assign(row=lambda t, at=at: t["row"] + at)
                    for c, at in zip(chunks, offsets, strict=False)
                ],
                ignore_index=True,
            )
        for k, name in enumerate(self.joined):
            files = sorted(where.glob(f"j{k}.c*.parquet"), key=lambda f: int(f.stem.split(".c")[1]))
            pairs = (
                pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
                if files
                else pd.DataFrame({"key": pd.Series([], dtype="string"), "tag": []})
            )
            out.tags[name] = attach(frame[ROW_ID], pairs)
        for col in [c for c in frame.columns if c.startswith(_RAW)]:
            name = col.removeprefix(_RAW)
            bad = frame[col].notna()
            if bad.any():
                out.bad[name], out.raw[name] = bad, frame[col]
        key = frame[_KEY]
        out.frame = frame.drop(columns=[_KEY, *[c for c in frame.columns if c.startswith(_RAW)]])
        return out, key

    def _empty(self) -> Extracted:
        raws = [c for c in self.empty.columns if c.startswith(_RAW)]
        ex = Extracted(self.empty.drop(columns=[_KEY, *raws]))
        for name in [*self.inline, *self.joined]:
            ex.tags[name] = pd.DataFrame(
                {"row": pd.Series([], dtype="int64"), "tag": pd.Series([], dtype="string")}
            )
        return ex


def spill(
    system,
    entity: Entity,
    names: list[str],
    filters,
    key_of: Callable[[pd.DataFrame], pd.Series],
    parts: int,
    folder: Path,
    rows: int | None = None,
) -> Spilled:
    """Stream `names` of `entity` (in scope) from `system` into `parts` partitions by link key."""
    rows = rows or CHUNK_ROWS
    joined = joined_tags(entity, names)
    inline = [n for n in names if entity.fields[n].kind.name == "tags" and n not in joined]
    out = Spilled(folder, parts, inline, joined)
    ids, where = [], []  # per record: hash of its id and its partition, to route join tags
    for i, chunk in enumerate(stream_entity(system, entity, names, filters, rows)):
        key = key_of(chunk.frame)
        part = part_of(key, parts)
        frame = chunk.frame.assign(**{_KEY: key.to_numpy()})
        for name, bad in chunk.bad.items():
            frame[_RAW + name] = chunk.raw[name].where(bad)
        if out.empty is None:
            out.empty = frame.iloc[:0]
        if joined:
            ids.append(id_hash(frame[ROW_ID]))
            where.append(part)
        out.records += len(frame)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(parts + 1))
        renumber = np.empty(len(frame), dtype=np.int64)  # each record's row in its partition
        renumber[order] = np.arange(len(frame)) - bounds[part[order]]
        tag_parts = {
            name: part[chunk.tags[name]["row"].to_numpy()] for name in inline
        }  # the partition of each tag's record
        for p in range(parts):
            rows_p = order[bounds[p] : bounds[p + 1]]
            if not len(rows_p):
                continue
            base = folder / str(p) / f"c{i}"
            _write(frame.iloc[rows_p], base.with_suffix(".parquet"))
            for k, name in enumerate(inline):
                long = chunk.tags[name][tag_parts[name] == p]
                _write(
                    pd.DataFrame(
                        {
                            "row": renumber[long["row"].to_numpy()],
                            "tag": long["tag"].astype("string").to_numpy(),
                        }
                    ),
                    base.with_name(f"t{k}.c{i}.parquet"),
                )
    if joined:
        _route_join_tags(system, entity, out, np.concatenate(ids), np.concatenate(where), rows)
    return out


def _route_join_tags(system, entity, out: Spilled, ids: np.ndarray, where: np.ndarray, rows):
    """Join-table tags into the partition of their record, found by the id's hashes.

    As in a whole run, an id held by two records (a view with no primary key) gives its tags to
    the first in read order. Tags of records out of scope go nowhere.
    """
    if not len(ids):
        return
    order = np.lexsort((ids[:, 1], ids[:, 0]))  # stable: equal ids stay in read order
    ids, where = ids[order], where[order]
    first = np.ones(len(ids), dtype=bool)
    first[1:] = (ids[1:] != ids[:-1]).any(axis=1)
    ids, where = ids[first], where[first]
    for k, name in enumerate(out.joined):
        for j, pairs in enumerate(join_tags(system, entity, name, rows)):
            hashed = id_hash(pairs["key"]).reshape(-1, 2)
            lo = np.searchsorted(ids[:, 0], hashed[:, 0], side="left")
            hi = np.searchsorted(ids[:, 0], hashed[:, 0], side="right")
            part = np.full(len(pairs), -1)
            one = (hi - lo == 1) & (ids[np.minimum(lo, len(ids) - 1), 1] == hashed[:, 1])
            part[one] = where[lo[one]]
            for i in np.flatnonzero(hi - lo > 1):  # ids sharing their first hash: rare
                same = np.flatnonzero(ids[lo[i] : hi[i], 1] == hashed[i, 1])
                if len(same):
                    part[i] = where[lo[i] + same[0]]
            for p in range(out.parts):
                mine = part == p
                if mine.any():
                    _write(pairs[mine], out.folder / str(p) / f"j{k}.c{j}.parquet")


def _write(frame: pd.DataFrame, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    except OSError as exc:
        raise OutputError(
            f"cannot write the partition file {path}: {exc.strerror or exc}",
            hint="Point TMPDIR at a folder with room: a spilled run needs about as much disk "
            "as the two tables take as Parquet.",
        ) from None
