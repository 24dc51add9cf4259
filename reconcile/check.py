"""`reconcile check`: a project's dictionaries and mappings, validated and cross-checked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .dictionary.model import Dictionary, Entity
from .dictionary.values import parse_value
from .errors import InputError
from .mapping.model import EntityMap, FieldMap, Mapping, TagMap
from .problems import Problem, did_you_mean
from .schema import validate
from .yamlsource import Document, load_yaml

DICTIONARY_DIR = "data_dictionary"
MAPPING_DIR = "mappings"


@dataclass
class Loaded:
    """A YAML file with its validated model (None when the schema rejected it)."""

    doc: Document
    model: Dictionary | Mapping | None


@dataclass
class CheckResult:
    dictionaries: list[Loaded] = field(default_factory=list)
    mappings: list[Loaded] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def dictionary(self, system: str, version: int | None = None) -> Loaded | None:
        for d in self.dictionaries:
            m = d.model
            if m is not None and m.system == system and (version is None or m.version == version):
                return d
        return None

    def invalid_dictionary(self, system: str) -> bool:
        return any(
            d.model is None and isinstance(d.doc.data, dict) and d.doc.data.get("system") == system
            for d in self.dictionaries
        )


def yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def check_project(project_dir: Path | str) -> CheckResult:
    """Every problem in the project's data_dictionary/ and mappings/, sorted by place."""
    root = Path(project_dir)
    if not root.is_dir():
        raise InputError(f"project folder not found: {root}")
    dict_files = yaml_files(root / DICTIONARY_DIR)
    map_files = yaml_files(root / MAPPING_DIR)
    if not dict_files and not map_files:
        raise InputError(
            f"{root} has no {DICTIONARY_DIR}/*.yaml and no {MAPPING_DIR}/*.yaml.",
            hint="Run the command in a project folder or pass its path.",
        )
    result = CheckResult()
    for path in dict_files:
        doc = load_yaml(path)
        model, problems = validate(Dictionary, doc)
        result.dictionaries.append(Loaded(doc, model))
        result.problems += problems
        if model is not None:
            result.problems += list(check_dictionary(model, doc))
    result.problems += list(_duplicate_systems(result.dictionaries))
    for path in map_files:
        doc = load_yaml(path)
        model, problems = validate(Mapping, doc)
        result.mappings.append(Loaded(doc, model))
        result.problems += problems
        if model is not None:
            result.problems += list(check_mapping(model, doc, result))
    config = root / "reconcile.yaml"
    if config.is_file():
        from .project import ProjectConfig  # project.py builds on this module

        result.problems += validate(ProjectConfig, load_yaml(config))[1]
    result.problems.sort(key=Problem.sort_key)
    return result


def _duplicate_systems(dictionaries: list[Loaded]) -> Iterator[Problem]:
    seen: dict[tuple[str, int], Path] = {}
    for d in dictionaries:
        if d.model is None:
            continue
        key = (d.model.system, d.model.version)
        if key in seen:
            yield Problem(
                d.doc.locate(("version",)),
                "duplicate-dictionary",
                f"{seen[key].name} already defines {key[0]} version {key[1]}; bump one of them",
            )
        seen[key] = d.doc.path


def check_dictionary(model: Dictionary, doc: Document) -> Iterator[Problem]:
    yield from _changelog(model, doc)
    for ename, entity in model.entities.items():
        at = ("entities", ename)
        for key in ("primary_key", "created_at", "updated_at", "owner"):
            name = getattr(entity, key)
            if name is not None and name not in entity.fields:
                yield _missing_field(doc, (*at, key), name, entity, f"entity {ename}")
        for key in ("created_at", "updated_at"):
            name = getattr(entity, key)
            if name in entity.fields and entity.fields[name].kind.name not in ("date", "datetime"):
                yield Problem(
                    doc.locate((*at, key)),
                    "wrong-type",
                    f"{key} must name a date or datetime field",
                )
        for fname, fdef in entity.fields.items():
            for code, c in fdef.codes.items():
                cat = (*at, "fields", fname, "codes", code)
                missing = [lang for lang in model.languages if not c.labels.get(lang)]
                if missing:
                    yield Problem(
                        doc.locate(cat),
                        "missing-label",
                        f"code '{code}' has no label in {', '.join(missing)}",
                        "warning",
                    )
                if c.replaced_by is not None and c.replaced_by not in fdef.codes:
                    yield Problem(
                        doc.locate((*cat, "replaced_by")),
                        "unknown-code",
                        f"replaced_by '{c.replaced_by}' is not a code of {fname}"
                        + did_you_mean(c.replaced_by, fdef.codes),
                    )


