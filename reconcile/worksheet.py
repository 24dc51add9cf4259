"""The correction worksheet: findings for people to review, as XLSX (a sheet per entity) and CSV.

The left part of each row says what was found and is locked; the right part (decision, corrected
value, reviewer, comment) is for the reviewer. `row_check` is a hash of the run id and the locked
cells, so that `reconcile apply` can tell a row whose findings were altered. Cells that a
spreadsheet could take for a formula are neutralised with a leading apostrophe.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd
import xlsxwriter

from . import findings as fz
from .atomic import atomic_path
from .project import Project

LOCKED = tuple(
    c for c in fz.COLUMNS if c not in ("entity", "status")
)  # what was found: never edited
EDITABLE = ("decision", "corrected_value", "reviewer", "comment", "accept_until")
CHECK = "row_check"
COLUMNS = (*LOCKED, *EDITABLE, CHECK)
DECISIONS = ("approve", "reject", "edit")
MAX_ROWS = 1_000_000  # Excel's limit is 1,048,576 rows per sheet

HEADERS = {
    "zh": {
        "fingerprint": "编号",
        "kind": "问题类型",
        "severity": "严重程度",
        "uid": "UID",
        "source_id": "旧系统ID",
        "target_id": "新系统ID",
        "field": "字段",
        "old_value": "旧系统值",
        "expected_value": "期望值",
        "actual_value": "新系统现值",
        "suggestion": "建议修正",
        "derivation": "推导",
        "decision": "决定",
        "corrected_value": "修正值",
        "reviewer": "审核人",
        "comment": "备注",
        "accept_until": "接受至",
        "row_check": "校验",
    },
    "en": {
        "fingerprint": "Finding",
        "kind": "Kind",
        "severity": "Severity",
        "uid": "UID",
        "source_id": "Old id",
        "target_id": "New id",
        "field": "Field",
        "old_value": "Old value",
        "expected_value": "Expected",
        "actual_value": "Actual",
        "suggestion": "Suggestion",
        "derivation": "Derived from",
        "decision": "Decision",
        "corrected_value": "Corrected value",
        "reviewer": "Reviewer",
        "comment": "Comment",
        "accept_until": "Accept until",
        "row_check": "Check",
    },
}

_DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralise(text: object) -> object:
    """A value a spreadsheet would run as a formula, made inert with a leading apostrophe."""
    if isinstance(text, str) and text.startswith(_DANGEROUS):
        return "'" + text
    return text


def header(key: str, lang: str) -> str:
    return f"{HEADERS[lang][key]} ({key})" if HEADERS[lang][key] != key else key


def row_check(run_id: str, locked: pd.DataFrame) -> pd.Series:
    joined = locked.fillna("").astype(str).agg("\x1f".join, axis=1)
    return joined.map(lambda s: hashlib.sha256(f"{run_id}\x1f{s}".encode()).hexdigest()[:16])


def table(findings: pd.DataFrame, proj: Project, run_id: str, lang: str) -> pd.DataFrame:
    """The worksheet rows: open findings, labels shown beside codes, editable columns empty.

    Accepted differences are left out: reviewers already decided them.
    """
    rows = findings.loc[findings["status"] != "accepted", ["entity", *LOCKED]].copy()
    for col in ("old_value", "expected_value", "actual_value"):
        rows[col] = _labelled(rows, col, proj, lang)
    rows[CHECK] = row_check(run_id, rows[list(LOCKED)]) if len(rows) else pd.Series(dtype="string")
    for col in EDITABLE:
        rows[col] = pd.NA
    return rows[["entity", *COLUMNS]]


def _labelled(rows: pd.DataFrame, col: str, proj: Project, lang: str) -> pd.Series:
    """'contract' → 'contract (合同签署)' for enum and tag fields, in the chosen language."""
    out = rows[col].astype("string")
    for (entity, field), idx in rows.groupby(["entity", "field"], dropna=True).groups.items():
        labels = _labels(proj, entity, field, source=(col == "old_value"), lang=lang)
        if not labels:
            continue
        values = out.loc[idx]
        shown = values.map(labels)
        out.loc[idx] = (values + " (" + shown + ")").fillna(values)
    return out


def _labels(proj: Project, entity: str, field: str, source: bool, lang: str) -> dict[str, str]:
    emap = proj.mapping.entities[entity]
    if source:
        pair = next((f for f in emap.fields if f.target == field and f.source), None)
        if pair is None:
            pair = next((f for f in emap.fields for v in f.values.values() if field in v.set), None)
        fdef = (
            proj.source.dictionary.entities[emap.source].fields.get(pair.source) if pair else None
        )
    else:
        fdef = proj.target.dictionary.entities[emap.target].fields.get(field)
    if fdef is None:
        return {}
    return {code: c.labels.get(lang) for code, c in fdef.codes.items() if c.labels.get(lang)}


def write_xlsx(rows: pd.DataFrame, path: Path, lang: str, about: list[tuple[str, str]]) -> None:
    with atomic_path(path) as tmp:
        book = xlsxwriter.Workbook(
            str(tmp),
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        head = book.add_format(
            {
                "bold": True,
                "bg_color": "#DDE4EE",
                "border": 1,
                "locked": True,
                "text_wrap": True,
                "valign": "top",
            }
        )
        locked = book.add_format({"locked": True, "bg_color": "#F3F3F3"})
        # text format: Excel must not turn 0086… into a number or a code into a date
        editable = book.add_format({"locked": False, "bg_color": "#FFF9E0", "num_format": "@"})
        info = book.add_worksheet("about")
        info.set_column(0, 0, 28)
        info.set_column(1, 1, 90)
        for r, (k, v) in enumerate(about):
            info.write_string(r, 0, k, head if r == 0 else None)
            info.write_string(r, 1, str(neutralise(v)))
        entities = list(dict.fromkeys(rows["entity"])) or []
        for entity in entities:
            part = rows[rows["entity"] == entity]
            for n, start in enumerate(range(0, len(part), MAX_ROWS)):
                name = entity[:28] if n == 0 else f"{entity[:24]} ({n + 1})"
                _sheet(
                    book, name, part.iloc[start : start + MAX_ROWS], lang, head, locked, editable
                )
        book.close()


def _sheet(book, name, part: pd.DataFrame, lang, head, locked, editable) -> None:
    ws = book.add_worksheet(name)
    widths = {
        "fingerprint": 18,
        "suggestion": 36,
        "derivation": 44,
        "comment": 30,
        CHECK: 18,
        "accept_until": 14,
    }
    for c, key in enumerate(COLUMNS):
        fmt = editable if key in EDITABLE else locked
        ws.set_column(c, c, widths.get(key, 16), fmt, {"hidden": key == CHECK})
        ws.write_string(0, c, header(key, lang), head)
    ws.freeze_panes(1, 1)
    values = part[list(COLUMNS)].astype(object).where(part[list(COLUMNS)].notna(), None)
    for r, row in enumerate(values.itertuples(index=False), start=1):
        for c, value in enumerate(row):
            key = COLUMNS[c]
            if key in EDITABLE:
                ws.write_blank(r, c, None, editable)
            elif value is not None:
                ws.write_string(r, c, str(neutralise(value)), locked)
    last = max(len(part), 1)
    ws.autofilter(0, 0, last, len(COLUMNS) - 1)
    col = COLUMNS.index("decision")
    ws.data_validation(
        1,
        col,
        max(last, 1000),
        col,
        {
            "validate": "list",
            "source": list(DECISIONS),
            "error_title": "decision",
            "error_message": "Choose approve, reject or edit.",
        },
    )
    ws.protect(
        "",
        {
            "autofilter": True,
            "sort": True,
            "format_columns": True,
            "select_locked_cells": True,
            "select_unlocked_cells": True,
        },
    )


def write_csv(rows: pd.DataFrame, path: Path) -> None:
    """The same worksheet as UTF-8 CSV (with BOM, so Excel reads Chinese correctly)."""
    cols = ["entity", *COLUMNS]
    safe = rows[cols].astype(object).where(rows[cols].notna(), "").map(neutralise)
    with atomic_path(path) as tmp:
        safe.to_csv(
            tmp, index=False, encoding="utf-8-sig", quoting=csv.QUOTE_MINIMAL, lineterminator="\n"
        )
