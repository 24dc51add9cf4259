"""Scheduled checks: three runs over changing data, thresholds, quiet mode, the lock."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from reconcile.drift import run_lock
from reconcile.project import load_project
from tests.test_diff_cases import make_project


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_project(tmp_path / "p")


def sql(root: Path, *statements: str) -> None:
    with sqlite3.connect(root / "new.sqlite") as conn:
        for s in statements:
            conn.execute(s)


def check(run_cli, root: Path, *extra: str):
    result = run_cli("run", root, "--format", "json", "--quiet", *extra)
    return result.exit_code, json.loads(result.stdout)


def test_three_scheduled_checks_follow_every_finding(tiny, run_cli):
    rule = ("--fail-on", "state_mismatch>0")
    # Night 1: u1's stage and u3's amount are wrong.
    sql(
        tiny,
        "UPDATE deals SET stage = 'b' WHERE id = 101",
        "UPDATE deals SET amount = 31 WHERE id = 103",
    )
    code, doc = check(run_cli, tiny, *rule)
    assert code == 1
    assert doc["findings"]["by_kind"] == {"state_mismatch": 1, "value_mismatch": 1}
    assert doc["lifecycle"] | {"previous_run": None} == {
        "new": 2,
        "persisting": 0,
        "reopened": 0,
        "accepted": 0,
        "resolved": 0,
        "previous_run": None,
    }

    # Night 2: u1 was fixed; u2 lost a tag. No state mismatch left: the threshold holds.
    sql(
        tiny,
        "UPDATE deals SET stage = 'a' WHERE id = 101",
        "DELETE FROM deal_labels WHERE deal_id = 102",
    )
    code, doc2 = check(run_cli, tiny, *rule)
    assert code == 0
    life = doc2["lifecycle"]
    assert (life["new"], life["persisting"], life["reopened"], life["resolved"]) == (1, 1, 0, 1)
    assert life["previous_run"] == doc["run_id"]

    # Night 3: amount and tag fixed, but u1's stage is wrong again: the same defect reopens.
    sql(
        tiny,
        "UPDATE deals SET amount = 30 WHERE id = 103",
        "INSERT INTO deal_labels VALUES (102, 'q4')",
        "UPDATE deals SET stage = 'b' WHERE id = 101",
    )
    code, doc3 = check(run_cli, tiny, *rule)
    assert code == 1
    life = doc3["lifecycle"]
    assert (life["new"], life["persisting"], life["reopened"], life["resolved"]) == (0, 0, 1, 2)

    listed = run_cli("history", tiny, "--format", "json")
    assert [d["run_id"] for d in json.loads(listed.stdout)] == [
        doc3["run_id"],
        doc2["run_id"],
        doc["run_id"],
    ]
    shown = run_cli("show", doc2["run_id"], "--project", tiny, "--format", "json")
    assert json.loads(shown.stdout)["lifecycle"]["resolved"] == 1


def test_without_thresholds_any_finding_fails_and_quiet_prints_only_then(tiny, run_cli):
    clean = run_cli("run", tiny, "--quiet")
    assert (clean.exit_code, clean.stdout) == (0, "")
    sql(tiny, "UPDATE deals SET stage = 'b' WHERE id = 101")
    failing = run_cli("run", tiny, "--quiet")
    assert failing.exit_code == 1 and "state_mismatch" in failing.stdout and failing.stderr == ""


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("state_mismatch>>0", "cannot read"),
        ("state_mismatc>0", "did you mean 'state_mismatch'"),
        ("total", "cannot read"),
    ],
)
def test_a_bad_threshold_is_an_error_before_anything_runs(tiny, run_cli, rule, message):
    result = run_cli("run", tiny, "--fail-on", rule)
    assert result.exit_code == 2 and message in result.stderr
    assert not (tiny / "runs").exists()


def test_a_second_run_never_overlaps_the_first(tiny, run_cli):
    with run_lock(load_project(tiny)):
        result = run_cli("run", tiny)
    assert result.exit_code == 2 and "another reconcile run is in progress" in result.stderr
    assert run_cli("run", tiny).exit_code == 0


def test_an_empty_threshold_list_is_an_error_not_a_silent_pass(tiny, run_cli):
    result = run_cli("run", tiny, "--fail-on", " , ")
    assert result.exit_code == 2 and "names no threshold" in result.stderr
