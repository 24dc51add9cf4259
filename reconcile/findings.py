"""The finding: one typed record per defect, kept as rows of one DataFrame for speed.

Every renderer (CSV, JSON, worksheet, summary, history) reads the same columns. A fingerprint
names the defect, not the run: the same record, field and expected value give the same
fingerprint every night, so a defect can be followed from run to run.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import pandas as pd

KINDS = (
    "missing_in_target",
    "unexpected_in_target",
    "duplicate_uid",
    "missing_uid",
    "state_mismatch",
    "value_mismatch",
    "missing_tag",
    "unexpected_tag",
    "unmapped_value",
    "invalid_value",
    "unparseable_value",
)

SEVERITY = {
    "missing_in_target": "high",
    "unexpected_in_target": "medium",
    "duplicate_uid": "high",
    "missing_uid": "high",
    "state_mismatch": "high",
    "value_mismatch": "medium",
    "missing_tag": "medium",
    "unexpected_tag": "low",
    "unmapped_value": "high",
    "invalid_value": "medium",
    "unparseable_value": "medium",
}

COLUMNS = (
    "fingerprint",
    "entity",
    "kind",
    "severity",
    "uid",
    "source_id",
    "target_id",
    "field",
    "old_value",
    "expected_value",
    "actual_value",
    "suggestion",
    "derivation",
    "status",  # open, or accepted: a difference reviewers agreed to keep (see reconcile apply)
)

# What, besides entity, kind, record and field, makes a defect the same defect.
_IDENTITY = {
    "state_mismatch": ("expected_value",),
    "value_mismatch": ("expected_value",),
    "missing_tag": ("expected_value",),
    "unexpected_tag": ("actual_value",),
    "invalid_value": ("actual_value",),
    "unmapped_value": ("old_value",),
    "unparseable_value": ("old_value", "actual_value"),
    "duplicate_uid": ("source_id", "target_id"),
}


@dataclass(frozen=True)
class Finding:
    """One defect: which record, which field, what the old system meant and the new one says."""

    fingerprint: str
    entity: str
    kind: str
    severity: str
    uid: str | None
    source_id: str | None
    target_id: str | None
    field: str | None
    old_value: str | None
    expected_value: str | None
    actual_value: str | None
    suggestion: str | None
    derivation: str | None
    status: str = "open"

    def to_dict(self) -> dict:
        return asdict(self)


_EMPTY = pd.DataFrame({c: pd.Series(dtype="string") for c in COLUMNS})


def empty() -> pd.DataFrame:
    return _EMPTY.copy()


def make(entity: str, kind: str, **columns) -> pd.DataFrame:
    """Findings of one kind from columns of equal length (scalars are broadcast)."""
    lengths = {len(v) for v in columns.values() if isinstance(v, pd.Series | list)}
    n = lengths.pop() if lengths else 1
    if n == 0:
        return empty()
    given = {"entity": entity, "kind": kind, "severity": SEVERITY[kind], "status": "open"}
    data = {}
    for col in COLUMNS[1:]:
        value = given.get(col, columns.get(col))
        if isinstance(value, pd.Series):
            value = value.to_numpy(dtype=object, na_value=None)
        elif not isinstance(value, list):
            value = [value] * n
        data[col] = pd.array(value, dtype="string")
    return pd.DataFrame(data)


def finish(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """All findings with fingerprints, in a deterministic order."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty()
    frame = pd.concat(parts, ignore_index=True).astype("string")
    frame["fingerprint"] = _fingerprints(frame)
    order = {k: i for i, k in enumerate(KINDS)}
    frame["_k"] = frame["kind"].map(order)
    frame = frame.sort_values(
        [
            "entity",
            "_k",
            "uid",
            "source_id",
            "target_id",
            "field",
            "expected_value",
            "actual_value",
            "fingerprint",
        ],
        na_position="first",
        kind="stable",
    )
    return frame.drop(columns="_k").reset_index(drop=True)[list(COLUMNS)]


def _fingerprints(frame: pd.DataFrame) -> pd.Series:
    record = (
        frame["uid"].fillna("source:" + frame["source_id"]).fillna("target:" + frame["target_id"])
    )
    parts = [frame["entity"], frame["kind"], record.fillna(""), frame["field"].fillna("")]
    extra = pd.Series("", index=frame.index, dtype="string")
    for kind, cols in _IDENTITY.items():
        rows = frame["kind"] == kind
        for col in cols:
            extra[rows] = extra[rows] + "\x1f" + frame.loc[rows, col].fillna("")
    key = parts[0]
    for p in [*parts[1:], extra]:
        key = key + "\x1f" + p
    return pd.Series(
        [hashlib.blake2b(k.encode(), digest_size=8).hexdigest() for k in key],
        index=frame.index,
        dtype="string",
    )


def records(frame: pd.DataFrame):
    """The findings as Finding objects (for small sets: samples, tests, notebooks)."""
    for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False):
        yield Finding(*row)
