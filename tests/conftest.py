from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconcile.cli import cli

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped demo project's dictionaries and mappings, safe to edit."""
    for folder in ("data_dictionary", "mappings"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


class Result:
    def __init__(self, exit_code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr


@pytest.fixture
def run_cli():
    """Run the CLI in-process: exit code, stdout and stderr kept apart."""

    def run(*args: str) -> Result:
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)

    return run
