"""The demo databases tell the migration story their facts promise, checked with plain SQL.

Nothing here uses the reconcile engine: the expected mapping is written out below (and compared
with mappings/legacy_to_new.yaml), and every defect is counted by a query of its own.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # fixtures/ is a folder of the repo, not an installed package
demo = importlib.import_module("fixtures.demo")

N = 2000
CUTOVER_UTC = "2026-01-04 16:00:00"  # 2026-01-05T00:00:00+08:00
STAGES = {
    "S0": "prospecting",
    "S1": "prospecting",
    "S2": "qualification",
    "S3": "demo",
    "S4": "negotiation",
    "S5": "contract",
    "WON": "closed_won",
    "LOST": "closed_lost",
}
QUOTES = {
    "TO_CONTACT": "pending",
    "PREPARING": "drafting",
    "QUOTED": "sent",
    "ACCEPTED": "accepted",
    "REJECTED": "declined",
}
OWNERS = {"li.na": "wang.fang", "chen.jie": "zhao.lei"}
TAGS = {
    "VIP客户": "vip",
    "渠道": "channel",
    "重点客户": "key_account",
    "KA": "key_account",
    "2025Q4_双十一促销": "promo_2025q4",
    "2025Q4_年终冲刺": "promo_2025q4",
}  # 测试 is dropped
EXPIRED_LABELS = {"promo_2025q3"}

# Each finding kind, counted per legacy record (and per field for value mismatches).
FINDING_QUERIES = {
    "state_mismatch": """
        SELECT (SELECT COUNT(DISTINCT opp_id) FROM pairs JOIN stage_map ON src = stage
                WHERE stage_code IS NOT dst)
             + (SELECT COUNT(DISTINCT opp_id) FROM pairs JOIN quote_map ON src = quotation_status
                WHERE quote_stage IS NOT dst)""",
    "missing_in_target": """
        SELECT COUNT(*) FROM legacy.opportunities
        WHERE is_deleted = 0
          AND opp_guid NOT IN (SELECT legacy_uid FROM deals WHERE legacy_uid IS NOT NULL)""",
    "duplicate_uid": """
        SELECT COUNT(*) FROM (SELECT legacy_uid FROM deals WHERE legacy_uid IS NOT NULL
                              GROUP BY legacy_uid HAVING COUNT(*) > 1)""",
    "unexpected_in_target": """
        SELECT COUNT(*) FROM deals
        WHERE legacy_uid IS NOT NULL
          AND legacy_uid NOT IN (SELECT opp_guid FROM legacy.opportunities)""",
    "missing_uid": f"""
        SELECT COUNT(*) FROM deals WHERE legacy_uid IS NULL AND created_at < '{CUTOVER_UTC}'""",
    "unmapped_value": """
        SELECT COUNT(*) FROM legacy.opportunities
        WHERE is_deleted = 0 AND quotation_status <> ''
          AND quotation_status NOT IN (SELECT src FROM quote_map)""",
    "invalid_value": """
        SELECT COUNT(DISTINCT opp_id) FROM pairs
        JOIN deal_labels ON deal_labels.deal_id = pairs.deal_id
        JOIN labels ON labels.id = deal_labels.label_id
        WHERE labels.code = 'promo_2025q3'""",
    "unparseable_value": """
        SELECT COUNT(DISTINCT opp_id) FROM pairs
        WHERE date(expected_close) IS NOT expected_close AND expected_close_date IS NULL""",
    "value_mismatch": """
        SELECT COUNT(*) FROM (
            SELECT DISTINCT opp_id FROM pairs WHERE title IS NOT trim(name)
            UNION ALL
            SELECT DISTINCT opp_id FROM pairs WHERE account_name IS NOT trim(customer_name)
            UNION ALL
            SELECT DISTINCT opp_id FROM pairs WHERE deal_phone IS NOT (
                CASE WHEN contact_phone IN ('', 'N/A', '无') THEN NULL
                     ELSE replace(replace(contact_phone, ' ', ''), '-', '') END)
            UNION ALL
            SELECT DISTINCT opp_id FROM pairs
            WHERE owner_login IS NOT coalesce((SELECT dst FROM owner_map WHERE src = owner), owner)
            UNION ALL
            SELECT DISTINCT opp_id FROM pairs WHERE abs(amount - amount_fen / 100.0) > 0.01
            UNION ALL
            SELECT DISTINCT opp_id FROM pairs
            WHERE date(expected_close) IS expected_close
              AND expected_close_date IS NOT expected_close
            UNION ALL
            SELECT DISTINCT opp_id FROM pairs
            WHERE deal_created IS NOT datetime(created_at, '-8 hours'))""",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, demo.build_demo(out, n=N)


@pytest.fixture(scope="module")
def facts(built) -> dict:
    return built[1]


@pytest.fixture(scope="module")
def db(built):
    """The new CRM with the legacy CRM attached, plus the expected mapping as temp tables."""
    out, _ = built
    con = sqlite3.connect(out / "new_crm.sqlite")
    con.execute("ATTACH DATABASE ? AS legacy", (str(out / "legacy_crm.sqlite"),))
    for table, mapping in (("stage_map", STAGES), ("quote_map", QUOTES), ("owner_map", OWNERS)):
        con.execute(f"CREATE TEMP TABLE {table} (src TEXT PRIMARY KEY, dst TEXT)")
        con.executemany(f"INSERT INTO {table} VALUES (?, ?)", mapping.items())
    con.execute(
        """CREATE TEMP VIEW pairs AS
        SELECT o.*, d.id AS deal_id, d.title, d.account_name, d.contact_phone AS deal_phone,
               d.owner_login, s.code AS stage_code, d.quote_stage, d.is_active, d.probability,
               d.amount, d.expected_close_date, d.created_at AS deal_created, d.archived
        FROM legacy.opportunities o
        JOIN deals d ON d.legacy_uid = o.opp_guid
        JOIN deal_stages s ON s.id = d.stage_id
        WHERE o.is_deleted = 0"""
    )
    yield con
    con.close()


def one(db: sqlite3.Connection, sql: str, *params):
    return db.execute(sql, params).fetchone()[0]


def tag_findings(db: sqlite3.Connection) -> dict[str, int]:
    """missing_tag and unexpected_tag per legacy record, computed in Python from plain queries."""
    labels: dict[str, set[str]] = {}
    for uid, code in db.execute(
        """SELECT d.legacy_uid, l.code FROM deals d
        JOIN deal_labels dl ON dl.deal_id = d.id JOIN labels l ON l.id = dl.label_id
        WHERE d.legacy_uid IS NOT NULL"""
    ):
        labels.setdefault(uid, set()).add(code)
    found = {"missing_tag": 0, "unexpected_tag": 0}
    for uid, tags in db.execute(
        """SELECT opp_guid, tags FROM legacy.opportunities
        WHERE is_deleted = 0 AND opp_guid IN (SELECT legacy_uid FROM deals)"""
    ):
        expected = {TAGS[t.strip("^")] for t in tags.split(",") if t.strip("^") in TAGS}
        actual = labels.get(uid, set())
        found["missing_tag"] += len(expected - actual)
        # An expired label is an invalid value, not a tag the legacy row forgot.
        found["unexpected_tag"] += len(actual - expected - EXPIRED_LABELS)
    return found


def table_contents(folder: Path) -> dict[str, list]:
    contents = {}
    for name in ("legacy_crm", "new_crm"):
        con = sqlite3.connect(folder / f"{name}.sqlite")
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            contents[f"{name}.{table}"] = con.execute(
                f"SELECT * FROM {table} ORDER BY 1, 2"
            ).fetchall()
        con.close()
    return contents


def test_the_new_crm_shows_eight_contracts_where_the_legacy_crm_has_two(db, facts):
    contracts = one(
        db,
        "SELECT COUNT(*) FROM deals JOIN deal_stages s ON s.id = stage_id WHERE code = ?",
        "contract",
    )
    legacy_s5 = one(db, "SELECT COUNT(*) FROM legacy.opportunities WHERE stage = 'S5'")
    from_s4 = one(db, "SELECT COUNT(*) FROM pairs WHERE stage = 'S4' AND stage_code = 'contract'")
    assert (contracts, legacy_s5, from_s4) == (8, 2, 6)
    assert (facts["contract_deals"], facts["legacy_s5"]) == (8, 2)


def test_forty_two_quotes_sent_or_in_preparation_show_as_pending(db):
    rows = db.execute(
        """SELECT quotation_status, COUNT(*) FROM pairs WHERE quote_stage = 'pending'
        AND quotation_status IN ('QUOTED', 'PREPARING') GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    assert rows == [("PREPARING", 12), ("QUOTED", 30)]


