"""`reconcile dictionary diff` on the two shipped versions of the new CRM's dictionary."""

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
V1 = REPO / "data_dictionary" / "history" / "new_crm.v1.yaml"
V2 = REPO / "data_dictionary" / "history" / "new_crm.v2.yaml"


def test_the_demo_versions_differ_in_exactly_the_changelogged_ways(run_cli):
    result = run_cli("dictionary", "diff", V1, V2, "--format", "json")
    assert result.exit_code == 1
    changes = {(c["field"], c["change"], c["item"]) for c in json.loads(result.stdout)["changes"]}
    assert changes == {
        ("", "dictionary version changed", ""),
        ("labels", "code added", "promo_2025q4"),
        ("labels", "code deprecated", "important"),
        ("labels", "code replaced_by added", "important"),
        ("quote_stage", "code added", "drafting"),
        ("stage", "label changed", "contract [zh]"),
    }


def test_the_markdown_table_shows_old_and_new_labels(run_cli):
    result = run_cli("dictionary", "diff", V1, V2)
    assert result.stdout.startswith("## new_crm v1 → new_crm v2")
    assert "| deal     | stage       | label changed" in result.stdout
    assert "签约" in result.stdout and "合同签署" in result.stdout


def test_a_dictionary_compared_with_itself_has_no_changes(run_cli):
    result = run_cli("dictionary", "diff", V2, V2)
    assert result.exit_code == 0
    assert "No semantic changes." in result.stdout


def test_fields_added_removed_and_retyped_are_named(tmp_path, run_cli):
    text = V2.read_text("utf-8")
    edited = text.replace(
        "      probability:\n        type: integer\n",
        "      probability:\n        type: decimal(5,2)\n",
    )
    edited = edited.replace(
        "      account_name:\n", "      region:\n        type: string\n      account_name:\n"
    )
    edited = edited.replace("          declined: {labels: {zh: 已拒绝, en: Declined}}\n", "")
    new = tmp_path / "new.yaml"
    new.write_text(edited, "utf-8")
    out = json.loads(run_cli("dictionary", "diff", V2, new, "--format", "json").stdout)
    changes = {(c["field"], c["change"], c["item"], c["old"], c["new"]) for c in out["changes"]}
    assert ("probability", "field retyped", "type", "integer", "decimal(5,2)") in changes
    assert ("region", "field added", "string", None, None) in changes
    assert ("quote_stage", "code removed", "declined", "已拒绝 / Declined", None) in changes
