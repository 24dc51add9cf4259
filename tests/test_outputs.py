"""The run folder: worksheet (read back with openpyxl) and summary against golden files."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from pathlib import Path

import openpyxl
import pytest

from reconcile.outputs import write_run
from reconcile.project import load_project
from reconcile.worksheet import neutralise
from tests.test_diff_cases import run_case

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

# Several kinds at once, and a hostile value that a spreadsheet would run as a formula.
CASE = {
    "name": "golden",
    "set": {
        "deals": {101: {"stage": "b"}, 102: {"active": 1}},
        "opps": {3: {"stage": "=HYPERLINK(1)"}},
    },
    "remove": {"deal_labels": [[102, "q4"]]},
    "add": {
        "deals": [
            {
                "id": 104,
                "legacy_uid": "u9",
                "stage": "a",
                "active": 1,
                "amount": 1,
                "closes": None,
                "created": "2025-12-20 00:00:00",
            }
        ]
    },
}


def golden(name: str, actual) -> None:
    path = GOLDEN / name
    text = json.dumps(actual, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if UPDATE or not path.exists():
        path.write_text(text, "utf-8")
    assert json.loads(path.read_text("utf-8")) == json.loads(text), (
        f"differs from {path}; UPDATE_GOLDEN=1 rewrites it"
    )


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    result = run_case(CASE, tmp)
    result.run_id, result.started, result.seconds = (
        "20260120T000000Z-test",
        dt.datetime(2026, 1, 20, tzinfo=dt.UTC),
        0.0,
    )
    folder, doc = write_run(result, load_project(tmp / "p"), "zh", tmp / "out")
    return folder, doc


def test_the_worksheet_matches_its_golden_file(run_folder):
    folder, _ = run_folder
    book = openpyxl.load_workbook(folder / "worksheet.xlsx")
    sheets = {}
    for ws in book.worksheets:
        sheets[ws.title] = {
            "cells": [[c for c in row] for row in ws.iter_rows(values_only=True)],
            "freeze": ws.freeze_panes,
            "filter": ws.auto_filter.ref,
            "protected": ws.protection.sheet,
            "validations": [
                (dv.type, dv.formula1, str(dv.sqref)) for dv in ws.data_validations.dataValidation
            ],
            "hidden": [k for k, d in ws.column_dimensions.items() if d.hidden],
        }
    about = sheets["about"]["cells"]
    about[:] = [[k, v] for k, v in about if k not in ("source", "target", "mapping")]
    golden("worksheet.json", sheets)


def test_the_worksheet_locks_findings_and_leaves_decisions_editable(run_folder):
    folder, _ = run_folder
    ws = openpyxl.load_workbook(folder / "worksheet.xlsx")["opp"]
    header = [c.value for c in ws[1]]
    decision = header.index("决定 (decision)") + 1
    kind = header.index("问题类型 (kind)") + 1
    assert ws.cell(2, kind).protection.locked
    assert not ws.cell(2, decision).protection.locked
    assert ws.protection.sheet and ws.freeze_panes == "B2"


def test_formula_like_cells_are_neutralised_in_xlsx_and_csv(run_folder):
    folder, _ = run_folder
    ws = openpyxl.load_workbook(folder / "worksheet.xlsx")["opp"]
    values = [c.value for row in ws.iter_rows(min_row=2) for c in row if c.value]
    assert "'=HYPERLINK(1)" in values
    assert not any(isinstance(v, str) and v.startswith("=") for v in values)
    with open(folder / "worksheet.csv", encoding="utf-8-sig", newline="") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert "'=HYPERLINK(1)" in cells
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r", "\n")) for c in cells)


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\nx"])
def test_every_dangerous_first_character_is_neutralised(text):
    assert neutralise(text) == "'" + text


def test_the_summary_matches_its_golden_file(run_folder):
    folder, doc = run_folder
    on_disk = json.loads((folder / "summary.json").read_text("utf-8"))
    assert on_disk == doc
    stable = {k: v for k, v in doc.items() if k not in ("outputs", "timings")}
    stable["outputs"] = sorted(Path(p).name for p in doc["outputs"].values())
    for side in ("source", "target"):
        stable["versions"][side]["location"] = Path(stable["versions"][side]["location"]).name
    golden("summary.json", stable)


def test_the_run_folder_holds_everything_and_no_partial_files(run_folder):
    folder, _ = run_folder
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "findings.csv",
        "findings.json",
        "summary.json",
        "worksheet.csv",
        "worksheet.xlsx",
    ]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    assert (folder.parent / "latest").read_text().strip() == folder.name


def test_findings_csv_is_neutralised_but_apply_reads_exact_values(run_folder):
    from reconcile.outputs import read_findings

    folder, _ = run_folder
    text = (folder / "findings.csv").read_text("utf-8")
    assert "'=HYPERLINK(1)" in text and ",=HYPERLINK" not in text
    assert "=HYPERLINK(1)" in set(read_findings(folder)["old_value"].dropna())


def test_editable_cells_are_text_so_excel_keeps_leading_zeros(run_folder):
    folder, _ = run_folder
    sheet = openpyxl.load_workbook(folder / "worksheet.xlsx")["opp"]
    header = [c.value for c in sheet[1]]
    assert sheet.cell(2, header.index("修正值 (corrected_value)") + 1).number_format == "@"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://crm:pw1@db/crm", "postgresql+psycopg://crm:***@db/crm"),
        (
            "postgresql+psycopg://crm@db/crm?password=pw2&sslmode=require",
            "postgresql+psycopg://crm@db/crm?password=***&sslmode=require",
        ),
    ],
)
def test_passwords_are_never_shown_in_urls(url, shown):
    from reconcile.extract.sql import redact

    assert redact(url) == shown
