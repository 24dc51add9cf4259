"""Multi-value tag fields, from whichever storage the dictionary declares, into long form."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ..dictionary.model import TagStorage
from ..errors import SourceError
from .types import arrow_text, as_text


def split_delimited(values: pd.Series, separator: str, wrap: str) -> pd.DataFrame:
    """'^a^,^b^' per record into rows (row, tag), split by Arrow in one pass."""
    text = arrow_text(values.astype("string"))
    # most records carry no tag: only the others are split
    given = pc.fill_null(pc.not_equal(text, ""), False)
    parts = pc.split_pattern(text.filter(given), separator)
    rows = np.flatnonzero(given.to_numpy(zero_copy_only=False))[
        pc.list_parent_indices(parts).to_numpy()
    ]
    # a few dozen distinct tags among many: each is unwrapped once
    pieces = pc.dictionary_encode(pc.list_flatten(parts))
    words = pc.utf8_trim_whitespace(pieces.dictionary)
    if wrap:  # the wrap once at each end, as str.removeprefix/removesuffix do
        n = len(wrap)
        words = pc.if_else(pc.starts_with(words, wrap), pc.utf8_slice_codeunits(words, n), words)
        words = pc.if_else(pc.ends_with(words, wrap), pc.utf8_slice_codeunits(words, 0, -n), words)
        words = pc.utf8_trim_whitespace(words)
    tags = words.take(pieces.indices)
    keep = pc.fill_null(pc.not_equal(tags, ""), False).to_numpy(zero_copy_only=False)
    return pd.DataFrame(
        {
            "row": values.index.to_numpy()[rows[keep]],
            "tag": pd.StringDtype().__from_arrow__(tags.filter(pa.array(keep))),
        }
    )


def split_json(values: pd.Series) -> pd.DataFrame:
    """'["a", "b"]' per record into rows (row, tag), parsed by Arrow in one pass."""
    if values.map(lambda v: isinstance(v, list | tuple | np.ndarray), na_action="ignore").any():
        # json/jsonb columns arrive already decoded as lists
        long = values.dropna().explode().dropna().astype("string").str.strip()
        long = long[long != ""]
        return pd.DataFrame({"row": long.index.to_numpy(), "tag": long.to_numpy()})
    text = values.astype("string").dropna()
    text = text[text.str.strip() != ""]
    if text.empty:
        return pd.DataFrame(
            {"row": pd.Series([], dtype="int64"), "tag": pd.Series([], dtype="string")}
        )
    lines = '{"t":' + text.str.replace("\n", " ", regex=False) + "}"
    try:
        table = pa_json.read_json(io.BytesIO("\n".join(lines).encode("utf-8")))
    except pa.ArrowInvalid:
        bad = next(v for v in text if not _json_list(v))
        raise SourceError(
            f"a tags value is not a JSON array of strings: {bad[:80]!r}",
            hint="Fix the value in the system, or declare the field's storage as delimited.",
        ) from None
    long = table.column("t").to_pandas().set_axis(text.index).explode()
    long = long[long.notna()].astype("string").str.strip()
    long = long[long != ""]
    return pd.DataFrame({"row": long.index.to_numpy(), "tag": long.to_numpy()})


def _json_list(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except ValueError:
        return False


def attach(keys: pd.Series, pairs: pd.DataFrame) -> pd.DataFrame:
    """Join-table rows (key, tag) onto record positions, matching each record's key as text.
    A key held by two records (a primary key should be unique) gives its tags to the first."""
    index = pa.array(as_text(keys).array, type=pa.large_string())
    wanted = pa.array(as_text(pairs["key"]).array, type=pa.large_string())
    found = _dense_index_in(wanted, index)
    if found is None:
        found = pc.index_in(wanted, index).fill_null(-1).to_numpy(zero_copy_only=False)
    hit = found >= 0
    return pd.DataFrame(
        {
            "row": keys.index.to_numpy()[found[hit]],
            "tag": pairs["tag"].astype("string").to_numpy()[hit],
        }
    )


def _dense_index_in(wanted: pa.Array, index: pa.Array) -> np.ndarray | None:
    """index_in for the common case of serial integer ids, by an array lookup instead of a hash
    table (keys of 1M records: a tenth of the time); None when the ids are not such.

    Only ids written the way an integer column writes them ('7', never '007' or '+7') qualify,
    so that matching the numbers matches exactly the texts.
    """
    try:
        ids = pc.cast(index, pa.int64())
        keys = pc.cast(wanted, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    for numbers, text in ((ids, index), (keys, wanted)):
        if pc.all(pc.equal(pc.cast(numbers, pa.large_string()), text)).as_py() is False:
            return None
    if ids.null_count or not len(ids):
        return None
    ids = ids.to_numpy()
    if ids.min() < 0 or ids.max() > 4 * len(ids) + (1 << 20):
        return None  # sparse enough that the table would be large
    row_of = np.full(int(ids.max()) + 2, len(ids), dtype=np.int64)  # the last slot: no such id
    np.minimum.at(row_of, ids.astype(np.int64), np.arange(len(ids)))  # the first record wins
    keys = keys.to_numpy(zero_copy_only=False)
    if keys.dtype != np.int64:  # nulls among the join table's keys
        keys = np.where(np.isnan(keys), -1, keys).astype(np.int64)
    keys = np.where((keys < 0) | (keys >= len(row_of)), len(row_of) - 1, keys)
    found = row_of[keys]
    return np.where(found == len(ids), -1, found)


def column_of(storage: TagStorage, field_name: str) -> str | None:
    """The entity column a delimited or JSON tag field lives in (None for a join table)."""
    kind = storage.chosen()
    if kind == "join_table":
        return None
    return getattr(storage, kind).column or field_name
