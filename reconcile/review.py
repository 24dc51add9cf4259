"""Reading a reviewed worksheet back: every row validated before anything is applied.

A row is accepted only if its locked cells are exactly what the run wrote (the finding table is
regenerated from the run's own findings and compared cell by cell), its decision is one of the
allowed ones, and its corrected value is valid for the target field. Problems name the sheet,
row and column.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import worksheet as ws
from .dictionary.model import Field
from .dictionary.values import parse_value
from .errors import InputError
from .outputs import read_findings
from .project import Project

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_CELL_CHARS = 10_000
SYNONYMS = {"批准": "approve", "同意": "approve", "拒绝": "reject", "修改": "edit", "编辑": "edit"}
# Decisions that change the target when approved, per finding kind.
CHANGES = {
    "state_mismatch",
    "value_mismatch",
    "missing_tag",
    "unexpected_tag",
    "invalid_value",
    "missing_in_target",
}


@dataclass(frozen=True)
class RowProblem:
    sheet: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = (
            self.sheet
            + (f" row {self.row}" if self.row else "")
            + (f" column {self.column}" if self.column else "")
        )
        return f"{where}: {self.message}"

    def to_dict(self) -> dict:
        return {
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "message": self.message,
        }


@dataclass
class Decision:
    """One reviewed row: the run's finding and what the reviewer decided about it."""

    sheet: str
    row: int
    finding: dict
    decision: str
    value: Any = None  # the corrected value as the target field's code or typed value
    reviewer: str | None = None
    comment: str | None = None
    accept_until: dt.date | None = None


@dataclass
class Review:
    run_id: str
    run_dir: Path
    worksheet: Path
    sha256: str
    decisions: list[Decision] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    undecided: int = 0


def read_review(
    proj: Project, path: Path, run_id: str | None = None, reviewer: str | None = None
) -> Review:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"worksheet not found: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(
            f"{path} is {size:,} bytes; worksheets over {MAX_FILE_BYTES:,} bytes are refused"
        )
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if path.suffix.lower() == ".xlsx":
        sheets, about = _read_xlsx(path, _rows_allowed(proj))
        run_id = run_id or about.get("run_id")
    elif path.suffix.lower() == ".csv":
        sheets, about = _read_csv(path), {}
        if run_id is None and (path.parent / "summary.json").is_file():
            run_id = path.parent.name
    else:
        raise InputError(
            f"{path.name}: a worksheet is an .xlsx or .csv file written by reconcile run"
        )
    if not run_id:
        raise InputError(
            f"{path.name} does not say which run it belongs to",
            hint="Pass --run RUN_ID, or keep the about sheet that reconcile run wrote.",
        )
    run_dir = proj.output_dir / run_id
    if not re.fullmatch(r"[\w.-]+", run_id) or not (run_dir / "summary.json").is_file():
        raise InputError(
            f"{path.name} belongs to run {run_id!r}, which is not in {proj.output_dir}",
            hint="Apply a worksheet in the project whose run wrote it.",
        )
    review = Review(run_id, run_dir, path, sha)
    summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    _same_versions(proj, summary)
    findings = read_findings(run_dir)
    expected = ws.table(findings, proj, run_id, summary.get("language", proj.config.language))
    _validate(review, sheets, expected, findings, proj, reviewer, summary.get("language", "en"))
    return review


def _rows_allowed(proj: Project) -> int:
    """The most findings any run of this project has (bounds what a worksheet may hold)."""
    most = 0
    for summary in proj.output_dir.glob("*/summary.json"):
        try:
            doc = json.loads(summary.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        most = max(most, doc["findings"]["total"] + doc["findings"].get("accepted", 0))
    return min(max(most, 1), ws.MAX_ROWS)


def _same_versions(proj: Project, summary: dict) -> None:
    now = proj.versions()
    for part in ("source", "target", "mapping"):
        if now[part]["sha256"] != summary["versions"][part]["sha256"]:
            raise InputError(
                f"{now[part]['file']} changed since run {summary['run_id']}",
                hint="Corrections must be applied against the definitions they were found with: "
                "run reconcile again and review the new worksheet.",
            )


def _cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if text != "" else None


def _read_xlsx(path: Path, max_rows: int) -> tuple[dict[str, list[list]], dict[str, str]]:
    """The cells a worksheet can hold: at most the run's findings plus a header, and the known
    columns. A crafted file that claims a million rows or columns is never expanded."""
    import openpyxl

    width = len(ws.COLUMNS) + 1
    sheets: dict[str, list[list]] = {}
    about: dict[str, str] = {}
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=False, keep_links=False)
        try:
            for sheet in book.worksheets:
                rows = []
                for row in sheet.iter_rows(max_row=max_rows + 2, max_col=width):
                    rows.append([(c.value, getattr(c, "data_type", None)) for c in row])
                if len(rows) > max_rows + 1 and sheet.title != "about":
                    raise InputError(
                        f"{path.name}: sheet '{sheet.title}' has more rows than the run has findings",
                        hint="Use the worksheet as reconcile run wrote it; do not add rows.",
                    )
                if sheet.title == "about":
                    about = {
                        str(r[0][0]): str(r[1][0])
                        for r in rows
                        if len(r) > 1 and r[0][0] is not None
                    }
                else:
                    sheets[sheet.title] = rows
        finally:
            book.close()
    except InputError:
        raise
    except Exception as exc:  # openpyxl raises many kinds for a damaged or hostile file
        raise InputError(
            f"{path.name} is not a readable XLSX workbook ({type(exc).__name__}: {exc})"
        ) from None
    return sheets, about