@pytest.mark.parametrize("kind", sorted(FINDING_QUERIES))
def test_plain_sql_counts_each_injected_defect_exactly_as_the_facts_say(db, facts, kind):
    assert one(db, FINDING_QUERIES[kind]) == facts["expected"][kind]


def test_tags_lost_or_added_in_cleaning_are_counted_exactly_as_the_facts_say(db, facts):
    expected = {kind: facts["expected"][kind] for kind in ("missing_tag", "unexpected_tag")}
    assert tag_findings(db) == expected == {"missing_tag": 48, "unexpected_tag": 3}


def test_the_facts_report_the_injected_counts(facts):
    assert facts == {
        "n": N,
        "seed": 20260105,
        "legacy_rows": N + 25,
        "deals": N - 3 + 2 + 1 + 1 + 40,
        "soft_deleted": 25,
        "expected": {
            "state_mismatch": 48,
            "missing_tag": 48,
            "missing_in_target": 3,
            "duplicate_uid": 2,
            "unexpected_in_target": 1,
            "missing_uid": 1,
            "unmapped_value": 1,
            "invalid_value": 5,
            "unparseable_value": 2,
            "value_mismatch": 11,
            "unexpected_tag": 3,
        },
        "contract_deals": 8,
        "legacy_s5": 2,
    }


