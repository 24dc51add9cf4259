"""Validate loaded YAML against the pydantic models and report problems at their exact place."""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from .errors import ConfigError
from .problems import Problem, did_you_mean
from .yamlsource import Document, load_yaml

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Every YAML model: unknown keys are errors and loaded objects never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


FORMAT = 1


def check_format(version: int) -> int:
    if version != FORMAT:
        raise ValueError(f"this reconcile reads format {FORMAT}; the file says format {version}")
    return version


class OneOf(Strict):
    """A model whose keys are alternatives: exactly one of them must be given."""

    @classmethod
    def choices(cls) -> list[str]:
        return list(cls.model_fields)

    def chosen(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @model_validator(mode="after")
    def _exactly_one(self) -> OneOf:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            names = ", ".join(type(self).choices())
            raise ValueError(f"give exactly one of: {names} (found {len(given)})")
        return self


def validate(model: type[M], doc: Document) -> tuple[M | None, list[Problem]]:
    """The model built from `doc`, or None and the problems that stop it (duplicates included)."""
    problems = [
        Problem(
            doc.locate(path, at_key=True),
            "duplicate-key",
            f"duplicate key '{path[-1]}' (first defined at line {first[0]}); "
            "YAML would silently keep only the last one, remove or rename one of them",
        )
        for path, _pos, first in doc.duplicates
    ]
    if doc.data is None:
        problems.append(Problem(doc.locate(()), "empty-file", "the file is empty"))
        return None, problems
    try:
        obj = model.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(_problem(model, doc, err) for err in exc.errors())
        return None, problems
    return (obj if not problems else None), problems


def load_model(model: type[M], path) -> M:
    """The model in YAML file `path`; ConfigError listing every problem when it is not valid."""
    doc = load_yaml(path)
    obj, problems = validate(model, doc)
    errors = [p for p in problems if p.severity == "error"]
    if obj is None or errors:
        first = errors[0]
        more = f" ({len(errors) - 1} more problem(s); run `reconcile check` to list them)"
        raise ConfigError(first.message + (more if len(errors) > 1 else ""), first.location)
    return obj


def _problem(model: type[BaseModel], doc: Document, err: dict) -> Problem:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        key = loc[-1]
        allowed = _model_at(model, loc[:-1])
        hint = did_you_mean(key, allowed.model_fields) if allowed else ""
        names = f"; allowed here: {', '.join(allowed.model_fields)}" if allowed else ""
        return Problem(
            doc.locate(loc, at_key=True), "unknown-key", f"unknown key '{key}'{hint}{names}"
        )
    if err["type"] == "missing":
        return Problem(doc.locate(loc), "missing-key", f"required key '{loc[-1]}' is missing")
    msg = err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    if err["type"] not in ("value_error", "assertion_error") and not isinstance(given, dict | list):
        msg += f" (got {given!r})"
    kind = "invalid-value" if err["type"] in ("value_error", "literal_error") else "wrong-type"
    return Problem(doc.locate(loc), kind, msg)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class that validates the object at `loc`, walking field annotations."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        containers = [a for a in args if typing.get_origin(a) in (dict, list)]
        return _unwrap((models or containers or args)[0])
    return tp
