"""Multi-value tag fields, from whichever storage the dictionary declares, into long form."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from ..dictionary.model import TagStorage
from ..errors import SourceError
from .types import as_text


def split_delimited(values: pd.Series, separator: str, wrap: str) -> pd.DataFrame:
    """'^a^,^b^' per record into rows (row, tag)."""
    text = values.astype("string").dropna()
    long = text.str.split(separator, regex=False).explode().str.strip()
    if wrap:
        long = long.str.removeprefix(wrap).str.removesuffix(wrap).str.strip()
    long = long[long.notna() & (long != "")]
    return pd.DataFrame({"row": long.index.to_numpy(), "tag": long.astype("string").to_numpy()})


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
    """Join-table rows (key, tag) onto record positions, matching each record's raw key."""
    index = pd.Index(keys.to_numpy())
    lookup = pairs["key"]
    if index.dtype != lookup.dtype:  # e.g. integer ids against text: compare as text
        index, lookup = pd.Index(as_text(keys).to_numpy()), as_text(lookup)
    positions = keys.index.to_numpy()
    if not index.is_unique:  # a primary key should be unique; the first record keeps the tags
        first = ~index.duplicated()
        index, positions = index[first], positions[first]
    found = index.get_indexer(lookup.to_numpy())
    hit = found >= 0
    return pd.DataFrame(
        {"row": positions[found[hit]], "tag": pairs["tag"].astype("string").to_numpy()[hit]}
    )


def column_of(storage: TagStorage, field_name: str) -> str | None:
    """The entity column a delimited or JSON tag field lives in (None for a join table)."""
    kind = storage.chosen()
    if kind == "join_table":
        return None
    return getattr(storage, kind).column or field_name