def test_row_counts_match_the_facts(db, facts):
    assert one(db, "SELECT COUNT(*) FROM legacy.opportunities") == facts["legacy_rows"]
    assert one(db, "SELECT COUNT(*) FROM deals") == facts["deals"]
    assert one(db, "SELECT SUM(is_deleted) FROM legacy.opportunities") == facts["soft_deleted"]


def test_the_same_seed_builds_identical_facts_and_tables(built, tmp_path):
    out, facts = built
    again = demo.build_demo(tmp_path, n=N)
    assert json.dumps(again).encode() == json.dumps(facts).encode()
    assert table_contents(tmp_path) == table_contents(out)


def test_another_seed_builds_other_data(built, tmp_path):
    out, _ = built
    demo.build_demo(tmp_path, n=N, seed=1)
    ours, theirs = table_contents(out), table_contents(tmp_path)
    assert ours["legacy_crm.opportunities"] != theirs["legacy_crm.opportunities"]
    assert ours["new_crm.deal_stages"] == theirs["new_crm.deal_stages"]


def test_two_legacy_records_were_loaded_twice_as_identical_deals(db):
    twins = db.execute(
        """SELECT legacy_uid FROM deals WHERE legacy_uid IS NOT NULL
        GROUP BY legacy_uid HAVING COUNT(*) > 1"""
    ).fetchall()
    assert len(twins) == 2
    for (uid,) in twins:
        deals = db.execute(
            "SELECT * FROM deals WHERE legacy_uid = ? ORDER BY id", (uid,)
        ).fetchall()
        assert len(deals) == 2 and deals[0][0] != deals[1][0]
        assert deals[0][1:] == deals[1][1:]
        labels = [
            db.execute(
                "SELECT label_id FROM deal_labels WHERE deal_id = ? ORDER BY 1", (deal[0],)
            ).fetchall()
            for deal in deals
        ]
        assert labels[0] == labels[1]


def test_no_legacy_uid_appears_more_than_twice(db):
    most = one(
        db,
        """SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM deals WHERE legacy_uid IS NOT NULL
        GROUP BY legacy_uid)""",
    )
    assert most == 2


