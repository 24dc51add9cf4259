"""`reconcile apply` against real PostgreSQL and MariaDB targets (the machine's servers)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.reviewing import approve, decide, run_once
from tests.servers import fresh_database
from tests.test_apply import CASE, CHANGEABLE
from tests.test_diff_cases import CASES_DIR, apply_case, build
from tests.test_real_databases import TABLES, load

deals, deal_labels = TABLES["deals"], TABLES["deal_labels"]  # the server tables of the diff cases


@pytest.fixture(params=["postgresql", "mariadb"])
def target(request, tmp_path, monkeypatch):
    """The tiny project with its new CRM on a real server; (project root, database url)."""
    gen = fresh_database(request.param)
    url = next(gen)
    data = apply_case(CASE)
    load(url, data["target"])
    root = tmp_path / "p"
    shutil.copytree(CASES_DIR / "diff_project", root)
    build(data["source"], root / "old.sqlite")
    config = root / "reconcile.yaml"
    config.write_text(
        config.read_text("utf-8").replace("url: 'sqlite:///new.sqlite'", "url: '${NEW_URL}'"),
        "utf-8",
    )
    monkeypatch.setenv("NEW_URL", url)
    yield root, url
    gen.close()


def dump(url: str) -> dict:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        out = {
            t.name: sorted(map(tuple, conn.execute(sa.select(t)).all()), key=repr)
            for t in (deals, deal_labels)
        }
    engine.dispose()
    return out


def test_approved_corrections_are_applied_on_the_server(target, run_cli):
    root, url = target
    sheet = run_once(root)
    decide(sheet, approve(CHANGEABLE))
    result = run_cli("apply", sheet, "--execute", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {"applied": 5}
    later = json.loads(run_cli("run", root, "--format", "json", "-q").stdout)["findings"]["by_kind"]
    assert later == {"unmapped_value": 1}
    rows = {r[1]: r for r in dump(url)["deals"]}
    assert rows["u1"][2] == "a" and rows["u3"][4] == Decimal("30.00")
    assert rows["u4"][2:5] == ("b", None, Decimal("40.00"))


def test_a_conflicting_change_made_between_run_and_apply_is_not_overwritten(target, run_cli):
    root, url = target
    sheet = run_once(root)
    decide(sheet, approve({"state_mismatch", "value_mismatch"}))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(deals.update().where(deals.c.id == 101).values(stage="won"))
    engine.dispose()
    result = run_cli("apply", sheet, "--execute", "--format", "json")
    assert result.exit_code == 1
    status = {c["field"]: c["status"] for c in json.loads(result.stdout)["changes"]}
    assert status == {"stage": "conflict", "amount": "applied"}
    rows = {r[1]: r for r in dump(url)["deals"]}
    assert rows["u1"][2] == "won"


def test_a_second_apply_changes_nothing_and_undo_restores_the_exact_prior_state(target, run_cli):
    root, url = target
    before = dump(url)
    sheet = run_once(root)
    decide(sheet, approve(CHANGEABLE))
    first = json.loads(run_cli("apply", sheet, "--execute", "--format", "json").stdout)
    after = dump(url)
    second = json.loads(run_cli("apply", sheet, "--execute", "--format", "json").stdout)
    assert second["counts"] == {"already": 5} and dump(url) == after
    done = run_cli("undo", first["outputs"]["undo"], "--execute")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert dump(url) == before


def _lock_waits(conn, kind: str) -> int:
    if kind == "postgresql":
        q = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    else:
        q = "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'"
    return conn.exec_driver_sql(q).scalar_one()


def test_a_process_killed_mid_apply_leaves_no_partial_batch(target, tmp_path):
    root, url = target
    kind = "postgresql" if url.startswith("postgresql") else "mariadb"
    before = dump(url)
    sheet = run_once(root)
    decide(sheet, approve(CHANGEABLE))
    # Hold a lock on the record of the third change (the amount of u3): the apply inserts u4
    # and corrects u1 first, then waits on the lock, and is killed there.
    holder = sa.create_engine(url).connect()
    trans = holder.begin()
    holder.execute(sa.select(deals.c.id).where(deals.c.id == 103).with_for_update())
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconcile.cli", "apply", str(sheet), "--execute"],
        env={**os.environ, "NEW_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watcher = sa.create_engine(url, isolation_level="AUTOCOMMIT").connect()
    try:
        deadline = time.monotonic() + 30
        while _lock_waits(watcher, kind) == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the apply never reached the locked record"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        trans.rollback()
        holder.close()
        watcher.close()
    time.sleep(0.5)  # the server notices the dead connection and rolls its transaction back
    assert dump(url) == before
    assert not list((sheet.parent / "applies").glob("*/undo.json"))
