"""`reconcile apply` on SQLite: the review round trip, conflicts, undo, memory, proposals."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import openpyxl
import pytest
import yaml

from tests.reviewing import approve, columns, decide, run_once
from tests.test_diff_cases import CASES_DIR, apply_case, build

# One record per defect: u1's stage, u3's amount, u2's lost tag, an expired tag on u1,
# a lost record u4, and an old code nobody mapped on u5.
CASE = {
    "set": {"deals": {101: {"stage": "b"}, 103: {"amount": 31.0}}},
    "remove": {"deal_labels": [[102, "q4"]]},
    "add": {
        "deal_labels": [{"deal_id": 101, "label": "q3"}],
        "opps": [
            {
                "id": 4,
                "uid": "u4",
                "stage": "B",
                "amount": 40.0,
                "closes": None,
                "created": "2025-11-04 10:00:00",
                "deleted": 0,
                "tags": "hot",
            },
            {
                "id": 5,
                "uid": "u5",
                "stage": "NEW",
                "amount": 50.0,
                "closes": None,
                "created": "2025-11-05 10:00:00",
                "deleted": 0,
                "tags": "",
            },
        ],
        "deals": [
            {
                "id": 105,
                "legacy_uid": "u5",
                "stage": "a",
                "active": 1,
                "amount": 50.0,
                "closes": None,
                "created": "2025-11-05 02:00:00",
            }
        ],
    },
}
CHANGEABLE = {
    "state_mismatch",
    "value_mismatch",
    "missing_tag",
    "invalid_value",
    "missing_in_target",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    shutil.copytree(CASES_DIR / "diff_project", root)
    data = apply_case(CASE)
    build(data["source"], root / "old.sqlite")
    build(data["target"], root / "new.sqlite")
    return root


def dump(db: Path) -> dict:
    with sqlite3.connect(db) as conn:
        return {
            t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
            for t in ("deals", "deal_labels")
        }


def kinds_of(root: Path, run_cli) -> dict:
    result = run_cli("run", root, "--format", "json", "--quiet")
    return json.loads(result.stdout)["findings"]


def test_the_case_has_one_finding_of_each_kind(project, run_cli):
    assert kinds_of(project, run_cli)["by_kind"] == {
        "missing_in_target": 1,
        "state_mismatch": 1,
        "value_mismatch": 1,
        "missing_tag": 1,
        "unmapped_value": 1,
        "invalid_value": 1,
    }


def test_a_dry_run_prints_the_sql_and_changes_nothing(project, run_cli):
    sheet = run_once(project)
    decide(sheet, approve(CHANGEABLE))
    before = dump(project / "new.sqlite")
    result = run_cli("apply", sheet)
    assert result.exit_code == 0, result.stderr
    assert "UPDATE deals SET stage=? WHERE id = ? AND stage = ?;" in result.stdout
    assert '["a", 101, "b"]' in result.stdout
    assert "INSERT INTO deals" in result.stdout
    assert dump(project / "new.sqlite") == before
    patch = next((sheet.parent / "applies").glob("*/patch.sql")).read_text("utf-8")
    assert "UPDATE deals SET stage=?" in patch and "-- params:" in patch


def test_approved_corrections_are_applied_and_the_next_run_is_clean(project, run_cli):
    sheet = run_once(project)
    assert decide(sheet, approve(CHANGEABLE)) == 5
    result = run_cli("apply", sheet, "--execute")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert kinds_of(project, run_cli)["by_kind"] == {"unmapped_value": 1}
    deals = dump(project / "new.sqlite")["deals"]
    inserted = [d for d in deals if d[1] == "u4"]
    assert len(inserted) == 1 and inserted[0][2:5] == ("b", None, 40.0)


def test_applying_the_same_worksheet_twice_changes_nothing_the_second_time(project, run_cli):
    sheet = run_once(project)
    decide(sheet, approve(CHANGEABLE))
    run_cli("apply", sheet, "--execute")
    after_first = dump(project / "new.sqlite")
    again = run_cli("apply", sheet, "--execute", "--format", "json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["counts"] == {"already": 5}
    assert dump(project / "new.sqlite") == after_first


def test_a_value_changed_since_the_run_is_a_conflict_and_left_alone(project, run_cli):
    sheet = run_once(project)
    decide(sheet, approve({"state_mismatch"}))
    with sqlite3.connect(project / "new.sqlite") as conn:
        conn.execute("UPDATE deals SET stage = 'won' WHERE id = 101")
    result = run_cli("apply", sheet, "--execute", "--format", "json")
    assert result.exit_code == 1
    change = json.loads(result.stdout)["changes"][0]
    assert change["status"] == "conflict" and "now 'won'" in change["note"]
    with sqlite3.connect(project / "new.sqlite") as conn:
        assert conn.execute("SELECT stage FROM deals WHERE id = 101").fetchone() == ("won",)


def test_undo_restores_the_exact_prior_state(project, run_cli):
    before = dump(project / "new.sqlite")
    sheet = run_once(project)
    decide(sheet, approve(CHANGEABLE))
    result = run_cli("apply", sheet, "--execute", "--format", "json")
    undo = json.loads(result.stdout)["outputs"]["undo"]
    assert dump(project / "new.sqlite") != before
    done = run_cli("undo", undo, "--execute")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert dump(project / "new.sqlite") == before


def test_an_edited_label_becomes_its_code(project, run_cli):
    sheet = run_once(project)
    decide(sheet, lambda row: ("edit", "赢") if row["kind"] == "state_mismatch" else None)
    result = run_cli("apply", sheet, "--execute")
    assert result.exit_code == 0, result.stderr
    with sqlite3.connect(project / "new.sqlite") as conn:
        assert conn.execute("SELECT stage FROM deals WHERE id = 101").fetchone() == ("won",)


def test_a_rejected_finding_is_remembered_and_left_out_of_later_worksheets(project, run_cli):
    sheet = run_once(project)

    def reject_amount(row):
        return ("reject", None) if row["kind"] == "value_mismatch" else None

    decide(sheet, reject_amount)
    assert run_cli("apply", sheet, "--execute").exit_code == 0
    later = kinds_of(project, run_cli)
    assert later["accepted"] == 1 and "value_mismatch" not in later["by_kind"]
    next_sheet = run_once(project)
    book = openpyxl.load_workbook(next_sheet)
    kinds = [r[1] for r in book["opp"].iter_rows(min_row=2, values_only=True)]
    assert "value_mismatch" not in kinds and len(kinds) == 5


def test_an_answer_to_an_unmapped_value_becomes_a_proposed_mapping_version(project, run_cli):
    live = (project / "mappings" / "old_to_new.yaml").read_text("utf-8")
    sheet = run_once(project)
    decide(sheet, lambda row: ("edit", "a") if row["kind"] == "unmapped_value" else None)
    result = run_cli("apply", sheet, "--execute", "--format", "json")
    assert result.exit_code == 0, result.stderr
    proposal = Path(json.loads(result.stdout)["outputs"]["mapping_proposal"])
    assert proposal == project / "mappings" / "proposed" / "old_to_new.v2.yaml"
    doc = yaml.safe_load(proposal.read_text("utf-8"))
    assert doc["version"] == 2 and doc["entities"]["opp"]["fields"][0]["values"]["NEW"] == "a"
    assert (
        "NEW" in doc["changelog"][0]["changes"][0] and doc["changelog"][0]["author"] == "wang.fang"
    )
    assert (project / "mappings" / "old_to_new.yaml").read_text("utf-8") == live


def test_proposals_keep_the_mappings_comments(project, run_cli):
    path = project / "mappings" / "old_to_new.yaml"
    path.write_text(
        path.read_text("utf-8").replace(
            "      - source: stage\n", "      # the lifecycle\n      - source: stage\n"
        ),
        "utf-8",
    )
    sheet = run_once(project)
    decide(sheet, lambda row: ("edit", "a") if row["kind"] == "unmapped_value" else None)
    out = json.loads(run_cli("apply", sheet, "--execute", "--format", "json").stdout)
    assert "# the lifecycle" in Path(out["outputs"]["mapping_proposal"]).read_text("utf-8")


def test_the_audit_log_records_who_changed_what(project, run_cli):
    sheet = run_once(project)
    decide(sheet, approve({"state_mismatch"}), reviewer="li.na")
    out = json.loads(run_cli("apply", sheet, "--execute", "--format", "json").stdout)
    with sqlite3.connect(project / "runs" / "history.sqlite") as conn:
        apply_row = conn.execute(
            "SELECT run_id, worksheet_sha256, executed FROM applies"
        ).fetchone()
        change = conn.execute(
            "SELECT field, before, after, reviewer, status FROM changes"
        ).fetchone()
    assert apply_row == (out["run_id"], hashlib.sha256(sheet.read_bytes()).hexdigest(), 1)
    assert change == ("stage", "b", "a", "li.na", "applied")


def test_emit_upsert_writes_import_files_keyed_by_external_id(project, run_cli, tmp_path):
    sheet = run_once(project)
    decide(sheet, approve({"state_mismatch", "missing_tag", "invalid_value"}))
    before = dump(project / "new.sqlite")
    result = run_cli("apply", sheet, "--emit-upsert", tmp_path / "upsert")
    assert result.exit_code == 0, result.stderr
    text = (tmp_path / "upsert" / "deal.csv").read_text("utf-8-sig").splitlines()
    assert text[0] == "legacy_uid,labels,stage"
    assert "u1,hot,a" in text and "u2,q4," in text
    assert dump(project / "new.sqlite") == before


def test_a_csv_worksheet_applies_like_the_xlsx(project, run_cli):
    sheet = run_once(project)
    csv_path = sheet.with_name("worksheet.csv")
    lines = csv_path.read_text("utf-8-sig").splitlines()
    head = lines[0].split(",")
    fixed = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        if cells[head.index("kind")] == "state_mismatch":
            cells[head.index("decision")] = "approve"
            cells[head.index("reviewer")] = "zhao.lei"
        fixed.append(",".join(cells))
    csv_path.write_text("\n".join(fixed) + "\n", "utf-8-sig")
    result = run_cli("apply", csv_path, "--execute", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {"applied": 1}


# --- hostile worksheets: each is rejected with a clear message and nothing is written -------


def _edit_cell(key: str, value):
    def edit(book):
        sheet = book["opp"]
        sheet.cell(2, columns(sheet)[key]).value = value

    return edit


def _rename(book):
    book["opp"].title = "opportunities"


def _drop(book):
    del book["opp"]


HOSTILE = {
    "a formula in an editable cell": (_edit_cell("comment", '=HYPERLINK("http://x")'), "a formula"),
    "an altered locked cell": (_edit_cell("expected_value", "won"), "locked cell altered"),
    "an unknown decision": (_edit_cell("decision", "maybe"), "unknown decision 'maybe'"),
    "a value of the wrong type": (None, "'abc' is not a number"),
    "a 1 MB cell": (_edit_cell("comment", "x" * 1_000_000), "characters; cells over 10,000"),
    "a renamed sheet": (_rename, "unknown sheet 'opportunities'"),
    "a missing sheet": (_drop, "sheet 'opp' is missing"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_worksheet_is_rejected_and_nothing_is_written(name, project, run_cli):
    edit, message = HOSTILE[name]
    sheet = run_once(project)
    decide(sheet, approve(CHANGEABLE))
    if edit is None:
        decide(sheet, lambda row: ("edit", "abc") if row["kind"] == "value_mismatch" else None)
    else:
        book = openpyxl.load_workbook(sheet)
        edit(book)
        book.save(sheet)
    before = dump(project / "new.sqlite")
    result = run_cli("apply", sheet, "--execute")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "nothing was applied" in result.stderr
    assert dump(project / "new.sqlite") == before
    assert not (project / "runs" / "history.sqlite").exists()


def test_a_worksheet_from_another_run_is_rejected(project, run_cli):
    first = run_once(project)
    second = run_once(project)
    with sqlite3.connect(project / "new.sqlite") as conn:
        conn.execute("UPDATE deals SET stage = 'won' WHERE id = 103")
    third = run_once(project)
    decide(first, approve(CHANGEABLE))
    book = openpyxl.load_workbook(first)
    book["about"]["B2"] = third.parent.name
    book.save(first)
    result = run_cli("apply", first, "--execute")
    assert result.exit_code == 2 and "comes from another run's worksheet" in result.stderr
    assert second.exists()


def test_a_worksheet_of_an_unknown_run_is_rejected(project, run_cli):
    sheet = run_once(project)
    book = openpyxl.load_workbook(sheet)
    book["about"]["B2"] = "20990101T000000Z-ffffff"
    book.save(sheet)
    result = run_cli("apply", sheet)
    assert result.exit_code == 2 and "which is not in" in result.stderr


def test_a_file_that_is_not_a_workbook_is_rejected(project, run_cli):
    sheet = run_once(project)
    sheet.write_bytes(b"PK\x03\x04 not really a zip")
    result = run_cli("apply", sheet)
    assert result.exit_code == 2 and "not a readable XLSX workbook" in result.stderr


def test_an_inserted_record_gets_plain_values_and_its_set_fields(tmp_path, run_cli):
    won = {
        **CASE,
        "add": {
            **CASE["add"],
            "opps": [
                {
                    "id": 4,
                    "uid": "u4",
                    "stage": "W",
                    "amount": 40.0,
                    "closes": "2025-12-24",
                    "created": "2025-11-04 10:00:00",
                    "deleted": 0,
                    "tags": "Q4",
                }
            ],
        },
    }
    root = tmp_path / "p"
    shutil.copytree(CASES_DIR / "diff_project", root)
    data = apply_case(won)
    build(data["source"], root / "old.sqlite")
    build(data["target"], root / "new.sqlite")
    sheet = run_once(root)
    decide(sheet, approve({"missing_in_target"}))
    assert run_cli("apply", sheet).exit_code == 0  # the dry run shows the INSERT
    assert run_cli("apply", sheet, "--execute").exit_code == 0
    with sqlite3.connect(root / "new.sqlite") as conn:
        row = conn.execute(
            "SELECT stage, active, typeof(active), amount, closes, created FROM deals "
            "WHERE legacy_uid = 'u4'"
        ).fetchone()
        labels = conn.execute(
            "SELECT label FROM deal_labels d JOIN deals ON deals.id = d.deal_id "
            "WHERE legacy_uid = 'u4'"
        ).fetchall()
    assert row == ("won", 0, "integer", 40.0, "2025-12-24", "2025-11-04 02:00:00")
    assert labels == [("q4",)]


def test_a_tampered_undo_patch_is_refused(project, run_cli):
    sheet = run_once(project)
    decide(sheet, approve({"state_mismatch"}))
    out = json.loads(run_cli("apply", sheet, "--execute", "--format", "json").stdout)
    undo = Path(out["outputs"]["undo"])
    doc = json.loads(undo.read_text("utf-8"))
    doc["steps"] = [{"op": "delete_row", "table": "deal_labels", "values": {}}]
    undo.write_text(json.dumps(doc), "utf-8")
    before = dump(project / "new.sqlite")
    result = run_cli("undo", undo, "--execute")
    assert (
        result.exit_code == 2
        and "not an undo patch this project's history recorded" in result.stderr
    )
    assert dump(project / "new.sqlite") == before


def test_a_worksheet_with_more_rows_than_findings_is_refused(project, run_cli):
    sheet = run_once(project)
    book = openpyxl.load_workbook(sheet)
    for r in range(3, 40):
        book["opp"].cell(r, 1).value = "x"
    book.save(sheet)
    result = run_cli("apply", sheet)
    assert result.exit_code == 2 and "more rows than the run has findings" in result.stderr


def test_a_formula_typed_into_a_csv_worksheet_is_refused(project, run_cli):
    sheet = run_once(project)
    csv_path = sheet.with_name("worksheet.csv")
    lines = csv_path.read_text("utf-8-sig").splitlines()
    head = lines[0].split(",")
    cells = lines[1].split(",")
    cells[head.index("decision")] = "edit"
    cells[head.index("corrected_value")] = '=HYPERLINK("http://x")'
    cells[head.index("reviewer")] = "li.na"
    csv_path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n", "utf-8-sig")
    result = run_cli("apply", csv_path, "--execute")
    assert result.exit_code == 2 and "a formula" in result.stderr


def test_a_single_tag_is_taken_as_one_code_even_without_declared_codes():
    from reconcile.dictionary.model import Field
    from reconcile.review import to_value

    field = Field(type="tags", storage={"delimited": {"column": "tags"}})
    assert to_value(field, " vip ") == "vip"


def test_a_corrected_time_without_offset_is_utc_like_the_worksheet_shows():
    import datetime as dt

    from reconcile.dictionary.model import Field
    from reconcile.review import to_value

    field = Field(type="datetime", timezone="Asia/Shanghai")
    assert to_value(field, "2025-11-01T02:00:00") == dt.datetime(2025, 11, 1, 2, tzinfo=dt.UTC)