def test_soft_deleted_opportunities_never_reach_the_new_crm(db, facts):
    deleted = one(db, "SELECT COUNT(*) FROM legacy.opportunities WHERE is_deleted = 1")
    migrated = one(
        db,
        """SELECT COUNT(*) FROM legacy.opportunities o JOIN deals d ON d.legacy_uid = o.opp_guid
        WHERE o.is_deleted = 1""",
    )
    assert (deleted, migrated) == (max(25, N // 200), 0) == (facts["soft_deleted"], 0)


def test_new_business_after_the_cutover_has_no_legacy_uid(db):
    new = db.execute(
        "SELECT MIN(created_at), MAX(created_at), COUNT(*) FROM deals "
        "WHERE legacy_uid IS NULL AND created_at >= ?",
        (CUTOVER_UTC,),
    ).fetchone()
    assert new[0] >= "2026-01-06" and new[1] < "2026-01-20" and new[2] == 40


def test_closed_deals_are_inactive_with_the_probability_the_mapping_sets(db):
    wrong = one(
        db,
        """SELECT COUNT(*) FROM deals JOIN deal_stages s ON s.id = stage_id
        WHERE (code = 'closed_won' AND (is_active, probability) IS NOT (0, 100))
           OR (code = 'closed_lost' AND (is_active, probability) IS NOT (0, 0))
           OR (code NOT LIKE 'closed%' AND (is_active IS NOT 1 OR probability NOT BETWEEN 10 AND 90))
           OR archived <> 0""",
    )
    assert wrong == 0


def test_the_legacy_data_has_the_variety_the_mapping_must_handle(db):
    def count(where: str) -> int:
        return one(
            db, f"SELECT COUNT(*) FROM legacy.opportunities WHERE is_deleted = 0 AND {where}"
        )

    assert 0.01 * N < count("name <> trim(name)") < 0.05 * N
    assert all(count(f"contact_phone = '{token}'") > 0 for token in ("", "N/A", "无"))
    assert count("contact_phone LIKE '% %'") > 0 and count("contact_phone LIKE '%-%'") > 0
    assert count("owner = 'li.na'") > 2 and count("owner = 'chen.jie'") > 0
    assert count("stage = 'S0'") == 20
    assert 0.2 * N < count("stage IN ('WON', 'LOST')") < 0.3 * N
    assert count("tags LIKE '%^2025Q4_%'") >= 48 + 1
    assert count("tags LIKE '%^2025Q4_双十一促销^,^2025Q4_年终冲刺^%'") > 0
    assert count("tags LIKE '%^重点客户^,^KA^%'") > 0
    assert count("created_at < '2023-01-01' OR created_at >= '2026-01-04'") == 0


def test_the_lookups_follow_the_new_crm_dictionary(db):
    fields = yaml.safe_load((REPO / "data_dictionary/new_crm.yaml").read_text("utf-8"))
    fields = fields["entities"]["deal"]["fields"]
    stages = db.execute("SELECT id, code, name_i18n FROM deal_stages ORDER BY id").fetchall()
    assert [(i, code) for i, code, _ in stages] == list(enumerate(fields["stage"]["codes"], 1))
    for _, code, names in stages:
        assert json.loads(names) == fields["stage"]["codes"][code]["labels"]
    labels = [code for (code,) in db.execute("SELECT code FROM labels ORDER BY id")]
    assert labels == list(fields["labels"]["codes"])
    for code in EXPIRED_LABELS:
        assert str(fields["labels"]["codes"][code]["valid_until"]) < CUTOVER_UTC


def test_the_expectations_here_follow_the_mapping_file():
    mapping = yaml.safe_load((REPO / "mappings/legacy_to_new.yaml").read_text("utf-8"))
    fields = {f.get("source"): f for f in mapping["entities"]["opportunity"]["fields"]}

    def targets(values: dict) -> dict:
        return {k: v["to"] if isinstance(v, dict) else v for k, v in values.items()}

    assert targets(fields["stage"]["values"]) == STAGES
    assert targets(fields["quotation_status"]["values"]) == QUOTES
    assert fields["owner"]["values"] == OWNERS
    tags = fields["tags"]["tags"]
    merged = {tag: label for label, tags in tags["merge"].items() for tag in tags}
    assert tags["rename"] | merged == TAGS


def test_rebuilding_replaces_the_files_and_leaves_no_temporary_files(tmp_path):
    first = demo.build_demo(tmp_path, n=1000, seed=3)
    second = demo.build_demo(tmp_path, n=1000, seed=4)
    assert first["seed"] != second["seed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legacy_crm.sqlite", "new_crm.sqlite"]
    con = sqlite3.connect(tmp_path / "legacy_crm.sqlite")
    assert con.execute("SELECT COUNT(*) FROM opportunities").fetchone()[0] == 1025
    con.close()


def test_the_command_line_prints_the_facts_as_json(tmp_path, capsys):
    assert demo.main([str(tmp_path), "--n", "1000", "--seed", "5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n"] == 1000 and printed["seed"] == 5
    assert printed["expected"]["state_mismatch"] == 48


def test_fewer_than_a_thousand_opportunities_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 1000"):
        demo.build_demo(tmp_path, n=999)
    assert list(tmp_path.iterdir()) == []