def _missing_field(doc: Document, at: tuple, name: str, entity: Entity, owner: str) -> Problem:
    return Problem(
        doc.locate(at),
        "unknown-field",
        f"{owner} has no field '{name}'{did_you_mean(name, entity.fields)}",
    )


def _changelog(model: Dictionary | Mapping, doc: Document) -> Iterator[Problem]:
    if not model.changelog:
        yield Problem(doc.locate(("version",)), "changelog", "no changelog", "warning")
    elif max(e.version for e in model.changelog) != model.version:
        yield Problem(
            doc.locate(("changelog",)),
            "changelog",
            f"the newest changelog entry is not for version {model.version}; "
            "say what changed in this version",
            "warning",
        )


def check_mapping(model: Mapping, doc: Document, project: CheckResult) -> Iterator[Problem]:
    yield from _changelog(model, doc)
    sides: dict[str, Dictionary] = {}
    for side in ("source", "target"):
        pin = getattr(model, side)
        exact = project.dictionary(pin.system, pin.version)
        if exact is not None:
            sides[side] = exact.model
            continue
        other = project.dictionary(pin.system)
        if other is None and project.invalid_dictionary(pin.system):
            continue  # its own problems are reported; cross-checking against it would only echo them
        if other is not None:
            yield Problem(
                doc.locate((side, "version")),
                "version-pin",
                f"pins {pin.system} version {pin.version} but {other.doc.path.name} is version "
                f"{other.model.version}; review the mapping against the new dictionary, then "
                "update the pin",
            )
        else:
            known = [d.model.system for d in project.dictionaries if d.model is not None]
            yield Problem(
                doc.locate((side, "system")),
                "unknown-system",
                f"no dictionary for system '{pin.system}' in {DICTIONARY_DIR}/"
                + did_you_mean(pin.system, known),
            )
    for name in model.entities:
        if len(name) > 24 or name.lower() == "about" or re.search(r"[\[\]:*?/\\]", name):
            yield Problem(
                doc.locate(("entities", name), at_key=True),
                "invalid-value",
                f"entity map name {name!r} must be at most 24 characters, not 'about', and without "
                "[ ] : * ? / \\ (it names a worksheet sheet)",
            )
    if len(sides) < 2:
        return
    for name, emap in model.entities.items():
        yield from _check_entity(doc, ("entities", name), emap, sides["source"], sides["target"])


def _check_entity(
    doc: Document, at: tuple, emap: EntityMap, src_dict: Dictionary, tgt_dict: Dictionary
) -> Iterator[Problem]:
    src = src_dict.entities.get(emap.source)
    tgt = tgt_dict.entities.get(emap.target)
    for side, ent, d in (("source", src, src_dict), ("target", tgt, tgt_dict)):
        if ent is None:
            name = getattr(emap, side)
            yield Problem(
                doc.locate((*at, side)),
                "unknown-entity",
                f"{d.system} has no entity '{name}'{did_you_mean(name, d.entities)}",
            )
    if src is None or tgt is None:
        return

    def field_ref(path: tuple, name: str | None, side: str) -> Iterator[Problem]:
        ent = src if side == "source" else tgt
        owner = f"{(src_dict if side == 'source' else tgt_dict).system}.{getattr(emap, side)}"
        if name is not None and name not in ent.fields:
            yield _missing_field(doc, path, name, ent, owner)

    link = emap.link
    if link.uid is not None:
        yield from field_ref((*at, "link", "uid", "source"), link.uid.source, "source")
        yield from field_ref((*at, "link", "uid", "target"), link.uid.target, "target")
    if link.crosswalk is not None:
        yield from field_ref((*at, "link", "crosswalk", "source"), link.crosswalk.source, "source")
        yield from field_ref((*at, "link", "crosswalk", "target"), link.crosswalk.target, "target")
    for i, pair in enumerate(link.natural_key or []):
        yield from field_ref((*at, "link", "natural_key", i, "source"), pair.source, "source")
        yield from field_ref((*at, "link", "natural_key", i, "target"), pair.target, "target")
    for side, ent in (("source", src), ("target", tgt)):
        for i, flt in enumerate(getattr(emap.scope, side)):
            path = (*at, "scope", side, i)
            if flt.field not in ent.fields:
                yield from field_ref((*path, "field"), flt.field, side)
                continue
            values = flt.value if isinstance(flt.value, list) else [flt.value]
            for v in values:
                yield from _value_fits(doc, (*path, "value"), ent.fields[flt.field], flt.field, v)
    if emap.cutover is not None:
        yield from field_ref((*at, "cutover", "field"), emap.cutover.field, "target")
        cut = tgt.fields.get(emap.cutover.field)
        if cut is not None and cut.kind.name not in ("date", "datetime"):
            yield Problem(
                doc.locate((*at, "cutover", "field")),
                "wrong-type",
                f"the cutover field must be a date or datetime; {emap.cutover.field} is {cut.kind}",
            )
    for name, value in emap.on_insert.items():
        path = (*at, "on_insert", name)
        if name not in tgt.fields:
            yield from field_ref(path, name, "target")
        elif not (value == "now" and tgt.fields[name].kind.name in ("date", "datetime")):
            yield from _value_fits(doc, path, tgt.fields[name], name, value)
    seen_targets: dict[str, int] = {}
    for i, fmap in enumerate(emap.fields):
        path = (*at, "fields", i)
        refs = list(field_ref((*path, "source"), fmap.source, "source"))
        refs += list(field_ref((*path, "target"), fmap.target, "target"))
        yield from refs
        if fmap.target is not None and fmap.role != "ignore":
            if fmap.target in seen_targets:
                yield Problem(
                    doc.locate((*path, "target")),
                    "duplicate-target",
                    f"target field '{fmap.target}' is already mapped by fields[{seen_targets[fmap.target]}]",
                )
            seen_targets[fmap.target] = i
        if refs or fmap.role == "ignore":
            continue
        yield from _check_pair(doc, path, fmap, src.fields[fmap.source], tgt, fmap.source)


