"""A reviewer, scripted: fill in a worksheet the way sales-ops would in Excel."""

from __future__ import annotations

from pathlib import Path

import openpyxl

from reconcile.outputs import write_run
from reconcile.project import load_project
from reconcile.run import run_project


def run_once(root: Path) -> Path:
    """Run the project at `root`; the worksheet's path."""
    proj = load_project(root)
    folder, _ = write_run(run_project(proj), proj, proj.config.language)
    return folder / "worksheet.xlsx"


def columns(sheet) -> dict[str, int]:
    return {str(c.value).rsplit("(", 1)[-1].rstrip(")"): i + 1 for i, c in enumerate(sheet[1])}


def decide(path: Path, choose, reviewer: str = "wang.fang") -> int:
    """Fill decision, corrected value and reviewer where `choose(row dict)` returns
    (decision, corrected_value) or None; the number of rows decided."""
    book = openpyxl.load_workbook(path)
    n = 0
    for sheet in book.worksheets[1:]:
        col = columns(sheet)
        for r in range(2, sheet.max_row + 1):
            row = {k: sheet.cell(r, c).value for k, c in col.items()}
            picked = choose(row)
            if picked is None:
                continue
            decision, value = picked
            sheet.cell(r, col["decision"]).value = decision
            sheet.cell(r, col["corrected_value"]).value = value
            sheet.cell(r, col["reviewer"]).value = reviewer
            n += 1
    book.save(path)
    return n


def approve(kinds: set[str]):
    return lambda row: ("approve", None) if row["kind"] in kinds else None
