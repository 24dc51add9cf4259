"""Multi-value tag fields, from whichever storage the dictionary declares, into long form."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ..dictionary.model import TagStorage
from ..errors import SourceError
from .types import as_text


def split_delimited(values: pd.Series, separator: str, wrap: str) -> pd.DataFrame:
    """'^a^,^b^' per record into rows (row, tag), split by Arrow in one pass."""
    text = pa.chunked_array(pa.array(values.astype("string").array, type=pa.large_string()))
    parts = pc.split_pattern(text, separator)
    rows = np.concatenate(
        [np.zeros(0, dtype=np.int64)]
        + [pc.list_parent_indices(c).to_numpy() + at for c, at in _offsets(parts)]
    )
    tags = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    if wrap:  # the wrap once at each end, as str.removeprefix/removesuffix do
        w = re.escape(wrap)
        tags = pc.utf8_trim_whitespace(pc.replace_substring_regex(tags, f"^{w}|{w}$", ""))
    keep = pc.fill_null(pc.not_equal(tags, ""), False).to_numpy(zero_copy_only=False)
    return pd.DataFrame(
        {
            "row": values.index.to_numpy()[rows[keep]],
            "tag": pd.StringDtype().__from_arrow__(tags.filter(pa.array(keep))),
        }
    )


def _offsets(chunked: pa.ChunkedArray):
    at = 0
    for chunk in chunked.chunks:
        yield chunk, at
        at += len(chunk)


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
    found = pc.index_in(pa.array(as_text(pairs["key"]).array, type=pa.large_string()), index)
    found = found.fill_null(-1).to_numpy(zero_copy_only=False)
    hit = found >= 0
    return pd.DataFrame(
        {
            "row": keys.index.to_numpy()[found[hit]],
            "tag": pairs["tag"].astype("string").to_numpy()[hit],
        }
    )


def column_of(storage: TagStorage, field_name: str) -> str | None:
    """The entity column a delimited or JSON tag field lives in (None for a join table)."""
    kind = storage.chosen()
    if kind == "join_table":
        return None
    return getattr(storage, kind).column or field_name
