"""CRM export files (CSV, XLSX): every value read as text, typed by the dictionary afterwards."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..dictionary.model import Entity
from ..errors import SourceError
from . import tags as tagio


def read_export(folder: Path, entity: Entity, scalars: list[str], tag_fields: list[str], filters):
    path = folder / entity.source.name
    if not path.is_file():
        raise SourceError(f"export file not found: {path}", hint="Check exports in reconcile.yaml.")
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            table = pd.read_excel(path, dtype=str, keep_default_na=False)
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{path} is not UTF-8 (byte {exc.start})", hint="Export as UTF-8."
        ) from None
    except (ValueError, OSError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None
    frame = pd.DataFrame(index=table.index)
    for name in dict.fromkeys([entity.primary_key, *scalars]):
        frame[name] = _column(table, entity, name, path)
    long = {}
    for name in tag_fields:
        storage = entity.fields[name].storage
        kind = storage.chosen()
        if kind == "join_table":
            raise SourceError(
                f"{entity.source.name}: a join-table tag field cannot be read from an export",
                hint="Declare the tags as delimited or json_array for file sources.",
            )
        col = _column(table, entity, name, path, tagio.column_of(storage, name))
        if kind == "delimited":
            long[name] = tagio.split_delimited(
                col, storage.delimited.separator, storage.delimited.wrap
            )
        else:
            long[name] = tagio.split_json(col)
    return frame, long, list(filters)


def _column(table: pd.DataFrame, entity: Entity, name: str, path: Path, column: str | None = None):
    column = column or entity.fields[name].column or name
    if column not in table.columns:
        raise SourceError(
            f"{path.name} has no column '{column}' (field {name})",
            hint=f"Columns present: {', '.join(map(str, table.columns[:20]))}.",
        )
    return table[column]
