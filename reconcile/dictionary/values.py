"""Is a single value allowed by a dictionary field? Used by check, the diff and apply."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from .model import Field

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def parse_value(field: Field, value: Any) -> Any:
    """`value` as the field's Python type; ValueError saying why when it does not fit."""
    if value is None:
        return None
    kind = field.kind
    text = value if isinstance(value, str) else str(value)
    if kind.name in ("string", "text"):
        return text
    if kind.name == "enum":
        if text not in field.codes:
            raise ValueError(f"'{text}' is not a code of this enum ({', '.join(field.codes)})")
        return text
    if kind.name == "tags":
        items = value if isinstance(value, list) else [t for t in text.split(",") if t.strip()]
        unknown = [t for t in map(str, items) if field.codes and t.strip() not in field.codes]
        if unknown:
            raise ValueError(f"unknown tag(s) {', '.join(unknown)}")
        return sorted({str(t).strip() for t in items})
    if kind.name == "boolean":
        if isinstance(value, bool):
            return value
        if text.strip().lower() in _TRUE:
            return True
        if text.strip().lower() in _FALSE:
            return False
        raise ValueError(f"'{text}' is not a boolean (true/false)")
    if kind.name == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"'{text}' is not an integer") from None
    if kind.name == "decimal":
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"'{text}' is not a number") from None
        if not number.is_finite():
            raise ValueError(f"'{text}' is not a finite number")
        digits = len(number.as_tuple().digits)
        exponent = number.as_tuple().exponent
        integer_digits = digits + exponent if isinstance(exponent, int) else digits
        if integer_digits > kind.precision - kind.scale:
            raise ValueError(f"'{text}' has too many digits for {kind}")
        return number
    if kind.name == "date":
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"'{text}' is not a date (YYYY-MM-DD)") from None
    if kind.name == "datetime":
        if isinstance(value, dt.datetime):
            return value
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"'{text}' is not a datetime (ISO 8601)") from None
    raise ValueError(f"unsupported type {kind}")
