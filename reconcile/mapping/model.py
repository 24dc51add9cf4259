"""The field mapping format (see docs/mapping.md): declarative, versioned, pinned to dictionaries."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import field_validator, model_validator

from ..dictionary.model import ChangelogEntry, check_timezone
from ..schema import OneOf, Strict, check_format


class Pin(Strict):
    """The dictionary a mapping was written against: its system and exact version."""

    system: str
    version: int


class KeyPair(Strict):
    source: str
    target: str


class Crosswalk(Strict):
    """A table (in the source or target system) or a CSV file mapping old ids to new ids."""

    system: Literal["source", "target"] | None = None
    table: str | None = None
    file: str | None = None
    source_key: str
    target_key: str
    source: str | None = None  # source entity field matched against source_key (default: its pk)
    target: str | None = None  # target entity field matched against target_key (default: its pk)

    @model_validator(mode="after")
    def _where(self) -> Crosswalk:
        if (self.table is None) == (self.file is None):
            raise ValueError("a crosswalk needs exactly one of: table (with system) or file")
        if self.table is not None and self.system is None:
            raise ValueError("a crosswalk table needs system: source or target")
        return self


class Link(OneOf):
    """How a source record and a target record are known to be the same record."""

    uid: KeyPair | None = None
    crosswalk: Crosswalk | None = None
    natural_key: list[KeyPair] | None = None


Op = Literal["eq", "ne", "in", "not_in", "is_null", "not_null", "lt", "le", "gt", "ge"]


class Filter(Strict):
    """A scope condition, pushed down into SQL where the source is a database."""

    field: str
    op: Op = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Filter:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op} needs a list value")
        if self.op in ("is_null", "not_null") and self.value is not None:
            raise ValueError(f"op {self.op} takes no value")
        if self.op not in ("is_null", "not_null") and self.value is None:
            raise ValueError(f"op {self.op} needs a value (use is_null to test for null)")
        return self


class Scope(Strict):
    source: list[Filter] = []
    target: list[Filter] = []


class Cutover(Strict):
    """Target records created after `at` are new business, not migration defects."""

    field: str
    at: dt.datetime

    @field_validator("at")
    @classmethod
    def _aware(cls, v: dt.datetime) -> dt.datetime:
        if v.tzinfo is None:
            raise ValueError("cutover time needs a UTC offset, e.g. 2026-01-05T00:00:00+08:00")
        return v


class ValueTarget(Strict):
    """What one source code becomes: a target code, and optionally other target fields set."""

    to: str | None = None
    set: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        return {"to": v} if isinstance(v, str) else v


class TagMap(Strict):
    rename: dict[str, str] = {}
    merge: dict[str, list[str]] = {}  # new tag: [old tags]
    drop: list[str] = []
    fold_case: bool = False
    trim: bool = True


class ParseFormat(Strict):
    format: str | None = None
    timezone: str | None = None

    _tz = field_validator("timezone")(classmethod(lambda cls, v: check_timezone(v)))


class Separator(Strict):
    separator: str = ","


class RegexReplace(Strict):
    pattern: str
    replacement: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return v


class Transform(OneOf):
    """One step of the fixed transform list; see docs/mapping.md#transforms."""

    trim: bool | None = None
    fold_case: Literal["lower", "upper"] | None = None
    null_tokens: list[str] | None = None
    scale: float | None = None
    round: int | None = None
    parse_date: ParseFormat | None = None
    parse_datetime: ParseFormat | None = None
    to_timezone: str | None = None
    split: Separator | None = None
    join: Separator | None = None
    regex_replace: RegexReplace | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, v):
        # `- trim` reads better than `- trim: true` for steps that take no argument.
        if isinstance(v, str):
            if v == "trim":
                return {v: True}
            if v in ("parse_date", "parse_datetime", "split", "join"):
                return {v: {}}
            if v in cls.model_fields:
                raise ValueError(f"the {v} step needs an argument, e.g. - {v}: ...")
        return v

    _tz = field_validator("to_timezone")(classmethod(lambda cls, v: check_timezone(v)))


class Tolerance(Strict):
    absolute: float | None = None
    relative: float | None = None
    seconds: float | None = None


Role = Literal["state", "tags", "value", "ignore"]


class FieldMap(Strict):
    """One source field paired with one target field, and how values cross over."""

    source: str | None = None
    target: str | None = None
    role: Role = "value"
    values: dict[str, ValueTarget] = {}
    drop: list[str] = []
    unmapped: Literal["flag", "pass", "default"] = "flag"
    default: str | None = None
    tags: TagMap | None = None
    transforms: list[Transform] = []
    tolerance: Tolerance | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FieldMap:
        if self.source is None and self.target is None:
            raise ValueError("a field pair needs source, target, or both")
        if self.role != "ignore" and (self.source is None or self.target is None):
            raise ValueError(f"a {self.role} field pair needs both source and target")
        if (self.unmapped == "default") != (self.default is not None):
            raise ValueError("unmapped: default and default: CODE go together")
        if self.tags is not None and self.role != "tags":
            raise ValueError("a tag map belongs to a field pair with role: tags")
        if self.values and self.role == "tags":
            raise ValueError("a tags field pair uses a tags: map, not values:")
        return self

    @property
    def name(self) -> str:
        return self.target or self.source or "?"


class EntityMap(Strict):
    source: str
    target: str
    link: Link
    scope: Scope = Scope()
    cutover: Cutover | None = None
    fields: list[FieldMap]
    # Values for target fields the projection leaves empty when `reconcile apply` inserts a record
    # the migration lost (e.g. archived: false); `now` is the time of the insert.
    on_insert: dict[str, Any] = {}


class Mapping(Strict):
    format: int
    version: int
    description: str | None = None
    changelog: list[ChangelogEntry] = []
    source: Pin
    target: Pin
    entities: dict[str, EntityMap]

    _format = field_validator("format")(classmethod(lambda cls, v: check_format(v)))
