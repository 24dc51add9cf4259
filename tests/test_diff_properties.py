"""Properties of the diff: a faithful copy yields nothing; injected defects are found exactly."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.project import load_project
from reconcile.run import run_project
from tests.test_diff_cases import CASES_DIR, build

STAGE = {"A": "a", "B": "b", "W": "won"}
DEFECTS = ("missing_in_target", "state_mismatch", "value_mismatch", "missing_tag", "unexpected_tag")

record = st.fixed_dictionaries(
    {
        "stage": st.sampled_from(sorted(STAGE)),
        "cents": st.integers(0, 10**7),
        "closes": st.none() | st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)),
        "minutes": st.integers(0, 3 * 365 * 24 * 60),
        "tags": st.sets(st.sampled_from(["hot", "Q4"])),
    }
)


def migrate(records: list[dict]) -> tuple[list, list, list]:
    """The old rows and a faithful migration of them, written independently of the engine."""
    opps, deals, labels = [], [], []
    for i, r in enumerate(records):
        created = dt.datetime(2023, 1, 1, 8) + dt.timedelta(minutes=r["minutes"])
        opps.append(
            {
                "id": i,
                "uid": f"u{i}",
                "stage": r["stage"],
                "amount": r["cents"] / 100,
                "closes": r["closes"] and r["closes"].isoformat(),
                "created": created.strftime("%Y-%m-%d %H:%M:%S"),
                "deleted": 0,
                "tags": ";".join(sorted(r["tags"])),
            }
        )
        deals.append(
            {
                "id": 1000 + i,
                "legacy_uid": f"u{i}",
                "stage": STAGE[r["stage"]],
                "active": 0 if r["stage"] == "W" else 1,
                "amount": r["cents"] / 100,
                "closes": r["closes"] and r["closes"].isoformat(),
                "created": (created - dt.timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S"),
            }
        )
        labels += [{"deal_id": 1000 + i, "label": t.lower()} for t in sorted(r["tags"])]
    return opps, deals, labels


def findings_of(opps, deals, labels) -> set[tuple[str, str, str | None]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        shutil.copytree(CASES_DIR / "diff_project", root)
        build({"opps": opps}, root / "old.sqlite")
        build({"deals": deals, "deal_labels": labels}, root / "new.sqlite")
        found = run_project(load_project(root)).findings
    return {
        (k, u, f if f is not None and f == f else None)
        for k, u, f in found[["kind", "uid", "field"]]
        .astype(object)
        .where(found[["kind", "uid", "field"]].notna(), None)
        .itertuples(index=False)
    }


fast = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(st.lists(record, min_size=1, max_size=30))
def test_a_dataset_compared_with_its_faithful_migration_yields_nothing(records):
    assert findings_of(*migrate(records)) == set()


@fast
@given(st.lists(record, min_size=1, max_size=30), st.data())
def test_injected_differences_are_found_exactly_with_no_false_positives(records, data):
    opps, deals, labels = migrate(records)
    victims = data.draw(
        st.lists(st.sampled_from(range(len(records))), unique=True, max_size=len(records))
    )
    expected = set()
    for i in victims:
        kind = data.draw(st.sampled_from(DEFECTS))
        uid, deal = f"u{i}", deals[i]
        if kind == "missing_in_target":
            deal["id"] = None  # removed below
            labels[:] = [x for x in labels if x["deal_id"] != 1000 + i]
            expected.add((kind, uid, None))
        elif kind == "state_mismatch":
            deal["stage"] = {"a": "b", "b": "a", "won": "a"}[deal["stage"]]
            expected.add((kind, uid, "stage"))
            if records[i]["stage"] == "W":
                deal["active"] = 0  # keep the set field right: only the stage is injected
        elif kind == "value_mismatch":
            deal["amount"] = round(deal["amount"] + 5, 2)
            expected.add((kind, uid, "amount"))
        elif kind == "missing_tag" and records[i]["tags"]:
            gone = sorted(records[i]["tags"])[0].lower()
            labels[:] = [x for x in labels if not (x["deal_id"] == 1000 + i and x["label"] == gone)]
            expected.add((kind, uid, "labels"))
        elif kind == "unexpected_tag" and "hot" not in records[i]["tags"]:
            labels.append({"deal_id": 1000 + i, "label": "hot"})
            expected.add((kind, uid, "labels"))
    deals = [d for d in deals if d["id"] is not None]
    assert findings_of(opps, deals, labels) == expected


@fast
@given(st.lists(record, min_size=1, max_size=30), st.integers(2, 5))
def test_hash_partitions_never_change_the_findings(records, n):
    opps, deals, labels = migrate(records)
    deals = [d for i, d in enumerate(deals) if i % 4]  # some records lost
    for d in deals[::3]:
        d["stage"] = "won" if d["stage"] != "won" else "a"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        shutil.copytree(CASES_DIR / "diff_project", root)
        build({"opps": opps}, root / "old.sqlite")
        build({"deals": deals, "deal_labels": labels}, root / "new.sqlite")
        proj = load_project(root)
        whole, split = run_project(proj).findings, run_project(proj, partitions=n).findings
    assert split.to_dict(orient="records") == whole.to_dict(orient="records")


def test_more_texts_than_one_integer_has_bits_are_compared_each_on_its_own():
    from reconcile.dictionary.model import Field
    from reconcile.diff import match

    n, text = 70, Field.model_validate({"type": "string"})
    keys = pd.Series(["a", "b", "c"], dtype="string")
    texts = {
        f"f{i}": (
            pd.Series(["x", "y", None], dtype="string"),
            pd.Series(["x", "y" if i != 63 else "z", None], dtype="string"),
            text,
            None,
        )
        for i in range(n)
    }
    m = match(keys, keys, texts)
    differing = {name for name, flags in m.unequal.items() if flags.any()}
    assert differing == {"f63"} and list(m.unequal["f63"]) == [False, True, False]


def _field(spec: dict):
    from reconcile.dictionary.model import Field

    return Field.model_validate(spec)


def _tolerance(spec: dict | None):
    from reconcile.mapping.model import Tolerance

    return Tolerance.model_validate(spec) if spec else None


UTC = "datetime64[us, UTC]"
COMPARISONS = [
    # field type, tolerance, expected, actual, dtype, do they differ?
    ("decimal(10,2)", None, 10.0, 10.004, "Float64", False),  # half the last place: rounding
    ("decimal(10,2)", None, 10.0, 10.005, "Float64", False),
    ("decimal(10,2)", None, 10.0, 10.006, "Float64", True),
    ("decimal(10,2)", {"absolute": 0.01}, 1.0, 1.01, "Float64", False),
    ("decimal(10,2)", {"absolute": 0.01}, 1.0, 1.02, "Float64", True),
    ("decimal(10,2)", {"absolute": -1}, 1.0, 1.0, "Float64", False),  # a negative one is none
    ("decimal(10,2)", {"relative": 0.1}, 95.0, 100.0, "Float64", False),
    ("decimal(10,2)", {"relative": 0.1}, 89.0, 100.0, "Float64", True),
    ("integer", None, 5, 5, "Int64", False),
    ("integer", None, 5, 6, "Int64", True),
    ("integer", None, None, None, "Int64", False),
    ("integer", None, None, 6, "Int64", True),
    ("boolean", None, True, None, "boolean", True),
    ("boolean", None, None, None, "boolean", False),
    ("datetime", {"seconds": 1}, "2025-01-01 10:00:00", "2025-01-01 10:00:01", UTC, False),
    ("datetime", {"seconds": 1}, "2025-01-01 10:00:00", "2025-01-01 10:00:01.5", UTC, True),
    ("datetime", None, "2025-01-01 10:00:00", "2025-01-01 10:00:00.000001", UTC, True),
    ("date", None, "2025-01-01", "2025-01-01", "datetime64[us]", False),
    ("date", None, "2025-01-01", None, "datetime64[us]", True),
    ("enum", None, "won", "won", "string", False),
    ("string", None, "a", None, "string", True),
]


@pytest.mark.parametrize("kind, tol, expected, actual, dtype, differs", COMPARISONS)
def test_values_differ_only_beyond_their_field_tolerance(
    kind, tol, expected, actual, dtype, differs
):
    from reconcile.diff import match

    won = {"labels": {"zh": "赢单", "en": "Won"}}
    extra = {"enum": {"codes": {"won": won}}, "datetime": {"timezone": "UTC"}}.get(kind, {})
    field = _field({"type": kind, **extra})
    keys = pd.Series(["k"], dtype="string")
    pair = (pd.Series([expected], dtype=dtype), pd.Series([actual], dtype=dtype))
    m = match(keys, keys, {"v": (*pair, field, _tolerance(tol))})
    assert list(m.unequal["v"]) == [differs]
