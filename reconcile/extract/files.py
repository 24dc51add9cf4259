"""CRM export files (CSV, XLSX): every value read as text, typed by the dictionary afterwards."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..dictionary.model import Entity
from ..errors import SourceError
from . import tags as tagio


def read_export(
    folder: Path, entity: Entity, scalars: list[str], tag_fields: list[str], filters, rows=None
):
    """Chunks of at most `rows` records (CSV; XLSX and rows=None: all at once), each as (raw
    frame named by field, long tags per field, filters left for pandas: all of them)."""
    path = folder / entity.source.name
    if not path.is_file():
        raise SourceError(f"export file not found: {path}", hint="Check exports in reconcile.yaml.")
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            tables = [pd.read_excel(path, dtype=str, keep_default_na=False)]
        else:
            tables = pd.read_csv(
                path, dtype=str, keep_default_na=False, encoding="utf-8-sig", chunksize=rows
            )
            tables = [tables] if rows is None else tables
        for table in tables:
            frame, long = _chunk(table.reset_index(drop=True), entity, scalars, tag_fields, path)
            yield frame, long, list(filters)
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{path} is not UTF-8 (byte {exc.start})", hint="Export as UTF-8."
        ) from None
    except (ValueError, OSError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None


def _chunk(table, entity, scalars, tag_fields, path):
    frame = pd.DataFrame(index=table.index)
    for name in dict.fromkeys([entity.primary_key, *scalars]):
        frame[name] = _column(table, entity, name, path)
    long = {}
    for name in tag_fields:
        storage = entity.fields[name].storage
        col = _column(table, entity, name, path, tagio.column_of(storage, name))
        if storage.chosen() == "delimited":
            long[name] = tagio.split_delimited(
                col, storage.delimited.separator, storage.delimited.wrap
            )
        else:
            long[name] = tagio.split_json(col)
    return frame, long


def _column(table: pd.DataFrame, entity: Entity, name: str, path: Path, column: str | None = None):
    column = column or entity.fields[name].column or name
    if column not in table.columns:
        raise SourceError(
            f"{path.name} has no column '{column}' (field {name})",
            hint=f"Columns present: {', '.join(map(str, table.columns[:20]))}.",
        )
    return table[column]
