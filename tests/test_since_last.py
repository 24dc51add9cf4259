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
