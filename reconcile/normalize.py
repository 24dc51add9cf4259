"""Old records projected into the new system's terms: what each target field should hold.

For every field pair of a mapping entity this computes, per source record, the expected target
value (typed like the target field), whether it is to be compared at all, and how it was derived,
so that a finding can say "S4 (报价谈判) → negotiation by the stage value map".
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from .dictionary.model import Entity, Field
from .extract import Extracted
from .extract.types import all_false, as_text, coerce
from .mapping.model import EntityMap, FieldMap, Tolerance
from .mapping.transforms import apply_steps


@dataclass
class Expectation:
    """Expected values of one target field, for every source record."""

    target: str
    role: str
    source: str | None
    expected: pd.Series
    compare: pd.Series  # bool: is there an expectation for this record?
    derivation: str
    tolerance: Tolerance | None = None


@dataclass
class Projection:
    """Everything the mapping says the target should hold, and what could not be projected."""

    expectations: list[Expectation] = field(default_factory=list)
    tags: dict[str, pd.DataFrame] = field(
        default_factory=dict
    )  # target tag field -> (row, tag, old)
    # (target field, source field, source rows, their raw values)
    unmapped: list[tuple[str, str, pd.Series, pd.Series]] = field(default_factory=list)
    unparseable: list[tuple[str, str, pd.Series, pd.Series]] = field(default_factory=list)

    def flag(self, into: list, target: str, source: str, mask: pd.Series, raw: pd.Series) -> None:
        rows = mask[mask].index
        into.append((target, source, pd.Series(rows), raw.loc[rows].reset_index(drop=True)))


def project(emap: EntityMap, src: Extracted, src_entity: Entity, tgt_entity: Entity) -> Projection:
    """Field pairs are independent: they are projected two at a time (Arrow's string kernels let
    go of the GIL) and gathered in the mapping's order, so the result does not depend on it."""

    def one(fmap: FieldMap) -> Projection:
        part = Projection()
        if fmap.role == "tags":
            tfield = tgt_entity.fields[fmap.target]
            part.tags[fmap.target] = _tags(fmap, src.tags[fmap.source], tfield, part)
        else:
            _scalar(fmap, src, src_entity.fields[fmap.source], tgt_entity, part)
        return part

    out = Projection()
    with ThreadPoolExecutor(2) as pool:
        for part in pool.map(one, [f for f in emap.fields if f.role != "ignore"]):
            out.expectations += part.expectations
            out.tags.update(part.tags)
            out.unmapped += part.unmapped
            out.unparseable += part.unparseable
    return out


def _scalar(fmap: FieldMap, src: Extracted, sfield: Field, tgt_entity: Entity, out: Projection):
    tfield = tgt_entity.fields[fmap.target]
    values = src.frame[fmap.source]
    if fmap.source in src.bad:
        out.flag(
            out.unparseable, fmap.target, fmap.source, src.bad[fmap.source], src.raw[fmap.source]
        )
    values, bad = apply_steps(values, fmap.transforms, f"{fmap.source} → {fmap.target}")
    steps = " → ".join(s.chosen() for s in fmap.transforms)
    how = f"{fmap.source}" + (f" → {steps}" if steps else "")
    compare = pd.Series(True, index=values.index)
    if bad.any():
        out.flag(out.unparseable, fmap.target, fmap.source, bad, as_text(src.frame[fmap.source]))
        compare &= ~bad
    if fmap.source in src.bad:
        compare &= ~src.bad[fmap.source]
    if fmap.values or fmap.drop or sfield.kind.name == "enum":
        codes = as_text(values)
        distinct = Distinct(codes)
        u = distinct.values
        mapped = u.map({k: v.to for k, v in fmap.values.items() if v.to is not None})
        dropped = u.isin(fmap.drop)
        unmapped = u.notna() & ~u.isin(list(fmap.values)) & ~dropped
        if fmap.unmapped == "pass":
            mapped = mapped.where(~unmapped, u)
        elif fmap.unmapped == "default":
            mapped = mapped.where(~unmapped, fmap.default)
        elif unmapped.any():
            every = distinct.spread(unmapped)
            out.flag(out.unmapped, fmap.target, fmap.source, every, codes)
            compare &= ~every
        if dropped.any():
            compare &= ~distinct.spread(dropped)
        how += " → value map"
        _set_fields(fmap, distinct, tgt_entity, out)
        expected, bad_type = coerce(mapped, tfield)
        text = isinstance(expected.dtype, pd.StringDtype)
        expected = distinct.spread_text(expected) if text else distinct.spread(expected)
        bad_type = distinct.spread(bad_type) if bad_type.any() else all_false(values)
    else:
        distinct = None
        expected, bad_type = coerce(values, tfield)
    if bad_type.any():  # rare: only then are the mapped codes spread over every record
        shown = values if distinct is None else distinct.spread(mapped)
        out.flag(out.unparseable, fmap.target, fmap.source, bad_type, as_text(shown))
        compare &= ~bad_type
    out.expectations.append(
        Expectation(fmap.target, fmap.role, fmap.source, expected, compare, how, fmap.tolerance)
    )


