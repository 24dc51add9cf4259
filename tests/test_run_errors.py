"""`reconcile run` on bad projects and unreachable sources: exit 2, one paragraph, no secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_diff_cases import make_project


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_project(tmp_path / "p")


def _config(root: Path, old: str, new: str) -> None:
    path = root / "reconcile.yaml"
    path.write_text(path.read_text("utf-8").replace(old, new), "utf-8")


def _clean_error(result, *needles):
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0]), result.stderr
    for n in needles:
        assert n in result.stderr


def test_a_faithful_tiny_project_runs_clean(tiny, run_cli):
    result = run_cli("run", tiny)
    assert result.exit_code == 0, result.stderr
    assert "total findings" in result.stdout
    quiet = run_cli("run", tiny, "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_a_missing_sqlite_file_is_named_and_not_created(tiny, run_cli):
    (tiny / "old.sqlite").unlink()
    _clean_error(run_cli("run", tiny), "SQLite database not found", "old.sqlite")
    assert not (tiny / "old.sqlite").exists()


def test_an_unset_environment_variable_is_named(tiny, run_cli, monkeypatch):
    monkeypatch.delenv("OLD_CRM_URL", raising=False)
    _config(tiny, "url: 'sqlite:///old.sqlite'", "url: '${OLD_CRM_URL}'")
    _clean_error(
        run_cli("run", tiny), "environment variable OLD_CRM_URL is not set", "reconcile.yaml:3:"
    )


def test_an_unreachable_database_is_an_error_and_its_password_is_never_shown(
    tiny, run_cli, monkeypatch
):
    monkeypatch.setenv(
        "OLD_CRM_URL", "postgresql+psycopg://admin:s3cret-pw@127.0.0.1:1/crm?connect_timeout=2"
    )
    _config(tiny, "url: 'sqlite:///old.sqlite'", "url: '${OLD_CRM_URL}'")
    result = run_cli("run", tiny)
    _clean_error(result, "127.0.0.1:1", "***")
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_a_table_the_dictionary_names_but_the_database_lacks_is_an_error(tiny, run_cli):
    path = tiny / "data_dictionary" / "old.yaml"
    path.write_text(
        path.read_text("utf-8").replace("{table: opps}", "{table: opportunities}"), "utf-8"
    )
    _clean_error(run_cli("run", tiny), "reading opportunities", "no such table")


def test_an_invalid_mapping_stops_the_run_before_reading_anything(tiny, run_cli):
    path = tiny / "mappings" / "old_to_new.yaml"
    path.write_text(path.read_text("utf-8").replace("B: b", "B: bb"), "utf-8")
    _clean_error(run_cli("run", tiny), "old_to_new.yaml:", "'bb' is not a code", "reconcile check")


def test_a_project_without_config_says_how_to_start(tmp_path, run_cli):
    _clean_error(run_cli("run", tmp_path), "no reconcile.yaml", "reconcile demo")


def test_unknown_keys_in_the_config_are_errors(tiny, run_cli):
    _config(tiny, "output: runs", "outptu: runs")
    _clean_error(run_cli("run", tiny), "unknown key 'outptu'", "did you mean 'output'")


def test_check_also_validates_the_project_config(tiny, run_cli):
    _config(tiny, "output: runs", "outptu: runs")
    result = run_cli("check", tiny)
    assert result.exit_code == 1 and "unknown key 'outptu'" in result.stdout
