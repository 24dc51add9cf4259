"""`reconcile check` on the demo project and on every class of problem, from tests/cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "check_problems.yaml").read_text("utf-8"))


def test_the_shipped_demo_project_is_clean(run_cli):
    result = run_cli("check", Path(__file__).resolve().parent.parent)
    assert result.exit_code == 0, result.stdout
    assert "0 error(s), 0 warning(s)" in result.stderr


def _position(text: str, marker: str) -> tuple[int, int]:
    index = text.index(marker.replace("»", "")) + max(marker.find("»"), 0)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_check_finds_the_problem_at_its_exact_place(case, project, run_cli):
    path = project / case["file"]
    text = path.read_text("utf-8")
    for old, new in case["replace"].items():
        assert old in text, f"case does not apply: {old!r} not in {case['file']}"
        text = text.replace(old, new, 1)
    path.write_text(text, "utf-8")

    result = run_cli("check", project, "--format", "json")

    errors = [e for e in case["expect"] if e.get("severity", "error") == "error"]
    assert result.exit_code == case.get("exit", 1 if errors else 0), result.stdout
    found = json.loads(result.stdout)["problems"]
    assert len(found) == len(case["expect"]), json.dumps(found, ensure_ascii=False, indent=1)
    for want in case["expect"]:
        matches = [
            p
            for p in found
            if p["kind"] == want["kind"] and want.get("message", "") in p["message"]
        ]
        assert matches, f"no {want['kind']} in {found}"
        got = matches[0]
        assert got["severity"] == want.get("severity", "error")
        assert want.get("message", "") in got["message"]
        if "key_path" in want:
            assert got["key_path"] == want["key_path"]
        if "at" in want:
            assert Path(got["file"]).name == path.name
            assert (got["line"], got["column"]) == _position(text, want["at"])
        if want.get("file"):
            assert got["file"].endswith(want["file"])


def test_problems_are_printed_as_a_table_with_file_line_and_column(project, run_cli):
    path = project / "mappings" / "legacy_to_new.yaml"
    path.write_text(path.read_text("utf-8").replace("S5: contract", "S5: contrakt"), "utf-8")
    result = run_cli("check", project)
    assert result.exit_code == 1
    assert "legacy_to_new.yaml:" in result.stdout
    assert "(entities.opportunity.fields.4.values.S5)" in result.stdout
    assert "did you mean" in result.stdout
    assert "1 error(s)" in result.stderr