class Distinct:
    """A column's distinct values, so that work on enum codes and value maps is done once per
    code and spread back over the records (a million records hold a dozen codes)."""

    def __init__(self, values: pd.Series):
        self.codes, uniques = pd.factorize(values, use_na_sentinel=False)
        self.values = pd.Series(uniques, dtype=values.dtype)
        self.index = values.index

    def spread(self, result: pd.Series) -> pd.Series:
        """A result computed on `values`, as one value per original record."""
        return pd.Series(result.array.take(self.codes), index=self.index)

    def spread_text(self, result: pd.Series) -> pd.Series:
        """A text result spread as a categorical: a dozen codes, not a million strings."""
        codes, labels = pd.factorize(result)
        dtype = pd.CategoricalDtype(pd.Index(labels, dtype=result.dtype))
        return pd.Series(
            pd.Categorical.from_codes(codes[self.codes], dtype=dtype), index=self.index
        )


def _set_fields(fmap: FieldMap, codes: Distinct, tgt_entity: Entity, out: Projection) -> None:
    """`set:` in a value map: other target fields implied by a source code (LOST → active=false)."""
    targets = sorted({t for v in fmap.values.values() for t in v.set})
    for name in targets:
        per_code = {
            k: str(v.set[name]).lower() if isinstance(v.set[name], bool) else str(v.set[name])
            for k, v in fmap.values.items()
            if name in v.set
        }
        raw = codes.values.map(per_code)
        expected, _ = coerce(raw.astype("string"), tgt_entity.fields[name])
        out.expectations.append(
            Expectation(
                name,
                "value",
                fmap.source,
                codes.spread(expected),
                codes.spread(raw.notna()),
                f"{fmap.source} → value map (set)",
            )
        )


def _tags(fmap: FieldMap, long: pd.DataFrame, tfield: Field, out: Projection) -> pd.DataFrame:
    """Source tags through the tag map: (row, tag, old) with one row per expected target tag.
    The map is worked once per distinct tag (a million records carry a few dozen)."""
    tmap = fmap.tags
    old = Distinct(long["tag"].astype("string"))
    tags = old.values
    if tmap is None or tmap.trim:
        tags = tags.str.strip()
    if tmap is not None and tmap.fold_case:
        tags = tags.str.lower()
    if tmap is not None:
        renames = dict(tmap.rename)
        for new, olds in tmap.merge.items():
            renames.update(dict.fromkeys(olds, new))
        if tmap.fold_case:
            renames = {k.lower(): v for k, v in renames.items()}
        tags = tags.map(renames).fillna(tags) if renames else tags
        keep = ~tags.isin([t.lower() if tmap.fold_case else t for t in tmap.drop])
    else:
        keep = pd.Series(True, index=tags.index)
    unknown = ~tags.isin(list(tfield.codes)) if tfield.codes else pd.Series(False, index=tags.index)
    code = old.codes
    rows = long["row"].to_numpy()
    flagged = (keep & unknown).to_numpy()[code]
    if flagged.any():
        out.unmapped.append(
            (
                fmap.target,
                fmap.source,
                pd.Series(rows[flagged]),
                pd.Series(old.values.array.take(code[flagged])),
            )
        )
    taken = (keep & ~unknown).to_numpy()[code]
    tag_code, _ = pd.factorize(tags, use_na_sentinel=False)  # renamed and merged tags coincide
    pair = pd.Series(rows[taken] * (len(tags) + 1) + tag_code[code[taken]])
    first = ~pair.duplicated().to_numpy()
    code = code[taken][first]
    return pd.DataFrame(
        {
            "row": rows[taken][first],
            "tag": pd.Series(tags.astype("string").array.take(code)),
            "old": pd.Series(old.values.array.take(code)),
        }
    )