def _read_csv(path: Path) -> dict[str, list[list]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name} is not UTF-8 (byte {exc.start})") from None
    except csv.Error as exc:
        raise InputError(f"{path.name} is not a readable CSV file: {exc}") from None
    if not rows or rows[0][:1] != ["entity"]:
        raise InputError(
            f"{path.name}: the first column must be 'entity', as reconcile run wrote it"
        )
    sheets: dict[str, list[list]] = {}
    header = [(h, "s") for h in rows[0][1:]]
    for row in rows[1:]:
        entity = row[0] if row else ""
        sheets.setdefault(entity, [header]).append([(v, "s") for v in row[1:]])
    return sheets


def _validate(
    review: Review, sheets, expected: pd.DataFrame, findings: pd.DataFrame, proj, reviewer, lang
):
    want_rows = {
        r["fingerprint"]: r
        for r in expected.astype(object).where(expected.notna(), None).to_dict("records")
    }
    by_fp = {
        r["fingerprint"]: r
        for r in findings.astype(object).where(findings.notna(), None).to_dict("records")
    }
    entities = list(dict.fromkeys(expected["entity"]))
    headers_ok = {ws.header(k, lang) for k in ws.COLUMNS} | set(ws.COLUMNS)
    seen: set[str] = set()
    names_found = set()
    for name, rows in sheets.items():
        entity = re.sub(r" \(\d+\)$", "", name)
        if entity not in entities and not (rows[1:] and entity in proj.mapping.entities):
            review.problems.append(
                RowProblem(
                    name,
                    None,
                    None,
                    f"unknown sheet '{name}' (renamed?); "
                    f"expected {', '.join(entities) or 'no entity sheets'}",
                )
            )
            continue
        names_found.add(entity)
        if not rows:
            review.problems.append(RowProblem(name, None, None, "the header row is missing"))
            continue
        header = [_cell_text(v) for v, _ in rows[0]]
        keys = [_key(h) for h in header]
        if (
            keys[: len(ws.COLUMNS)] != list(ws.COLUMNS)
            or not set(header[: len(ws.COLUMNS)]) <= headers_ok
        ):
            review.problems.append(
                RowProblem(
                    name,
                    1,
                    None,
                    "the header row was changed; columns must stay as reconcile run wrote them",
                )
            )
            continue
        for r, row in enumerate(rows[1:], start=2):
            _row(review, name, entity, r, row, want_rows, by_fp, proj, reviewer, seen)
    for entity in entities:
        if entity not in names_found:
            review.problems.append(
                RowProblem(entity, None, None, f"sheet '{entity}' is missing (renamed or deleted?)")
            )


def _formula_like(text: str | None) -> bool:
    """What a spreadsheet could run: =, +, @, tab, CR or LF first (a minus only before a non-digit)."""
    if not text:
        return False
    return text.startswith(("=", "+", "@", "\t", "\r", "\n")) or (
        text.startswith("-") and not text[1:2].isdigit()
    )


def _key(header: str | None) -> str | None:
    if header is None:
        return None
    m = re.search(r"\(([a-z_]+)\)$", header)
    return m[1] if m else header


