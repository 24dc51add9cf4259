"""Docs that cannot drift: the README's commands, CLI help texts, every format key documented."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

from reconcile.cli import cli
from reconcile.dictionary import model as dictionary_model
from reconcile.mapping import model as mapping_model

REPO = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text("utf-8")
    ci = (REPO / ".ci" / "run").read_text("utf-8")
    test_line = next(line for line in readme.splitlines() if line.endswith("pytest"))
    assert test_line in ci.splitlines()


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")


@pytest.mark.parametrize("name", [n for n, _ in _commands(cli)])
def test_every_command_has_help_and_is_in_the_readme(name):
    command = dict(_commands(cli))[name]
    assert command.help and len(command.help) > 20
    readme = (REPO / "README.md").read_text("utf-8")
    assert f"reconcile {name}" in readme


def _models(module) -> list[type[BaseModel]]:
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == module.__name__
    ]


@pytest.mark.parametrize(
    ("module", "doc"), [(dictionary_model, "dictionary.md"), (mapping_model, "mapping.md")]
)
def test_every_key_of_the_format_is_documented(module, doc):
    text = (REPO / "docs" / doc).read_text("utf-8")
    documented = set(re.findall(r"`([a-z_]+)", text))
    keys = {name for model in _models(module) for name in model.model_fields}
    assert keys - documented == set()


def test_every_project_config_key_is_in_the_readme():
    from reconcile.project import ProjectConfig, SystemConfig

    readme = (REPO / "README.md").read_text("utf-8")
    for model in (ProjectConfig, SystemConfig):
        for key in model.model_fields:
            assert f"`{key}`" in readme, key
