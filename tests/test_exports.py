"""CRM exports (CSV, XLSX) and JSON-array tags give the same findings as the databases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reconcile import outputs
from reconcile.outputs import write_run
from reconcile.project import load_project
from reconcile.run import run_project
from tests.test_diff_cases import CASES_DIR, SPEC, apply_case, run_case

CASE = next(c for c in SPEC["cases"] if c["name"].startswith("a tag lost in cleaning"))
STATE = next(c for c in SPEC["cases"] if c["name"].startswith("a state field that differs"))


def export_project(case: dict, root: Path, target_format: str) -> Path:
    shutil.copytree(CASES_DIR / "diff_project", root)
    data = apply_case(case)
    pd.DataFrame(data["source"]["opps"]).to_csv(root / "opps.csv", index=False)
    deals = pd.DataFrame(data["target"]["deals"])
    labels = pd.DataFrame(data["target"]["deal_labels"], columns=["deal_id", "label"])
    grouped = labels.groupby("deal_id")["label"].agg(
        lambda s: json.dumps(sorted(s), ensure_ascii=False)
    )
    deals["labels"] = deals["id"].map(grouped).fillna("[]")
    if target_format == "xlsx":
        deals.to_excel(root / "deals.xlsx", index=False)
    else:
        deals.to_csv(root / "deals.csv", index=False)
    for name, table in (("old", "opps"), ("new", "deals")):
        path = root / "data_dictionary" / f"{name}.yaml"
        text = path.read_text("utf-8").replace(
            f"source: {{table: {table}}}",
            f"source: {{file: {table}.{'csv' if name == 'old' else target_format}}}",
        )
        text = text.replace(
            "storage: {join_table: {table: deal_labels, key: deal_id, value: label}}",
            "storage: {json_array: {column: labels}}",
        )
        path.write_text(text, "utf-8")
    config = root / "reconcile.yaml"
    config.write_text(
        config.read_text("utf-8")
        .replace("url: 'sqlite:///old.sqlite'", "exports: .")
        .replace("url: 'sqlite:///new.sqlite'", "exports: ."),
        "utf-8",
    )
    return root


@pytest.mark.parametrize("target_format", ["csv", "xlsx"])
@pytest.mark.parametrize("case", [CASE, STATE], ids=["tags", "state"])
def test_exports_find_what_the_databases_find(case, target_format, tmp_path):
    root = export_project(case, tmp_path / "exports", target_format)
    from_files = run_project(load_project(root)).findings
    from_db = run_case(case, tmp_path / "db").findings
    assert len(from_db) > 0
    assert from_files.to_dict(orient="records") == from_db.to_dict(orient="records")


def test_a_missing_export_column_is_named(tmp_path, run_cli):
    root = export_project(STATE, tmp_path / "exports", "csv")
    table = pd.read_csv(root / "opps.csv").drop(columns=["stage"])
    table.to_csv(root / "opps.csv", index=False)
    result = run_cli("run", root)
    assert result.exit_code == 2
    assert "opps.csv has no column 'stage'" in result.stderr


def test_the_same_defect_keeps_its_fingerprint_across_runs_and_unrelated_changes(tmp_path):
    first = run_case(STATE, tmp_path / "a").findings
    other = dict(
        STATE, set={**STATE["set"], "deals": {**STATE["set"]["deals"], 103: {"amount": 99}}}
    )
    second = run_case(other, tmp_path / "b").findings
    state = lambda f: set(f.loc[f["kind"] == "state_mismatch", "fingerprint"])  # noqa: E731
    assert state(first) == state(second) and len(state(first)) == 1
    assert len(second) == len(first) + 1


def test_many_findings_are_written_as_parquet(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "PARQUET_FROM", 0)
    result = run_case(STATE, tmp_path)
    folder, doc = write_run(result, load_project(tmp_path / "p"), "en", tmp_path / "out")
    assert doc["outputs"]["findings"].endswith("findings.parquet")
    back = pd.read_parquet(folder / "findings.parquet")
    assert back["fingerprint"].tolist() == result.findings["fingerprint"].tolist()