def _value_fits(doc: Document, path: tuple, fdef, fname: str, value) -> Iterator[Problem]:
    try:
        parse_value(fdef, value)
    except ValueError as exc:
        yield Problem(doc.locate(path), "invalid-value", f"not a valid value for '{fname}': {exc}")


def _check_pair(
    doc: Document, path: tuple, fmap: FieldMap, sfield, tgt: Entity, sname: str
) -> Iterator[Problem]:
    tfield = tgt.fields[fmap.target]
    skind, tkind = sfield.kind.name, tfield.kind.name
    if fmap.role == "tags":
        if skind != "tags" or tkind != "tags":
            yield Problem(
                doc.locate((*path, "role")),
                "wrong-type",
                f"role tags pairs two tags fields; {sname} is {skind}, {fmap.target} is {tkind}",
            )
            return
        yield from _check_tags(doc, path, fmap, sfield, tfield, sname)
        return
    if fmap.tolerance is not None:
        tol = fmap.tolerance
        numeric = tkind in ("integer", "decimal")
        if (tol.absolute is not None or tol.relative is not None) and not numeric:
            yield Problem(
                doc.locate((*path, "tolerance")),
                "wrong-type",
                f"absolute/relative tolerances apply to numbers; {fmap.target} is {tkind}",
            )
        if tol.seconds is not None and tkind not in ("datetime", "date"):
            yield Problem(
                doc.locate((*path, "tolerance")),
                "wrong-type",
                f"a tolerance in seconds applies to datetimes; {fmap.target} is {tkind}",
            )
    for code, vt in fmap.values.items():
        vpath = (*path, "values", code)
        if skind == "enum" and code not in sfield.codes:
            yield Problem(
                doc.locate(vpath),
                "unknown-code",
                f"maps '{code}', which is not a code of source field {sname}"
                + did_you_mean(code, sfield.codes),
            )
        if vt.to is not None:
            to_path = (*vpath, "to") if (*vpath, "to") in doc.positions else vpath
            yield from _target_code(doc, to_path, tfield, fmap.target, vt.to)
        for other, value in vt.set.items():
            if other not in tgt.fields:
                yield Problem(
                    doc.locate((*vpath, "set", other), at_key=True),
                    "unknown-field",
                    f"the target entity has no field '{other}'{did_you_mean(other, tgt.fields)}",
                )
            else:
                yield from _value_fits(doc, (*vpath, "set", other), tgt.fields[other], other, value)
    for i, code in enumerate(fmap.drop):
        if code in fmap.values:
            yield Problem(
                doc.locate((*path, "drop", i)),
                "invalid-value",
                f"'{code}' is both mapped in values and dropped; keep one",
            )
        if skind == "enum" and code not in sfield.codes:
            yield Problem(
                doc.locate((*path, "drop", i)),
                "unknown-code",
                f"drops '{code}', which is not a code of {sname}"
                + did_you_mean(code, sfield.codes),
            )
    if fmap.default is not None:
        yield from _target_code(doc, (*path, "default"), tfield, fmap.target, fmap.default)
    if skind == "enum":
        yield from _coverage(doc, path, fmap, sfield, tfield, sname)


