"""`reconcile report`: a golden Markdown report, and an HTML page that needs nothing outside it."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from reconcile import run as run_module
from reconcile.drift import check_and_record
from reconcile.project import load_project
from tests.test_diff_cases import CASES_DIR, apply_case, build
from tests.test_outputs import golden


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Two recorded runs of the tiny project: a state mismatch persists, one is new, one resolved."""
    root = tmp_path_factory.mktemp("report") / "p"
    shutil.copytree(CASES_DIR / "diff_project", root)
    data = apply_case(
        {
            "set": {
                "deals": {101: {"stage": "b"}, 103: {"amount": 31.0}},
                "opps": {3: {"stage": "NEW"}},
            },
            "add": {"deal_labels": [{"deal_id": 101, "label": "q3"}]},
        }
    )
    build(data["source"], root / "old.sqlite")
    build(data["target"], root / "new.sqlite")
    mp = pytest.MonkeyPatch()
    mp.setattr(run_module, "new_run_id", lambda now: now.strftime("%Y%m%dT%H%M%SZ") + "-golden")
    proj = load_project(root)
    check_and_record(proj, started=dt.datetime(2026, 1, 19, 1, tzinfo=dt.UTC))
    with sqlite3.connect(root / "new.sqlite") as conn:
        conn.execute("UPDATE deals SET amount = 30 WHERE id = 103")
        conn.execute("DELETE FROM deal_labels WHERE deal_id = 102")
    check_and_record(proj, started=dt.datetime(2026, 1, 20, 1, tzinfo=dt.UTC))
    mp.undo()
    return root


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_markdown_report_matches_its_golden_file(project, run_cli, lang):
    out = project / f"report.{lang}.md"
    result = run_cli("report", "--project", project, "--format", "md", "--lang", lang, "-o", out)
    assert result.exit_code == 0, result.stderr
    text = re.sub(r"Started \S+|开始时间 \S+", "Started …", out.read_text("utf-8"))
    golden(f"report.{lang}.md.json", text.splitlines())


def test_the_report_shows_the_transition_matrix_lifecycle_and_tags(project, run_cli):
    out = project / "r.md"
    run_cli("report", "--project", project, "--format", "md", "--lang", "en", "-o", out)
    text = out.read_text("utf-8")
    assert "| A A         | ✓0    | **✗**1 |" in text  # u1: A should become a, is b
    assert "new 1 · persisting 3 · reopened 0 · resolved 1" in text
    assert "| opp      | labels  | q4    | q4      | 1       |" in text


def test_the_html_report_is_self_contained(project, run_cli):
    out = project / "r.html"
    result = run_cli("report", "latest", "--project", project, "--lang", "zh", "-o", out)
    assert result.exit_code == 0, result.stderr
    page = out.read_text("utf-8")
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<svg" in page and "状态迁移矩阵" in page
    assert 'class="n bad">1<' in page  # the unexpected cell is highlighted


def test_an_unknown_run_is_a_clear_error(project, run_cli):
    result = run_cli("report", "20990101T000000Z-nope", "--project", project)
    assert result.exit_code == 2 and "is not in" in result.stderr and "Recent runs" in result.stderr


def test_pii_values_are_hidden_in_report_samples(tmp_path):
    import pandas as pd

    from reconcile.report.data import _mask

    demo = Path(__file__).resolve().parent.parent
    proj = load_project_for_demo(demo, tmp_path)
    rows = pd.DataFrame(
        [
            {
                "entity": "opportunity",
                "field": "contact_phone",
                "old_value": "138-0013-8000",
                "expected_value": "13800138000",
                "actual_value": "13800000000",
                "suggestion": "set contact_phone to 13800138000",
                "derivation": None,
            }
        ]
    )
    masked = _mask(proj, rows)[0]
    assert masked["old_value"] == masked["expected_value"] == masked["actual_value"] == "•••"
    assert "13800138000" not in masked["suggestion"]


def load_project_for_demo(repo: Path, tmp_path: Path):
    for name in ("reconcile.yaml", "data_dictionary", "mappings"):
        src = repo / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    return load_project(tmp_path)
