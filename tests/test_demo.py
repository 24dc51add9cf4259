"""`reconcile demo`: the seed article's incident, with the counts the README promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")

# What the README shows: the 8-vs-2 signing stage, quotation_status never reaching quote_stage,
# the lost 2025-Q4 campaign tags, records lost or loaded twice.
EXPECTED = {
    "missing_in_target": 3,
    "unexpected_in_target": 1,
    "duplicate_uid": 2,
    "missing_uid": 1,
    "state_mismatch": 48,
    "value_mismatch": 11,
    "missing_tag": 48,
    "unexpected_tag": 3,
    "unmapped_value": 1,
    "invalid_value": 5,
    "unparseable_value": 2,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from click.testing import CliRunner

    from reconcile.cli import cli

    out = tmp_path_factory.mktemp("demo") / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--format", "json"])
    return out, result


def test_the_demo_finds_exactly_the_injected_incident(demo):
    _, result = demo
    assert result.exit_code == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["findings"]["by_kind"] == EXPECTED
    assert summary["findings"]["total"] == sum(EXPECTED.values()) == 125
    assert summary["records"] == {"opportunity": {"source": 5000, "target": 5041, "matched": 4995}}
    assert summary["stale"]["opportunity"]["total"] == 401


def test_the_signing_stage_shows_six_deals_that_are_not_really_there(demo):
    _, result = demo
    findings = Path(json.loads(result.stdout)["outputs"]["findings"])
    rows = json.loads(findings.read_text("utf-8"))
    signing = [r for r in rows if r["field"] == "stage" and r["actual_value"] == "contract"]
    assert len(signing) == 6 and {r["old_value"] for r in signing} == {"S4"}
    quoted = [r for r in rows if r["field"] == "quote_stage" and r["actual_value"] == "pending"]
    assert {r["old_value"] for r in quoted} == {"QUOTED", "PREPARING"} and len(quoted) == 42


def test_the_readme_shows_the_counts_the_demo_produces(demo):
    for kind, n in EXPECTED.items():
        assert re.search(rf"^{kind}\s+{n}$", README, re.MULTILINE), kind


def test_a_second_demo_keeps_the_databases_and_the_folder_is_a_project(demo, run_cli):
    out, _ = demo
    before = (out / "new_crm.sqlite").stat().st_mtime_ns
    again = run_cli("demo", "--out", out, "--format", "json")
    assert again.exit_code == 1
    assert "using the demo CRMs already in" in again.stderr
    assert (out / "new_crm.sqlite").stat().st_mtime_ns == before
    assert run_cli("check", out).exit_code == 0
    assert run_cli("run", out, "--quiet").exit_code == 1
    assert len([p for p in (out / "runs").iterdir() if p.is_dir()]) == 3


def test_approving_the_state_mismatches_clears_them_and_a_second_apply_changes_nothing(
    tmp_path, run_cli
):
    from tests.reviewing import approve, decide

    out = tmp_path / "demo"
    first = json.loads(
        run_cli("demo", "--out", out, "--size", "1000", "--format", "json", "-q").stdout
    )
    assert first["findings"]["by_kind"]["state_mismatch"] == 48
    sheet = Path(first["outputs"]["worksheet_xlsx"])
    assert decide(sheet, approve({"state_mismatch"})) == 48
    applied = run_cli("apply", sheet, "--execute", "--format", "json")
    assert applied.exit_code == 0, applied.stderr
    assert json.loads(applied.stdout)["counts"] == {"applied": 48}
    again = json.loads(run_cli("demo", "--out", out, "--format", "json", "-q").stdout)
    assert "state_mismatch" not in again["findings"]["by_kind"]
    assert again["findings"]["total"] == 125 - 48
    second = run_cli("apply", sheet, "--execute", "--format", "json")
    assert json.loads(second.stdout)["counts"] == {"already": 48}
