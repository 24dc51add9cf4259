"""The data dictionary format (see docs/dictionary.md): one YAML file per system and version."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator, model_validator

from ..problems import did_you_mean
from ..schema import OneOf, Strict, check_format

SCALAR_TYPES = ("string", "text", "integer", "boolean", "date", "datetime", "enum", "tags")
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


@dataclass(frozen=True)
class FieldType:
    """A parsed field type: its name, and precision and scale for decimals."""

    name: str
    precision: int | None = None
    scale: int | None = None

    @classmethod
    def parse(cls, text: str) -> FieldType:
        text = text.strip()
        if text in SCALAR_TYPES:
            return cls(text)
        m = _DECIMAL.match(text)
        if m:
            precision, scale = int(m[1]), int(m[2])
            if not 0 < precision <= 38 or scale > precision:
                raise ValueError(
                    f"decimal({precision},{scale}) needs 0 < precision <= 38, scale <= precision"
                )
            return cls("decimal", precision, scale)
        hint = did_you_mean(text, SCALAR_TYPES)
        raise ValueError(
            f"unknown type '{text}'{hint}; use one of {', '.join(SCALAR_TYPES)} or decimal(p,s)"
        )

    def __str__(self) -> str:
        return f"decimal({self.precision},{self.scale})" if self.name == "decimal" else self.name


def check_timezone(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone '{name}'; use an IANA name such as UTC or Asia/Shanghai"
        ) from None
    return name


class ChangelogEntry(Strict):
    version: int
    date: dt.date | None = None
    author: str | None = None
    changes: list[str]

    @field_validator("changes", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v


class Code(Strict):
    """One allowed value of an enum or tag field, with its labels in several languages."""

    labels: dict[str, str] = {}
    description: str | None = None
    deprecated: bool = False
    replaced_by: str | None = None
    temporary: bool = False
    valid_until: dt.date | None = None
    open: bool | None = None  # lifecycle: is a record in this state still being worked on?

    @model_validator(mode="before")
    @classmethod
    def _empty(cls, v):
        return {} if v is None else v

    @model_validator(mode="after")
    def _temporary_has_end(self) -> Code:
        if self.valid_until and not self.temporary:
            raise ValueError("valid_until is only meaningful with temporary: true")
        return self


class Lookup(Strict):
    """Codes stored as ids into another table (e.g. stage_id -> stages.code)."""

    table: str
    key: str
    code: str
    label: str | None = None
    label_format: Literal["text", "json"] = "text"


class JoinTableTags(Strict):
    table: str
    key: str
    value: str
    lookup: Lookup | None = None


class DelimitedTags(Strict):
    column: str | None = None
    separator: str = ","
    wrap: str = ""  # '^' for values stored as ^a^,^b^

    @field_validator("separator")
    @classmethod
    def _nonempty(cls, v: str) -> str:
        if not v:
            raise ValueError("separator must not be empty")
        return v


class JsonTags(Strict):
    column: str | None = None


class TagStorage(OneOf):
    """How a multi-value tag field is stored: exactly one of the three."""

    join_table: JoinTableTags | None = None
    delimited: DelimitedTags | None = None
    json_array: JsonTags | None = None


class Field(Strict):
    type: str
    column: str | None = None
    description: str | None = None
    labels: dict[str, str] = {}
    required: bool = False
    unique: bool = False
    pii: bool = False
    null_tokens: list[str] = []
    timezone: str | None = None
    format: str | None = None
    codes: dict[str, Code] = {}
    lookup: Lookup | None = None
    storage: TagStorage | None = None

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        FieldType.parse(v)
        return v

    _tz = field_validator("timezone")(classmethod(lambda cls, v: check_timezone(v)))

    @model_validator(mode="after")
    def _consistent(self) -> Field:
        kind = self.kind.name
        if kind == "datetime" and not self.timezone:
            raise ValueError(
                "a datetime field must state its timezone (e.g. timezone: Asia/Shanghai, or UTC)"
            )
        if kind != "datetime" and self.timezone:
            raise ValueError("timezone is only allowed on datetime fields")
        if kind == "enum" and not self.codes:
            raise ValueError("an enum field needs its codes")
        if kind not in ("enum", "tags") and self.codes:
            raise ValueError(f"codes are only allowed on enum and tags fields, not {kind}")
        if self.lookup and kind != "enum":
            raise ValueError("lookup is only allowed on enum fields")
        if kind == "tags" and self.storage is None:
            raise ValueError(
                "a tags field must declare its storage (join_table, delimited or json_array)"
            )
        if kind != "tags" and self.storage is not None:
            raise ValueError("storage is only allowed on tags fields")
        return self

    @property
    def kind(self) -> FieldType:
        return FieldType.parse(self.type)


class Source(OneOf):
    """Where an entity's records live: a table, a view, or a CRM export file."""

    table: str | None = None
    view: str | None = None
    file: str | None = None

    @property
    def name(self) -> str:
        return getattr(self, self.chosen())


class Entity(Strict):
    description: str | None = None
    labels: dict[str, str] = {}
    source: Source
    primary_key: str
    created_at: str | None = None
    updated_at: str | None = None
    owner: str | None = None  # the field naming who is responsible (stale records, by owner)
    fields: dict[str, Field]


class Dictionary(Strict):
    format: int
    system: str
    version: int
    title: dict[str, str] | str | None = None
    description: str | None = None
    languages: list[str] = ["zh", "en"]
    changelog: list[ChangelogEntry] = []
    entities: dict[str, Entity]

    _format = field_validator("format")(classmethod(lambda cls, v: check_format(v)))

    @field_validator("system")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", v):
            raise ValueError("system must be a plain name: letters, digits, _ and -")
        return v
