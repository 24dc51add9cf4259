"""Bad input gets one clear paragraph naming file and line, exit code 2, and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest


def _write(project: Path, rel: str, text: str | bytes) -> Path:
    path = project / rel
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, "utf-8")
    return path


def _assert_clean_error(result, *needles: str) -> None:
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr


def test_malformed_yaml_names_file_line_and_column(project, run_cli):
    _write(project, "mappings/legacy_to_new.yaml", "format: 1\nversion: [1, 2\nsource: x\n")
    result = run_cli("check", project)
    _assert_clean_error(result, "legacy_to_new.yaml:3:", "malformed YAML")


def test_a_missing_project_folder_exits_two(tmp_path, run_cli):
    _assert_clean_error(run_cli("check", tmp_path / "nowhere"), "project folder not found")


def test_a_folder_without_dictionaries_or_mappings_exits_two(tmp_path, run_cli):
    _assert_clean_error(run_cli("check", tmp_path), "no data_dictionary/*.yaml")


def test_a_file_that_is_not_utf8_exits_two(project, run_cli):
    _write(project, "data_dictionary/legacy_crm.yaml", "system: 旧".encode("gbk"))
    _assert_clean_error(run_cli("check", project), "legacy_crm.yaml is not UTF-8")


def test_python_object_tags_are_refused_not_executed(project, run_cli, tmp_path):
    marker = tmp_path / "pwned"
    _write(
        project,
        "data_dictionary/legacy_crm.yaml",
        f"format: !!python/object/apply:os.system ['touch {marker}']\n",
    )
    _assert_clean_error(run_cli("check", project), "legacy_crm.yaml:1:9", "unsupported YAML tag")
    assert not marker.exists()


def test_an_alias_bomb_is_refused(project, run_cli):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    _write(project, "data_dictionary/legacy_crm.yaml", "\n".join(lines) + "\n")
    _assert_clean_error(run_cli("check", project), "more than 500,000 YAML nodes")


def test_a_huge_file_is_refused_before_it_is_parsed(project, run_cli):
    _write(project, "data_dictionary/legacy_crm.yaml", "# " + "x" * (6 * 1024 * 1024) + "\n")
    _assert_clean_error(run_cli("check", project), "YAML files over")


def test_debug_shows_the_traceback(tmp_path, run_cli):
    with pytest.raises(Exception, match="project folder not found"):
        run_cli("--debug", "check", tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("format: 1\nversion: 1\nentities: {}\nsystem: a\nsystem: b\n", "duplicate-key"),
        ("format: 1\nversion: one\nsystem: a\nentities: {}\n", "wrong-type"),
        ("format: 1\nversion: 1\nsystem: a\nentitys: {}\n", "unknown-key"),
        ("", "empty-file"),
        ("- just\n- a list\n", "wrong-type"),
    ],
    ids=["duplicate key", "wrong type", "unknown key", "empty file", "not a mapping"],
)
def test_invalid_dictionaries_are_problems_with_exit_one(project, run_cli, text, kind):
    _write(project, "data_dictionary/new_crm.yaml", text)
    result = run_cli("check", project, "--format", "json")
    assert result.exit_code == 1
    assert f'"kind": "{kind}"' in result.stdout
    assert "Traceback" not in result.stderr


def test_dictionary_diff_of_a_missing_file_exits_two(project, run_cli):
    result = run_cli(
        "dictionary", "diff", project / "nope.yaml", project / "data_dictionary/new_crm.yaml"
    )
    _assert_clean_error(result, "file not found")


def test_dictionary_diff_of_an_invalid_dictionary_exits_two(project, run_cli):
    bad = _write(project, "bad.yaml", "format: 1\nsystem: x\nversion: 1\nentities: {e: {}}\n")
    result = run_cli("dictionary", "diff", bad, project / "data_dictionary/new_crm.yaml")
    _assert_clean_error(result, "bad.yaml:4:", "is missing")


def test_an_unknown_command_suggests_the_right_one(run_cli):
    result = run_cli("chek")
    assert result.exit_code == 2
    assert "Did you mean 'check'?" in result.stderr


def test_an_interrupted_command_exits_130_without_a_traceback(project, monkeypatch):
    from reconcile import cli as cli_module

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "check_project", interrupted)
    assert cli_module.main(["check", str(project)]) == 130
