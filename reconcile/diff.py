"""The UID-keyed diff of one mapped entity: typed findings from two extracted sides.

Records are matched on their link key (a shared UID, a crosswalk, or a natural key). Keys that are
missing or duplicated on either side are reported and kept out of the comparison, since any field
difference on them would be a guess. Matched pairs are compared field by field against the
projection of the old record, with the mapping's tolerances; tags are compared as sets.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from . import findings as fz
from .dictionary.model import Entity, Field
from .extract import ROW_ID, Extracted
from .extract.types import as_text
from .mapping.model import EntityMap, Tolerance
from .normalize import Projection


def diff_entity(
    name: str,
    emap: EntityMap,
    src: Extracted,
    tgt: Extracted,
    src_key: pd.Series,
    tgt_key: pd.Series,
    proj: Projection,
    src_entity: Entity,
    tgt_entity: Entity,
    as_of: dt.date,
) -> tuple[list[pd.DataFrame], np.ndarray, np.ndarray]:
    """(findings in parts, source rows and target rows of the matched pairs)."""
    S, T = src.frame, tgt.frame
    out: list[pd.DataFrame] = []
    new_business = _after_cutover(emap, T)

    s_null, t_null = src_key.isna(), tgt_key.isna()
    out.append(
        fz.make(
            name,
            "missing_uid",
            source_id=S.loc[s_null, ROW_ID],
            suggestion="give this record its UID so it can be matched",
        )
    )
    t_orphan = t_null & ~new_business
    out.append(
        fz.make(
            name,
            "missing_uid",
            target_id=T.loc[t_orphan, ROW_ID],
            suggestion="set the link field to the old record's UID",
        )
    )

    # Keys as integer codes: matching, duplicates and one-sided records are array lookups.
    codes, uniques = pd.factorize(
        pd.concat([src_key, tgt_key], ignore_index=True), use_na_sentinel=True
    )
    uniques = np.asarray(uniques, dtype=object)
    s_code, t_code = codes[: len(S)], codes[len(S) :]
    s_count = np.bincount(s_code[s_code >= 0], minlength=len(uniques))
    t_count = np.bincount(t_code[t_code >= 0], minlength=len(uniques))
    for side, code, count, frame in (
        ("source", s_code, s_count, S),
        ("target", t_code, t_count, T),
    ):
        dup = (code >= 0) & (count[np.maximum(code, 0)] > 1)
        if dup.any():
            ids = (
                frame.loc[dup, ROW_ID]
                .groupby(uniques[code[dup]], sort=True)
                .agg(lambda v: ",".join(sorted(v)))  # not read order: the fingerprint must not move
            )
            out.append(
                fz.make(
                    name,
                    "duplicate_uid",
                    uid=pd.Series(ids.index),
                    **{f"{side}_id": pd.Series(ids.to_numpy())},
                    suggestion="merge the duplicates by hand; nothing is deleted automatically",
                )
            )
    single = (s_count <= 1) & (t_count <= 1)  # a key on both sides at most once
    s_ok = np.flatnonzero((s_code >= 0) & single[np.maximum(s_code, 0)])
    t_ok = np.flatnonzero((t_code >= 0) & single[np.maximum(t_code, 0)])
    target_row = np.full(len(uniques), -1)
    target_row[t_code[t_ok]] = t_ok
    in_source = np.zeros(len(uniques), dtype=bool)
    in_source[s_code[s_ok]] = True

    found = target_row[s_code[s_ok]]
    lost = s_ok[found < 0]
    out.append(
        fz.make(
            name,
            "missing_in_target",
            uid=pd.Series(uniques[s_code[lost]], dtype="string"),
            source_id=S[ROW_ID].iloc[lost].reset_index(drop=True),
            suggestion=f"insert the record into {emap.target}",
        )
    )
    extra = t_ok[~in_source[t_code[t_ok]]]
    extra = extra[~new_business.iloc[extra].to_numpy()]
    out.append(
        fz.make(
            name,
            "unexpected_in_target",
            uid=pd.Series(uniques[t_code[extra]], dtype="string"),
            target_id=T[ROW_ID].iloc[extra].reset_index(drop=True),
            suggestion="check why it exists: the old system has no such record",
        )
    )

    rs, rt = s_ok[found >= 0], found[found >= 0]
    keys = pd.Series(uniques[s_code[rs]], dtype="string")
    pairs = pd.DataFrame({"k": keys, "rs": rs, "rt": rt})
    ids = {
        "uid": keys,
        "source_id": S[ROW_ID].iloc[rs].reset_index(drop=True),
        "target_id": T[ROW_ID].iloc[rt].reset_index(drop=True),
    }

    target_of = pd.Series(T[ROW_ID].iloc[rt].to_numpy(), index=rs)
    for kind, flagged in (
        ("unmapped_value", proj.unmapped),
        ("unparseable_value", proj.unparseable),
    ):
        for target, source, rows, raw in flagged:
            out.append(_source_side(name, kind, S, src_key, target_of, target, source, rows, raw))

    invalid_done = set()
    for exp in proj.expectations:
        tfield = tgt_entity.fields[exp.target]
        actual = T[exp.target]
        t_bad = tgt.bad.get(exp.target, pd.Series(False, index=T.index))
        invalid = _invalid(actual, tfield, as_of) & ~t_bad
        if exp.target not in invalid_done:
            invalid_done.add(exp.target)
            out.append(
                _target_rows(
                    name,
                    "invalid_value",
                    T,
                    tgt_key,
                    exp.target,
                    invalid,
                    actual,
                    "replace it with a valid code",
                    tfield,
                )
            )
            out.append(
                _target_rows(
                    name,
                    "unparseable_value",
                    T,
                    tgt_key,
                    exp.target,
                    t_bad,
                    tgt.raw.get(exp.target, actual),
                    "fix the value in the new system",
                )
            )
        e = exp.expected.iloc[rs].reset_index(drop=True)
        a = actual.iloc[rt].reset_index(drop=True)
        check = (
            exp.compare.iloc[rs].to_numpy()
            & ~t_bad.iloc[rt].to_numpy()
            & ~invalid.iloc[rt].to_numpy()
        )
        differs = pd.Series(check, index=e.index) & ~_equal(e, a, tfield, exp.tolerance)
        if not differs.any():
            continue
        sfield = src_entity.fields[exp.source]
        old = render(S[exp.source].iloc[rs].reset_index(drop=True)[differs], sfield)
        want = render(e[differs], tfield)
        got = render(a[differs], tfield)
        kind = "state_mismatch" if exp.role == "state" else "value_mismatch"
        out.append(
            fz.make(
                name,
                kind,
                **{k: v[differs] for k, v in ids.items()},
                field=exp.target,
                old_value=old,
                expected_value=want,
                actual_value=got,
                suggestion=("set " + exp.target + " to " + want.fillna("(empty)")),
                derivation=(
                    exp.derivation + ": " + old.fillna("(empty)") + " → " + want.fillna("(empty)")
                ),
            )
        )

    for target, expected_tags in proj.tags.items():
        out.extend(
            _tags(
                name,
                target,
                expected_tags,
                tgt.tags[target],
                pairs,
                S,
                T,
                tgt_key,
                tgt_entity.fields[target],
                as_of,
            )
        )
    return out, rs, rt


def _after_cutover(emap: EntityMap, T: pd.DataFrame) -> pd.Series:
    if emap.cutover is None:
        return pd.Series(False, index=T.index)
    created = T[emap.cutover.field]
    at = pd.Timestamp(emap.cutover.at)
    if getattr(created.dt, "tz", None) is None:
        at = at.tz_convert("UTC").tz_localize(None)
    return (created >= at).fillna(False).astype(bool)


def _source_side(name, kind, S, src_key, target_of, target, source, rows, raw):
    rows = rows.astype(int).to_numpy()
    what = (
        "map it in the mapping (values, drop or unmapped)"
        if kind == "unmapped_value"
        else "fix the value in the old system"
    )
    return fz.make(
        name,
        kind,
        uid=src_key.iloc[rows].reset_index(drop=True),
        source_id=S[ROW_ID].iloc[rows].reset_index(drop=True),
        target_id=pd.Series(target_of.reindex(rows).to_numpy(), dtype="string"),
        field=target,
        old_value=raw.astype("string").reset_index(drop=True),
        suggestion=what,
        derivation=f"{source} → {target}",
    )


def _target_rows(name, kind, T, tgt_key, field, mask, values, suggestion, fdef=None):
    """Findings about target records alone; values are rendered only where `mask` holds."""
    if not mask.any():
        return fz.empty()
    shown = render(values[mask], fdef) if fdef is not None else values[mask].astype("string")
    return fz.make(
        name,
        kind,
        uid=tgt_key[mask].reset_index(drop=True),
        target_id=T.loc[mask, ROW_ID].reset_index(drop=True),
        field=field,
        actual_value=shown.reset_index(drop=True),
        suggestion=suggestion,
    )


def _invalid(values: pd.Series, f: Field, as_of: dt.date) -> pd.Series:
    """Values the target dictionary does not allow: unknown codes, expired temporary codes."""
    if f.kind.name != "enum":
        return pd.Series(False, index=values.index)
    return values.notna() & ~values.isin(valid_codes(f, as_of))


def valid_codes(f: Field, as_of: dt.date) -> list[str]:
    return [
        c
        for c, d in f.codes.items()
        if not (d.temporary and d.valid_until and d.valid_until < as_of)
    ]


def _equal(e: pd.Series, a: pd.Series, f: Field, tol: Tolerance | None) -> pd.Series:
    both_missing = e.isna() & a.isna()
    kind = f.kind.name
    if kind in ("integer", "decimal"):
        diff = (e.astype("Float64") - a.astype("Float64")).abs()
        limit = pd.Series(0.0, index=e.index)
        if tol is not None:
            limit = limit.clip(lower=tol.absolute or 0.0)
            if tol.relative:
                limit = np.maximum(limit, a.astype("Float64").abs().fillna(0) * tol.relative)
        elif kind == "decimal":
            limit += 0.5 * 10.0 ** -(f.kind.scale or 0)
        same = diff <= limit + 1e-9
    elif kind in ("date", "datetime"):
        seconds = (e - a).abs().dt.total_seconds()
        same = seconds <= (tol.seconds if tol and tol.seconds else 0)
    else:
        same = e == a
    return same.fillna(False).astype(bool) | both_missing


def render(values: pd.Series, f: Field) -> pd.Series:
    """Typed values as the text findings and worksheets show."""
    kind = f.kind.name
    if kind == "date":
        text = values.dt.strftime("%Y-%m-%d")
    elif kind == "datetime":
        text = values.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    elif kind == "decimal":
        scale = f.kind.scale or 0
        text = (
            values.astype("Float64")
            .round(scale)
            .map(lambda x: f"{x:.{scale}f}" if pd.notna(x) else pd.NA, na_action="ignore")
        )
    else:
        text = as_text(values)
    return text.astype("string")


def _tags(name, target, expected, actual, pairs, S, T, tgt_key, tfield: Field, as_of):
    """missing_tag, unexpected_tag and invalid_value for one tag field."""
    out = []
    valid = set(valid_codes(tfield, as_of)) if tfield.codes else None
    if valid is not None:
        bad = actual[~actual["tag"].isin(list(valid))]
        if len(bad):
            rows = bad["row"].to_numpy()
            out.append(
                fz.make(
                    name,
                    "invalid_value",
                    uid=tgt_key.iloc[rows].reset_index(drop=True),
                    target_id=T[ROW_ID].iloc[rows].reset_index(drop=True),
                    field=target,
                    actual_value=bad["tag"].reset_index(drop=True),
                    suggestion="remove tag "
                    + bad["tag"].reset_index(drop=True)
                    + " (not allowed by the dictionary, or expired)",
                )
            )
        actual = actual[actual["tag"].isin(list(valid))]
        expected = expected[expected["tag"].isin(list(valid))]
    link = pairs[["k", "rs", "rt"]]
    exp = expected.merge(link, left_on="row", right_on="rs")[["k", "rs", "rt", "tag", "old"]]
    act = actual.merge(link, left_on="row", right_on="rt")[["k", "rs", "rt", "tag"]]
    both = exp.merge(act, on=["k", "rs", "rt", "tag"], how="outer", indicator=True)
    for side, kind, verb in (
        ("left_only", "missing_tag", "add"),
        ("right_only", "unexpected_tag", "remove"),
    ):
        rows = both[both["_merge"] == side].reset_index(drop=True)
        if rows.empty:
            continue
        tag = rows["tag"].astype("string")
        out.append(
            fz.make(
                name,
                kind,
                uid=rows["k"].astype("string"),
                source_id=S[ROW_ID].iloc[rows["rs"].astype(int)].reset_index(drop=True),
                target_id=T[ROW_ID].iloc[rows["rt"].astype(int)].reset_index(drop=True),
                field=target,
                old_value=rows["old"].astype("string") if kind == "missing_tag" else None,
                expected_value=tag if kind == "missing_tag" else None,
                actual_value=tag if kind == "unexpected_tag" else None,
                suggestion=f"{verb} tag " + tag,
                derivation=("tag map: " + rows["old"].astype("string") + " → " + tag)
                if kind == "missing_tag"
                else None,
            )
        )
    return out


def transitions(
    proj: Projection, S: pd.DataFrame, T: pd.DataFrame, rs, rt
) -> dict[str, list[dict]]:
    """For each state field: how many matched records went from each old code to each new code,
    with the code the mapping expects, so a report can show the expected diagonal and the rest."""
    out = {}
    for exp in proj.expectations:
        if exp.role != "state":
            continue
        frame = pd.DataFrame(
            {
                "old": as_text(S[exp.source].iloc[rs]).fillna("∅").to_numpy(),
                # "?" where the mapping expects nothing (an unmapped or dropped code)
                "expected": as_text(exp.expected.iloc[rs])
                .fillna("∅")
                .where(exp.compare.iloc[rs].to_numpy(), "?")
                .to_numpy(),
                "actual": as_text(T[exp.target].iloc[rt]).fillna("∅").to_numpy(),
            }
        )
        counts = frame.groupby(["old", "expected", "actual"], sort=True).size()
        out[exp.target] = [
            {"old": o, "expected": e, "actual": a, "count": int(n)}
            for (o, e, a), n in counts.items()
        ]
    return out
