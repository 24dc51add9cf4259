"""The UID-keyed diff of one mapped entity: typed findings from two extracted sides.

Records are matched on their link key (a shared UID, a crosswalk, or a natural key). Keys that are
missing or duplicated on either side are reported and kept out of the comparison, since any field
difference on them would be a guess. Matched pairs are compared field by field against the
projection of the old record, with the mapping's tolerances; tags are compared as sets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import findings as fz
from .dictionary.model import Entity, Field
from .extract import ROW_ID, Extracted
from .extract.types import arrow_text, as_text
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

    values = {
        id(exp): (exp.expected, T[exp.target], tgt_entity.fields[exp.target], exp.tolerance)
        for exp in proj.expectations
    }
    m = match(src_key, tgt_key, values)
    for side, dup, key, frame in (
        ("source", m.s_dup, src_key, S),
        ("target", m.t_dup, tgt_key, T),
    ):
        if len(dup):
            ids = (
                frame[ROW_ID]
                .iloc[dup]
                .groupby(key.iloc[dup].to_numpy(), sort=True)
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
    out.append(
        fz.make(
            name,
            "missing_in_target",
            uid=src_key.iloc[m.lost].reset_index(drop=True),
            source_id=S[ROW_ID].iloc[m.lost].reset_index(drop=True),
            suggestion=f"insert the record into {emap.target}",
        )
    )
    extra = m.extra[~new_business.iloc[m.extra].to_numpy()]
    out.append(
        fz.make(
            name,
            "unexpected_in_target",
            uid=tgt_key.iloc[extra].reset_index(drop=True),
            target_id=T[ROW_ID].iloc[extra].reset_index(drop=True),
            suggestion="check why it exists: the old system has no such record",
        )
    )

    rs, rt = m.rs, m.rt

    def ids(where: np.ndarray) -> dict[str, pd.Series]:
        """uid, source and target id of the matched pairs at `where`."""
        return {
            "uid": src_key.iloc[rs[where]].reset_index(drop=True),
            "source_id": S[ROW_ID].iloc[rs[where]].reset_index(drop=True),
            "target_id": T[ROW_ID].iloc[rt[where]].reset_index(drop=True),
        }

    if proj.unmapped or proj.unparseable:
        partner = np.full(len(S), -1)  # the target row matched to each source row
        partner[rs] = rt
        for kind, flagged in (
            ("unmapped_value", proj.unmapped),
            ("unparseable_value", proj.unparseable),
        ):
            for target, source, rows, raw in flagged:
                out.append(
                    _source_side(name, kind, S, T, src_key, partner, target, source, rows, raw)
                )

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
        # the few pairs that differ, less those not to compare: no expectation, unreadable or
        # invalid in the target (reported above)
        differs = np.flatnonzero(m.unequal[id(exp)])
        r_s, r_t = rs[differs], rt[differs]
        check = exp.compare.to_numpy()[r_s] & ~t_bad.to_numpy()[r_t] & ~invalid.to_numpy()[r_t]
        differs = differs[check]
        if not len(differs):
            continue
        sfield = src_entity.fields[exp.source]
        old = render(S[exp.source].iloc[rs[differs]].reset_index(drop=True), sfield)
        want = render(exp.expected.iloc[rs[differs]].reset_index(drop=True), tfield)
        got = render(actual.iloc[rt[differs]].reset_index(drop=True), tfield)
        kind = "state_mismatch" if exp.role == "state" else "value_mismatch"
        out.append(
            fz.make(
                name,
                kind,
                **ids(differs),
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
                rs,
                rt,
                src_key,
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


def _source_side(name, kind, S, T, src_key, partner, target, source, rows, raw):
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
        target_id=_at(T[ROW_ID], partner[rows]),
        field=target,
        old_value=raw.astype("string").reset_index(drop=True),
        suggestion=what,
        derivation=f"{source} → {target}",
    )


def _at(values: pd.Series, rows: np.ndarray) -> pd.Series:
    """values at positions `rows`; NA where a row is -1."""
    got = values.iloc[np.maximum(rows, 0)].reset_index(drop=True).astype("string")
    return got.mask(rows < 0)


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


def _differs(s: str, t: str, f: Field, tol: Tolerance | None) -> str:
    """SQL: do the expected value `s` and the actual `t` of field `f` differ beyond the tolerance?
    Missing on both sides is equal, on one side a difference. Without a tolerance a decimal may
    differ by half its last place (rounding), anything else not at all."""
    kind = f.kind.name
    if kind in ("integer", "decimal"):
        limit = "0.0"
        if tol is not None:
            limit = repr(max(0.0, float(tol.absolute or 0.0)))
            if tol.relative:
                limit = f"greatest({limit}, abs({t}::DOUBLE) * {float(tol.relative)!r})"
        elif kind == "decimal":
            limit = repr(0.5 * 10.0 ** -(f.kind.scale or 0))
        far = f"abs({s}::DOUBLE - {t}::DOUBLE) > {limit} + 1e-9"
    elif kind in ("date", "datetime"):
        seconds = float(tol.seconds if tol and tol.seconds else 0)
        far = f"abs(epoch_us({s}) - epoch_us({t})) / 1e6 > {seconds!r}"
    else:
        return f"{s} IS DISTINCT FROM {t}"
    return f"CASE WHEN {s} IS NULL AND {t} IS NULL THEN false WHEN {s} IS NULL OR {t} IS NULL THEN true ELSE {far} END"


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


def _tags(name, target, expected, actual, rs, rt, src_key, S, T, tgt_key, tfield: Field, as_of):
    """missing_tag, unexpected_tag and invalid_value for one tag field."""
    out = []
    valid = set(valid_codes(tfield, as_of)) if tfield.codes else None
    if valid is not None:
        allowed = actual["tag"].isin(list(valid)).to_numpy(dtype=bool)
        bad = actual[~allowed]
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
        actual = actual[allowed]
        expected = expected[expected["tag"].isin(list(valid))]
    expected = expected[expected["tag"].notna().to_numpy()]  # a missing tag is no tag
    actual = actual[actual["tag"].notna().to_numpy()]
    # (matched pair, tag) as one integer per side: the comparison is two set differences
    pair_of_s = np.full(len(S), -1)
    pair_of_s[rs] = np.arange(len(rs))
    pair_of_t = np.full(len(T), -1)
    pair_of_t[rt] = np.arange(len(rt))
    e_pair = pair_of_s[expected["row"].to_numpy()]
    a_pair = pair_of_t[actual["row"].to_numpy()]
    tag_code, tags = pd.factorize(pd.concat([expected["tag"], actual["tag"]], ignore_index=True))
    e_code = e_pair * len(tags) + tag_code[: len(expected)]
    a_code = a_pair * len(tags) + tag_code[len(expected) :]
    e_code, a_code = e_code[e_pair >= 0], a_code[a_pair >= 0]
    for kind, verb, codes, other, rows in (
        ("missing_tag", "add", e_code, a_code, expected[e_pair >= 0]),
        ("unexpected_tag", "remove", a_code, e_code, actual[a_pair >= 0]),
    ):
        alone = np.flatnonzero(~pd.Series(codes).isin(other).to_numpy())
        if not len(alone):
            continue
        pair = codes[alone] // len(tags)
        tag = pd.Series(np.asarray(tags, dtype=object)[codes[alone] % len(tags)], dtype="string")
        old = rows["old"].iloc[alone].reset_index(drop=True) if kind == "missing_tag" else None
        out.append(
            fz.make(
                name,
                kind,
                uid=src_key.iloc[rs[pair]].reset_index(drop=True),
                source_id=S[ROW_ID].iloc[rs[pair]].reset_index(drop=True),
                target_id=T[ROW_ID].iloc[rt[pair]].reset_index(drop=True),
                field=target,
                old_value=old.astype("string") if old is not None else None,
                expected_value=tag if kind == "missing_tag" else None,
                actual_value=tag if kind == "unexpected_tag" else None,
                suggestion=f"{verb} tag " + tag,
                derivation=("tag map: " + old.astype("string") + " → " + tag)
                if old is not None
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
        # three low-cardinality columns as one integer per matched pair, counted
        combined, width, labels = np.zeros(len(rs), dtype=np.int64), 1, []
        for column, rows, expects in (
            (S[exp.source], rs, None),
            (exp.expected, rs, exp.compare.to_numpy()[rs]),
            (T[exp.target], rt, None),
        ):
            code, names = codes(column)
            names = np.append(names, ["∅", "?"])  # missing; "?": the mapping expects nothing
            code = np.where(code[rows] < 0, len(names) - 2, code[rows])
            if expects is not None:
                code = np.where(expects, code, len(names) - 1)
            combined += code * width
            width *= len(names)
            labels.append(names)
        cells, counts = np.unique(combined, return_counts=True)
        rows = []
        for cell, n in zip(cells.tolist(), counts.tolist(), strict=True):
            parts = []
            for names in labels:
                parts.append(str(names[cell % len(names)]))
                cell //= len(names)
            rows.append({"old": parts[0], "expected": parts[1], "actual": parts[2], "count": n})
        out[exp.target] = sorted(rows, key=lambda r: (r["old"], r["expected"], r["actual"]))
    return out


def codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A column as text, coded by Arrow's hash table: the codes (-1 for missing) and the labels.
    A categorical is coded already."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        cat = column.cat
        labels = as_text(pd.Series(cat.categories)).to_numpy(dtype=object)
        return cat.codes.to_numpy().astype(np.int64), labels
    encoded = pc.dictionary_encode(arrow_text(as_text(column)))
    labels = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
    return encoded.indices.fill_null(-1).to_numpy().astype(np.int64), labels


@dataclass
class Match:
    """How the link keys of two sides pair up, as row positions."""

    rs: np.ndarray  # matched pairs: source rows, ascending
    rt: np.ndarray  # and their target rows
    lost: np.ndarray  # source rows whose key the target lacks
    extra: np.ndarray  # target rows whose key the source lacks
    s_dup: np.ndarray  # rows whose key occurs twice or more on their own side
    t_dup: np.ndarray
    unequal: dict = field(default_factory=dict)  # name -> do the pairs' values differ


def match(src_key: pd.Series, tgt_key: pd.Series, values: dict | None = None) -> Match:
    """Pair records by key. A key found more than once on a side matches nothing, since any
    comparison would be a guess; keyless records take no part. `values` maps a name to (source
    column, target column, target field, tolerance) to compare on the way: Match.unequal has, per
    name, whether the matched pairs differ (see _differs).

    One full outer join in DuckDB (a hash join on both cores) pairs the keys and compares the
    values in the same pass. A key repeated on one side shows in the join as a row of the other
    side paired more than once, or, unpaired, among the few rows left alone.
    """
    values = values or {}
    names = {name: f"v{i}" for i, name in enumerate(values)}

    def table(key, side):
        columns = {"k": pa.array(key.array, type=pa.large_string()), "r": np.arange(len(key))}
        for name, col in names.items():
            columns[col] = _arrow_value(values[name][side])
        return pa.table(columns)

    # which values differ, as the bits of one integer per pair (62 values to an integer)
    words: dict[str, list[str]] = {}
    for i, (name, c) in enumerate(names.items()):
        differs = _differs(f"s.{c}", f"t.{c}", *values[name][2:])
        words.setdefault(f"d{i // 62}", []).append(
            f"(CASE WHEN {differs} THEN {1 << (i % 62)} ELSE 0 END)"
        )
    flags = "".join(f", {' + '.join(bits)} AS {word}" for word, bits in words.items())
    con = duckdb.connect(config={"preserve_insertion_order": False})  # the pairs are sorted here
    try:
        con.register("s", table(src_key, 0))
        con.register("t", table(tgt_key, 1))
        joined = con.sql(
            f"SELECT coalesce(s.r, -1) AS rs, coalesce(t.r, -1) AS rt{flags} "
            "FROM (FROM s WHERE k IS NOT NULL) s "
            "FULL OUTER JOIN (FROM t WHERE k IS NOT NULL) t ON s.k = t.k"
        ).to_arrow_table()
    finally:
        con.close()
    s_rows, t_rows = joined["rs"].to_numpy(), joined["rt"].to_numpy()
    has_s, has_t = s_rows >= 0, t_rows >= 0
    both = has_s & has_t
    s_alone, t_alone = s_rows[has_s & ~has_t], t_rows[has_t & ~has_s]
    s_dup, t_dup = _repeated(src_key, s_alone), _repeated(tgt_key, t_alone)
    pairs = np.flatnonzero(both)
    s_paired = s_rows[pairs]
    if has_s.sum() != src_key.notna().sum() or has_t.sum() != tgt_key.notna().sum():
        # some row was paired more than once: its key is on the other side more than once
        t_paired = t_rows[pairs]
        s_times = np.bincount(s_paired, minlength=len(src_key))[s_paired]  # target rows, its key
        t_times = np.bincount(t_paired, minlength=len(tgt_key))[t_paired]  # source rows, its key
        s_dup = np.union1d(s_paired[t_times > 1], s_dup)
        t_dup = np.union1d(t_paired[s_times > 1], t_dup)
        once = (t_times == 1) & (s_times == 1)
        pairs, s_paired = pairs[once], s_paired[once]
    # source rows of the pairs are distinct: placing them by row number sorts them in O(n)
    slot = np.full(len(src_key), -1)
    slot[s_paired] = pairs
    placed = slot >= 0
    pairs = slot[placed]
    bits = {word: joined[word].to_numpy()[pairs] for word in words}
    unequal = {name: (bits[f"d{i // 62}"] >> (i % 62)) & 1 == 1 for i, name in enumerate(names)}
    return Match(
        rs=np.flatnonzero(placed),
        rt=t_rows[pairs],
        lost=np.setdiff1d(s_alone, s_dup),
        extra=np.setdiff1d(t_alone, t_dup),
        s_dup=s_dup.astype(np.int64),
        t_dup=t_dup.astype(np.int64),
        unequal=unequal,
    )


def _arrow_value(values: pd.Series) -> pa.Array:
    """A typed column as Arrow; text as large strings, a categorical dictionary-encoded."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        labels = pa.array(as_text(pd.Series(values.cat.categories)).array, type=pa.large_string())
        return pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), labels)
    if pd.api.types.is_string_dtype(values.dtype):
        return pa.array(as_text(values).array, type=pa.large_string())
    return pa.array(values.array)


def _repeated(key: pd.Series, rows: np.ndarray) -> np.ndarray:
    """Those of `rows` whose key occurs more than once among them, in order."""
    return np.sort(rows[key.iloc[rows].duplicated(keep=False).to_numpy()])
