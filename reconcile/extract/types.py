"""Raw column values into one canonical dtype per dictionary type, vectorized.

Every comparison downstream works on these: strings and enum codes as pandas strings, integers as
Int64, decimals as Float64, booleans as boolean, dates as naive midnight datetimes, datetimes as
UTC. What cannot be read is NA in the result and True in the `bad` mask, so the diff can report it
as unparseable instead of guessing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..dictionary.model import Field

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def as_text(values: pd.Series) -> pd.Series:
    """Anything as pandas strings; integral floats (SQLite ids read as float) lose their '.0'."""
    if pd.api.types.is_float_dtype(values.dtype):  # value by value, so chunks agree
        whole = (values == values.round()) & (values.abs() < 2**63)
        whole = whole.fillna(False).to_numpy(dtype=bool)
        if whole.all() or not values.notna().to_numpy(dtype=bool)[~whole].any():
            return as_text(values.astype("Int64"))
        text = values.astype("string")
        text[whole] = as_text(values[whole].astype("Int64"))
        return text
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.map({True: "true", False: "false"}).astype("string")
    if pd.api.types.is_integer_dtype(values.dtype):  # Arrow's cast: ten times pandas' speed
        text = pa.array(values.array, from_pandas=True).cast(pa.large_string())
        return pd.Series(pd.StringDtype().__from_arrow__(text), index=values.index)
    return values.astype("string")


def arrow_text(values: pd.Series) -> pa.Array:
    """The Arrow data of a text Series as large strings in one piece: as pandas holds it, so
    usually no copy."""
    text = pa.array(values.array, type=pa.large_string())
    return text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text


def null_out(values: pd.Series, tokens: list[str]) -> pd.Series:
    """Missing-value tokens ('' and the field's own, e.g. 'N/A') as NA."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        arr = arrow_text(values)
        # only values as short as the longest token can be one: their lengths are in the
        # offsets, and few values are that short
        longest = max(len(t.encode()) for t in ["", *tokens])
        short = np.flatnonzero(
            pc.less_equal(pc.binary_length(arr), longest).to_numpy(zero_copy_only=False)
        )
        if not len(short):
            return values
        value_set = pa.array(["", *tokens], type=arr.type)
        hit = pc.is_in(arr.take(short), value_set=value_set).to_numpy(zero_copy_only=False)
        if not hit.any():
            return values
        keep = arr.is_valid().to_numpy(zero_copy_only=False)
        keep[short[hit]] = False
        return _with_validity(values, arr, keep)
    if pd.api.types.is_string_dtype(values.dtype) or values.dtype == object:
        return values.mask(values.isin(["", *tokens]))
    return values


def _with_validity(values: pd.Series, arr: pa.Array, keep: np.ndarray) -> pd.Series:
    """`values` (whose Arrow data is `arr`) missing where `keep` is False: the strings stay
    where they are, only the validity bitmap is new."""
    if arr.offset:
        return values.mask(~keep)
    bitmap = pa.array(keep).buffers()[1]
    masked = pa.Array.from_buffers(arr.type, len(arr), [bitmap, *arr.buffers()[1:]])
    return pd.Series(values.dtype.__from_arrow__(masked), index=values.index, name=values.name)


def strip(values: pd.Series) -> pd.Series:
    """Text without surrounding whitespace. Text a server wrote (dates, numbers) seldom has any,
    and stripping copies every string: the first and last byte of each value are looked at
    first, and only where one may be a space (ASCII space or control, or not ASCII) is it done."""
    text = values.astype("string")
    layout = _layout(arrow_text(text))
    if layout is None:
        return text.str.strip()
    starts, ends, data = layout
    given = ends > starts
    if not given.all():
        starts, ends = starts[given], ends[given]
    for edge in (data[starts], data[ends - 1]):
        if ((edge <= 32) | (edge >= 127)).any():
            return text.str.strip()
    return text


def _layout(arr: pa.Array):
    """Where each present value of large strings (arrow_text) starts and ends in their bytes,
    and the bytes; None when there are no bytes at all."""
    if not len(arr) or arr.buffers()[2] is None:
        return None
    at = arr.offset
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[at : at + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    if not arr.null_count:  # views, no copies
        return offsets[:-1], offsets[1:], data
    present = arr.is_valid().to_numpy(zero_copy_only=False)
    return offsets[:-1][present], offsets[1:][present], data


def coerce(values: pd.Series, field: Field) -> tuple[pd.Series, pd.Series]:
    """(typed values, mask of values present but unreadable as the field's type)."""
    kind = field.kind.name
    present = values.notna()
    if kind in ("string", "text", "enum", "tags"):
        return null_out(as_text(values), field.null_tokens), all_false(values)
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        values = null_out(strip(values), field.null_tokens)
        present = values.notna()
    if kind == "integer" and pd.api.types.is_signed_integer_dtype(values.dtype):
        typed = values.astype("Int64")  # read as integers: nothing to parse
    elif kind == "integer":
        typed = pd.to_numeric(values, errors="coerce")
        whole = typed.isna() | (typed == typed.round())
        if pd.api.types.is_float_dtype(typed.dtype):  # beyond int64 is unreadable, not wrapped
            whole &= typed.isna() | (typed.abs() < 2**63)
        typed = typed.where(whole).astype("Int64")
    elif kind == "decimal":
        typed = pd.to_numeric(values, errors="coerce").astype("Float64")
    elif kind == "boolean":
        if pd.api.types.is_bool_dtype(values.dtype):
            typed = values.astype("boolean")
        elif pd.api.types.is_signed_integer_dtype(values.dtype):  # 1 and 0, as their text
            number = values.astype("Int64")
            typed = (number == 1).mask(~number.isin([0, 1]))
        else:
            text = as_text(values).str.lower()
            typed = pd.Series(pd.NA, index=values.index, dtype="boolean")
            typed[text.isin(_TRUE)] = True
            typed[text.isin(_FALSE)] = False
    elif kind == "date":
        typed = _datetimes(values, field.format).dt.tz_localize(None)
        moments = typed.to_numpy(dtype="datetime64[us]")
        since_midnight = moments[~np.isnat(moments)].view(np.int64) % 86_400_000_000
        if since_midnight.any():
            typed = typed.dt.normalize()
    elif kind == "datetime":
        typed = _datetimes(values, field.format)
        if typed.dt.tz is None:
            # A wall-clock time that occurs twice (summer time ending) is read as standard time,
            # on both sides alike; one that never occurs (summer time starting) cannot be read.
            typed = typed.dt.tz_localize(
                field.timezone, ambiguous=np.zeros(len(typed), dtype=bool), nonexistent="NaT"
            )
        typed = typed.dt.tz_convert("UTC")
    else:  # pragma: no cover - the dictionary model admits no other type
        raise ValueError(kind)
    bad = present & typed.isna()
    return typed, bad


def _datetimes(values: pd.Series, fmt: str | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return (
            values.astype("datetime64[us, UTC]")
            if values.dt.tz
            else values.astype("datetime64[us]")
        )
    text = as_text(values)
    fast = _iso(text, fmt)
    if fast is not None:
        return fast
    try:
        parsed = pd.to_datetime(text, format=fmt or "ISO8601", errors="coerce")
    except (
        ValueError
    ):  # several UTC offsets in one column (summer and winter time): read as instants
        parsed = pd.to_datetime(text, format=fmt or "ISO8601", errors="coerce", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        return parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    return parsed.astype("datetime64[us]")


_ISO_FORMATS = {None: None, "%Y-%m-%d": 10, "%Y-%m-%d %H:%M:%S": 19}


def _iso(text: pd.Series, fmt: str | None) -> pd.Series | None:
    """Plain ISO 8601 local times by Arrow's cast, ten times pandas' speed; None when a value is
    not one (an offset, a typo, another layout): pandas then reads the column as before.

    Arrow's ISO parser rejects all that pandas rejects (Feb 30, hour 24); for a stated format the
    layout is checked too, since the parser would also take '2024-01-05T10:00:00'.
    """
    if fmt not in _ISO_FORMATS:
        return None
    arr = arrow_text(text)
    width = _ISO_FORMATS[fmt]
    if width is not None:
        # lengths in bytes, from the offsets: a value of other characters fails the cast below
        if pc.all(pc.equal(pc.binary_length(arr), width)).as_py() is False:
            return None
        layout = _layout(arr)
        if width == 19 and layout is not None and (layout[2][layout[0] + 10] != ord(" ")).any():
            return None
    # in slices, so that a few unreadable values send only their slices to pandas
    parts, step = [], 1 << 16
    for at in range(0, len(arr), step):
        piece = arr.slice(at, step)
        try:
            parts.append(pc.cast(piece, pa.timestamp("us")).to_numpy(zero_copy_only=False))
        except pa.ArrowInvalid:
            try:
                slow = pd.to_datetime(
                    text.iloc[at : at + step], format=fmt or "ISO8601", errors="coerce"
                )
            except ValueError:  # several UTC offsets
                return None
            if slow.dtype != "datetime64[ns]" and slow.dtype != "datetime64[us]":
                return None  # offsets: the whole column is read as instants by pandas
            parts.append(slow.to_numpy(dtype="datetime64[us]"))
    whole = np.concatenate(parts) if parts else np.zeros(0, dtype="datetime64[us]")
    return pd.Series(whole, index=text.index, copy=False)


def all_false(values: pd.Series) -> pd.Series:
    return pd.Series(False, index=values.index)
