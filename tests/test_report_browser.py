"""The demo's HTML report in a real headless Chromium, at a phone and a desktop width."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--hide-scrollbars",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium is not installed (Debian package chromium; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def render(page: Path, width: int, out: Path) -> list[str]:
    """Screenshot `page` at `width`; the console messages Chromium logged."""
    done = subprocess.run(
        [
            chromium(),
            *FLAGS,
            f"--user-data-dir={out.parent / f'profile{width}'}",
            f"--window-size={width},2000",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.is_file(), done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    from click.testing import CliRunner

    from reconcile.cli import cli

    out = tmp_path_factory.mktemp("browser") / "demo"
    runner = CliRunner()
    runner.invoke(cli, ["demo", "--out", str(out), "--size", "1000", "-q"])
    result = runner.invoke(cli, ["demo", "--out", str(out), "--format", "json", "-q"])
    folder = Path(json.loads(result.stdout)["outputs"]["summary"]).parent
    pages = {}
    for lang in ("zh", "en"):
        pages[lang] = folder / f"report.{lang}.html"
        done = runner.invoke(
            cli, ["report", "--project", str(out), "--lang", lang, "-o", str(pages[lang])]
        )
        assert done.exit_code == 0, done.output
    return pages


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("width", [390, 1280], ids=["phone", "desktop"])
def test_the_demo_report_renders_with_no_console_errors(demo_report, lang, width, tmp_path):
    shot = tmp_path / f"{lang}-{width}.png"
    assert render(demo_report[lang], width, shot) == []
    assert png_size(shot) == (width, 2000)


def test_a_page_with_a_script_error_is_caught(tmp_path):
    """The check above can fail: a broken page shows up in the console log."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>", "utf-8")
    messages = render(page, 390, tmp_path / "broken.png")
    assert any("undefinedFunction" in m for m in messages)