def _row(review, sheet, entity, r, row, want_rows, by_fp, proj, reviewer, seen) -> None:
    cells = {}
    for c, key in enumerate(ws.COLUMNS):
        value, kind = row[c] if c < len(row) else (None, None)
        text = _cell_text(value)
        if kind == "f" or (key in ws.EDITABLE and _formula_like(text)):
            review.problems.append(RowProblem(sheet, r, key, "a formula; enter plain values only"))
            return
        if text is not None and len(text) > MAX_CELL_CHARS:
            review.problems.append(
                RowProblem(
                    sheet,
                    r,
                    key,
                    f"{len(text):,} characters; cells over {MAX_CELL_CHARS:,} are refused",
                )
            )
            return
        cells[key] = text
    if all(v is None for v in cells.values()):
        return
    fp = cells["fingerprint"]
    want = want_rows.get(fp) if fp else None
    if want is None or want["entity"] != entity:
        review.problems.append(
            RowProblem(
                sheet,
                r,
                "fingerprint",
                f"finding {fp!r} is not one of run {review.run_id}'s {entity} findings",
            )
        )
        return
    if fp in seen:
        review.problems.append(RowProblem(sheet, r, "fingerprint", f"finding {fp} appears twice"))
        return
    seen.add(fp)
    for key in ws.LOCKED:
        wrote = ws.neutralise(want[key]) if want[key] is not None else None
        if cells[key] != (str(wrote) if wrote is not None else None):
            review.problems.append(
                RowProblem(sheet, r, key, f"locked cell altered: was {wrote!r}, now {cells[key]!r}")
            )
            return
    if cells[ws.CHECK] != want[ws.CHECK]:
        review.problems.append(
            RowProblem(
                sheet,
                r,
                ws.CHECK,
                f"the row check does not match run {review.run_id}: "
                "this row comes from another run's worksheet, or was altered",
            )
        )
        return
    raw = (cells["decision"] or "").strip()
    decision = SYNONYMS.get(raw, raw.lower())
    if not decision:
        review.undecided += 1
        return
    if decision not in ws.DECISIONS:
        review.problems.append(
            RowProblem(
                sheet, r, "decision", f"unknown decision {raw!r}; use {', '.join(ws.DECISIONS)}"
            )
        )
        return
    who = (cells["reviewer"] or reviewer or "").strip()
    if not who:
        review.problems.append(
            RowProblem(sheet, r, "reviewer", "who decided? fill in reviewer (or pass --reviewer)")
        )
        return
    finding = by_fp[fp]
    d = Decision(sheet, r, finding, decision, reviewer=who, comment=cells["comment"])
    if cells["accept_until"]:
        try:
            d.accept_until = dt.date.fromisoformat(cells["accept_until"][:10])
        except ValueError:
            review.problems.append(
                RowProblem(
                    sheet,
                    r,
                    "accept_until",
                    f"{cells['accept_until']!r} is not a date (YYYY-MM-DD)",
                )
            )
            return
    corrected = cells["corrected_value"]
    if decision == "edit" or (decision == "approve" and corrected):
        if corrected is None:
            review.problems.append(
                RowProblem(sheet, r, "corrected_value", "edit needs a corrected value")
            )
            return
        fdef = _target_field(proj, entity, finding)
        if fdef is None:
            review.problems.append(
                RowProblem(
                    sheet,
                    r,
                    "corrected_value",
                    f"a {finding['kind']} finding takes no corrected value",
                )
            )
            return
        try:
            d.value = to_value(fdef, corrected)
        except ValueError as exc:
            review.problems.append(RowProblem(sheet, r, "corrected_value", str(exc)))
            return
    elif (
        decision == "approve"
        and finding["kind"] in ("unmapped_value", "invalid_value")
        and not (finding["kind"] == "invalid_value" and _is_tags(proj, entity, finding))
    ):
        review.problems.append(
            RowProblem(
                sheet,
                r,
                "decision",
                "approve needs a corrected value for this finding; choose edit and give one",
            )
        )
        return
    review.decisions.append(d)


def _target_field(proj: Project, entity: str, finding: dict) -> Field | None:
    if (
        finding["kind"] not in CHANGES | {"unmapped_value"}
        or finding["kind"] == "missing_in_target"
    ):
        return None
    emap = proj.mapping.entities[entity]
    return proj.target.dictionary.entities[emap.target].fields.get(finding["field"] or "")


def _is_tags(proj: Project, entity: str, finding: dict) -> bool:
    fdef = _target_field(proj, entity, finding)
    return fdef is not None and fdef.kind.name == "tags"


def to_value(fdef: Field, text: str) -> Any:
    """A reviewer's value for a field: codes, 'code (label)' or a label in any language."""
    text = text.strip()
    if fdef.kind.name in ("enum", "tags") and fdef.codes:
        m = re.fullmatch(r"(.+?) \((.+)\)", text)
        if m and m[1] in fdef.codes:
            return m[1]
        if text in fdef.codes:
            return text
        by_label = {label: code for code, c in fdef.codes.items() for label in c.labels.values()}
        if text in by_label:
            return by_label[text]
        raise ValueError(
            f"{text!r} is neither a code nor a label of this field ({', '.join(fdef.codes)})"
        )
    if fdef.kind.name == "tags":  # one tag per row: a tags field without declared codes
        if not text:
            raise ValueError("give one tag")
        return text
    value = parse_value(fdef, text)
    if fdef.kind.name == "datetime" and value.tzinfo is None:
        # the worksheet shows datetimes in UTC (…Z), so a time typed without an offset is UTC too
        value = value.replace(tzinfo=dt.UTC)
    return value
