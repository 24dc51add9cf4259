"""The whole pipeline on the integration CRMs: MariaDB legacy → PostgreSQL new, apply included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fixtures.integration import build
from tests.reviewing import approve, decide
from tests.servers import fresh_database

PROJECT = Path(__file__).resolve().parent.parent / "fixtures" / "integration"


@pytest.fixture
def crms(tmp_path, monkeypatch):
    legacy_gen, modern_gen = fresh_database("mariadb"), fresh_database("postgresql")
    legacy, modern = next(legacy_gen), next(modern_gen)
    facts = build(legacy, modern)
    root = tmp_path / "project"
    shutil.copytree(PROJECT, root)
    monkeypatch.setenv("LEGACY_URL", legacy)
    monkeypatch.setenv("MODERN_URL", modern)
    yield root, facts
    legacy_gen.close()
    modern_gen.close()


def test_the_run_finds_exactly_the_injected_defects(crms, run_cli):
    root, facts = crms
    result = run_cli("run", root, "--format", "json", "--quiet")
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["findings"]["by_kind"] == facts["expected"]
    assert doc["records"]["opportunity"]["source"] == facts["legacy_rows"] - facts["soft_deleted"]


def test_streaming_both_servers_into_partitions_finds_exactly_the_same(crms, monkeypatch):
    from reconcile import spill
    from reconcile.project import load_project
    from reconcile.run import run_project

    root, _ = crms
    monkeypatch.setattr(spill, "CHUNK_ROWS", 5)  # server-side cursor and ADBC in many chunks
    proj = load_project(root)
    whole, split = run_project(proj), run_project(proj, partitions=3)
    assert len(whole.findings) == 11
    assert split.findings.to_dict(orient="records") == whole.findings.to_dict(orient="records")
    assert (split.transitions, split.records) == (whole.transitions, whole.records)


def test_approved_corrections_are_applied_and_undone_on_the_servers(crms, run_cli):
    root, facts = crms
    first = json.loads(run_cli("run", root, "--format", "json", "--quiet").stdout)
    sheet = Path(first["outputs"]["worksheet_xlsx"])
    decide(sheet, approve({"missing_in_target", "state_mismatch", "value_mismatch", "missing_tag"}))
    applied = run_cli("apply", sheet, "--execute", "--format", "json")
    assert applied.exit_code == 0, applied.stderr
    after = json.loads(run_cli("run", root, "--format", "json", "--quiet").stdout)
    assert after["findings"]["by_kind"] == {"duplicate_uid": 1}  # merging is left to people
    undo = json.loads(applied.stdout)["outputs"]["undo"]
    assert run_cli("undo", undo, "--execute").exit_code == 0
    again = json.loads(run_cli("run", root, "--format", "json", "--quiet").stdout)
    assert again["findings"]["by_kind"] == facts["expected"]
