"""Every finding kind, from tests/cases/diff_cases.yaml: each edit with its expected findings."""

from __future__ import annotations

import copy
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from reconcile.project import load_project
from reconcile.run import run_project

CASES_DIR = Path(__file__).parent / "cases"
SPEC = yaml.safe_load((CASES_DIR / "diff_cases.yaml").read_text("utf-8"))
KEYS = {"opps": "id", "deals": "id"}
COLUMNS = {
    "opps": [
        "id INTEGER PRIMARY KEY",
        "uid TEXT",
        "stage TEXT",
        "amount REAL",
        "closes TEXT",
        "created TEXT",
        "deleted INTEGER",
        "tags TEXT",
    ],
    "deals": [
        "id INTEGER PRIMARY KEY",
        "legacy_uid TEXT",
        "stage TEXT",
        "active INTEGER",
        "amount REAL",
        "closes TEXT",
        "created TEXT",
    ],
    "deal_labels": ["deal_id INTEGER", "label TEXT"],
}


def build(tables: dict[str, list[dict]], path: Path) -> None:
    with sqlite3.connect(path) as db:
        for name, rows in tables.items():
            db.execute(f"CREATE TABLE {name} ({', '.join(COLUMNS[name])})")
            cols = [c.split()[0] for c in COLUMNS[name]]
            db.executemany(
                f"INSERT INTO {name} VALUES ({', '.join('?' * len(cols))})",
                [tuple(r.get(c) for c in cols) for r in rows],
            )


def apply_case(case: dict) -> dict:
    data = copy.deepcopy(SPEC["base"])
    tables = {**data["source"], **data["target"]}
    for name, edits in case.get("set", {}).items():
        for key, values in edits.items():
            row = next(r for r in tables[name] if r[KEYS[name]] == key)
            row.update(values)
    for name, keys in case.get("remove", {}).items():
        for key in keys:
            if isinstance(key, list):
                tables[name] = [r for r in tables[name] if list(r.values()) != key]
            else:
                tables[name] = [r for r in tables[name] if r[KEYS[name]] != key]
    for name, rows in case.get("add", {}).items():
        tables[name] = tables[name] + rows
    return {
        "source": {n: tables[n] for n in data["source"]},
        "target": {n: tables[n] for n in data["target"]},
    }


def make_project(root: Path, case: dict | None = None) -> Path:
    """The tiny project at `root`, its two SQLite CRMs holding the base tables edited by `case`."""
    shutil.copytree(CASES_DIR / "diff_project", root)
    data = apply_case(case or {})
    build(data["source"], root / "old.sqlite")
    build(data["target"], root / "new.sqlite")
    return root


def run_case(case: dict, tmp_path: Path):
    return run_project(load_project(make_project(tmp_path / "p", case)))


@pytest.mark.parametrize("case", SPEC["cases"], ids=[c["name"] for c in SPEC["cases"]])
def test_diff_case_yields_exactly_the_expected_findings(case, tmp_path):
    found = run_case(case, tmp_path).findings
    rows = found.astype(object).where(found.notna(), None).to_dict(orient="records")
    assert len(rows) == len(case["expect"]), rows
    for want in case["expect"]:
        hits = [r for r in rows if all(r.get(k) == v for k, v in want.items())]
        assert hits, f"no finding like {want} in {rows}"
