"""The fixed list of declarative transforms, each vectorized over a whole column.

Steps run in the order written. A step that cannot read a value (a number that is not a number, a
date in the wrong format) leaves NA and marks the value as unparseable; nothing is evaluated.
"""

from __future__ import annotations

import pandas as pd

from ..errors import ConfigError
from ..extract.types import as_text
from .model import Transform


def apply_steps(
    values: pd.Series, steps: list[Transform], field: str = ""
) -> tuple[pd.Series, pd.Series]:
    """(transformed values, mask of values a step could not read)."""
    bad = pd.Series(False, index=values.index)
    for step in steps:
        name = step.chosen()
        arg = getattr(step, name)
        before = values.notna()
        try:
            values = _STEPS[name](values, arg)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"transform {name} cannot run on {field or 'this field'}: {exc}"
            ) from None
        if name in ("scale", "round", "parse_date", "parse_datetime"):
            bad |= before & values.isna()
    return values, bad


def _text(values: pd.Series) -> pd.Series:
    return values if pd.api.types.is_string_dtype(values.dtype) else as_text(values)


def _numbers(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("Float64")
    return pd.to_numeric(_text(values).str.strip(), errors="coerce").astype("Float64")


def _datetimes(values: pd.Series, fmt: str | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    return pd.to_datetime(_text(values).str.strip(), format=fmt or "ISO8601", errors="coerce")


def _parse_date(values: pd.Series, arg) -> pd.Series:
    parsed = _datetimes(values, arg.format)
    return (parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed).dt.normalize()


def _parse_datetime(values: pd.Series, arg) -> pd.Series:
    parsed = _datetimes(values, arg.format)
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(arg.timezone or "UTC", ambiguous="NaT", nonexistent="NaT")
    return parsed


def _to_timezone(values: pd.Series, tz: str) -> pd.Series:
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        raise ValueError("to_timezone needs a datetime; parse it first with parse_datetime")
    if values.dt.tz is None:
        values = values.dt.tz_localize("UTC")
    return values.dt.tz_convert(tz)


_STEPS = {
    "trim": lambda v, on: _text(v).str.strip() if on else v,
    "fold_case": lambda v, how: getattr(_text(v).str, how)(),
    "null_tokens": lambda v, tokens: _text(v).mask(_text(v).isin(tokens)),
    "scale": lambda v, factor: _numbers(v) * factor,
    "round": lambda v, digits: _numbers(v).round(digits),
    "parse_date": _parse_date,
    "parse_datetime": _parse_datetime,
    "to_timezone": _to_timezone,
    "split": lambda v, arg: _text(v).str.split(arg.separator, regex=False),
    # Lists are rare (split then join); a per-value join is fine there.
    "join": lambda v, arg: v.map(
        lambda x: arg.separator.join(map(str, x)) if isinstance(x, list) else x
    ),
    "regex_replace": lambda v, arg: _text(v).str.replace(arg.pattern, arg.replacement, regex=True),
}
