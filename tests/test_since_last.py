"""`--since-last`: only changed records are compared, and unchanged findings keep their lifecycle."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.test_diff_cases import CASES_DIR, SPEC, apply_case, build

LATER = "2099-01-01 00:00:00"  # after any run's start: "changed since the last run"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The tiny project, with updated-at fields on both sides and a wrong amount on u3."""
    root = tmp_path / "p"
    shutil.copytree(CASES_DIR / "diff_project", root)
    for name in ("old", "new"):
        path = root / "data_dictionary" / f"{name}.yaml"
        text = path.read_text("utf-8").replace(
            "    primary_key: id\n    fields:\n",
            "    primary_key: id\n    updated_at: updated\n    fields:\n"
            "      updated: {type: datetime, timezone: UTC}\n",
        )
        path.write_text(text, "utf-8")
    data = apply_case(next(c for c in SPEC["cases"] if c["name"].startswith("a faithful")))
    build(data["source"], root / "old.sqlite")
    build(data["target"], root / "new.sqlite")
    for db, table in (("old.sqlite", "opps"), ("new.sqlite", "deals")):
        with sqlite3.connect(root / db) as conn:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN updated TEXT")
            conn.execute(f"UPDATE {table} SET updated = '2025-12-01 00:00:00'")
    with sqlite3.connect(root / "new.sqlite") as conn:
        conn.execute("UPDATE deals SET amount = 31 WHERE id = 103")
    return root


def run(run_cli, root: Path, *extra: str) -> dict:
    result = run_cli("run", root, "--format", "json", "--quiet", *extra)
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_changed_records_are_compared_and_the_rest_carried_forward(project, run_cli):
    first = run(run_cli, project)
    assert first["findings"]["by_kind"] == {"value_mismatch": 1}

    # u1's stage goes wrong (and is marked changed); u3 is untouched, its finding must persist.
    with sqlite3.connect(project / "new.sqlite") as conn:
        conn.execute(f"UPDATE deals SET stage = 'b', updated = '{LATER}' WHERE id = 101")
    second = run(run_cli, project, "--since-last")
    assert second["since_last"]["opp"]["records"] == 1
    assert second["records"]["opp"] == {"source": 1, "target": 1, "matched": 1}
    assert second["findings"]["by_kind"] == {"state_mismatch": 1, "value_mismatch": 1}
    life = second["lifecycle"]
    assert (life["new"], life["persisting"], life["resolved"]) == (1, 1, 0)

    # u3 is fixed and marked changed: only then is its finding resolved.
    with sqlite3.connect(project / "new.sqlite") as conn:
        conn.execute(f"UPDATE deals SET amount = 30, updated = '{LATER}' WHERE id = 103")
    third = run(run_cli, project, "--since-last")
    assert third["findings"]["by_kind"] == {"state_mismatch": 1}
    life = third["lifecycle"]
    assert (life["new"], life["persisting"], life["resolved"]) == (0, 1, 1)


def test_a_changed_old_record_is_compared_with_its_unchanged_counterpart(project, run_cli):
    run(run_cli, project)
    with sqlite3.connect(project / "old.sqlite") as conn:
        conn.execute(f"UPDATE opps SET stage = 'B', updated = '{LATER}' WHERE id = 1")
    doc = run(run_cli, project, "--since-last")
    assert doc["findings"]["by_kind"] == {"state_mismatch": 1, "value_mismatch": 1}


def test_without_a_previous_run_everything_is_compared(project, run_cli):
    doc = run(run_cli, project, "--since-last")
    assert doc["since_last"] == {} and doc["records"]["opp"]["source"] == 3


def test_an_entity_without_updated_at_is_compared_whole_and_nothing_piles_up(tmp_path, run_cli):
    from tests.test_diff_cases import make_project

    root = make_project(tmp_path / "plain", {"set": {"deals": {103: {"amount": 31}}}})
    counts = [run(run_cli, root, "--since-last")["findings"]["total"] for _ in range(3)]
    assert counts == [1, 1, 1]
    with sqlite3.connect(root / "new.sqlite") as conn:
        conn.execute("UPDATE deals SET amount = 30 WHERE id = 103")
    fixed = run(run_cli, root, "--since-last")
    assert fixed["findings"]["total"] == 0 and fixed["lifecycle"]["resolved"] == 1


def test_a_record_archived_since_the_last_run_is_looked_at_again(project, run_cli):
    with sqlite3.connect(project / "new.sqlite") as conn:
        conn.execute("DELETE FROM deals WHERE id = 102")
    assert run(run_cli, project)["findings"]["by_kind"] == {
        "missing_in_target": 1,
        "value_mismatch": 1,
    }
    with sqlite3.connect(project / "old.sqlite") as conn:  # u2 is soft-deleted in the old CRM
        conn.execute(f"UPDATE opps SET deleted = 1, updated = '{LATER}' WHERE id = 2")
    doc = run(run_cli, project, "--since-last")
    assert doc["findings"]["by_kind"] == {"value_mismatch": 1} and doc["lifecycle"]["resolved"] == 1


def test_corrections_applied_since_the_last_run_are_looked_at_again(project, run_cli):
    from tests.reviewing import approve, decide

    first = run(run_cli, project)
    sheet = Path(first["outputs"]["worksheet_xlsx"])
    decide(sheet, approve({"value_mismatch"}))
    assert run_cli("apply", sheet, "--execute").exit_code == 0
    doc = run(run_cli, project, "--since-last")
    assert doc["findings"]["total"] == 0 and doc["lifecycle"]["resolved"] == 1


def test_projects_sharing_a_history_database_keep_their_own_lifecycles(tmp_path, run_cli):
    from tests.test_diff_cases import make_project

    shared = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    roots = [
        make_project(tmp_path / n, {"set": {"deals": {103: {"amount": 31}}}}) for n in ("a", "b")
    ]
    for root in roots:
        config = root / "reconcile.yaml"
        config.write_text(config.read_text("utf-8") + f"history: '{shared}'\n", "utf-8")
    first, second = (run(run_cli, r) for r in roots)
    assert first["lifecycle"]["new"] == second["lifecycle"]["new"] == 1
    assert second["lifecycle"]["previous_run"] is None


def test_the_report_of_a_partial_run_says_so(project, run_cli):
    run(run_cli, project)
    with sqlite3.connect(project / "new.sqlite") as conn:
        conn.execute(f"UPDATE deals SET stage = 'b', updated = '{LATER}' WHERE id = 101")
    run(run_cli, project, "--since-last")
    out = project / "r.md"
    assert run_cli("report", "--project", project, "--format", "md", "-o", out).exit_code == 0
    assert "Partial run (--since-last): only records changed since" in out.read_text("utf-8")