def _target_code(doc: Document, path: tuple, tfield, tname: str, code: str) -> Iterator[Problem]:
    if tfield.kind.name == "enum":
        if code not in tfield.codes:
            yield Problem(
                doc.locate(path),
                "unknown-code",
                f"'{code}' is not a code of target field {tname}"
                + did_you_mean(code, tfield.codes),
            )
        elif tfield.codes[code].deprecated:
            yield Problem(
                doc.locate(path),
                "deprecated-code",
                f"maps to '{code}', which the target dictionary marks deprecated",
                "warning",
            )
    else:
        yield from _value_fits(doc, path, tfield, tname, code)


def _coverage(doc: Document, path: tuple, fmap: FieldMap, sfield, tfield, sname: str):
    for code, c in sfield.codes.items():
        if code in fmap.values or code in fmap.drop or fmap.unmapped == "default":
            continue
        label = c.labels.get("en") or c.labels.get("zh") or ""
        shown = f"'{code}'" + (f" ({label})" if label else "")
        if fmap.unmapped == "pass":
            if tfield.kind.name == "enum" and code not in tfield.codes:
                yield Problem(
                    doc.locate((*path, "unmapped")),
                    "unmapped-code",
                    f"source code {shown} of {sname} passes through unchanged but is not a "
                    f"code of {fmap.target}; map it in values or list it under drop",
                )
            continue
        yield Problem(
            doc.locate((*path, "values") if fmap.values else path),
            "unmapped-code",
            f"source code {shown} of {sname} is not mapped; add it to values, list it under "
            "drop, or set unmapped: pass or default",
        )


def _check_tags(doc: Document, path: tuple, fmap: FieldMap, sfield, tfield, sname: str):
    if fmap.drop or fmap.unmapped != "flag":
        yield Problem(
            doc.locate(path),
            "invalid-value",
            "a tags pair takes its drops and renames in tags: (drop, rename, merge); "
            "drop/unmapped/default here would be ignored",
        )
    tmap = fmap.tags or TagMap()
    where = (*path, "tags")

    def norm(tag: str) -> str:
        tag = tag.strip() if tmap.trim else tag
        return tag.lower() if tmap.fold_case else tag

    # (old tag, new tag, where it is written)
    moves = [(old, new, (*where, "rename", old)) for old, new in tmap.rename.items()]
    moves += [
        (old, new, (*where, "merge", new)) for new, olds in tmap.merge.items() for old in olds
    ]
    source_tags = {norm(c) for c in sfield.codes}
    for old, new, at in moves:
        if tfield.codes and new not in tfield.codes:
            yield Problem(
                doc.locate(at, at_key=True),
                "unknown-code",
                f"tag '{old}' becomes '{new}', which is not a tag of {fmap.target}"
                + did_you_mean(new, tfield.codes),
            )
        elif tfield.codes and tfield.codes[new].deprecated:
            yield Problem(
                doc.locate(at, at_key=True),
                "deprecated-code",
                f"tag '{old}' becomes '{new}', which the target dictionary marks deprecated",
                "warning",
            )
        if sfield.codes and norm(old) not in source_tags:
            yield Problem(
                doc.locate(at, at_key=True),
                "unknown-code",
                f"maps tag '{old}', which is not a tag of {sname}"
                + did_you_mean(old, sfield.codes),
                "warning",
            )
    for i, tag in enumerate(tmap.drop):
        if sfield.codes and norm(tag) not in source_tags:
            yield Problem(
                doc.locate((*where, "drop", i)),
                "unknown-code",
                f"drops tag '{tag}', which is not a tag of {sname}"
                + did_you_mean(tag, sfield.codes),
                "warning",
            )
    if not tfield.codes:
        return
    handled = {norm(old) for old, _, _ in moves} | {norm(t) for t in tmap.drop}
    for code in sfield.codes:
        if norm(code) in handled or norm(code) in tfield.codes:
            continue
        yield Problem(
            doc.locate(where if fmap.tags else path),
            "unmapped-code",
            f"source tag '{code}' of {sname} has no counterpart in {fmap.target}; "
            "rename, merge or drop it",
        )
