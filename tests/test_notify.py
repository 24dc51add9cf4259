"""Alerts posted to a local webhook server; a failing webhook never fails or loses the run."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reconcile import notify
from tests.test_diff_cases import CASES_DIR, SPEC, apply_case, build


class Hook(BaseHTTPRequestHandler):
    received: list = []
    status = 200
    body = b'{"errcode": 0}'

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        type(self).received.append((self.path, json.loads(self.rfile.read(length))))
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("H", (Hook,), {"received": [], "status": 200, "body": b'{"errcode": 0}'})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    shutil.copytree(CASES_DIR / "diff_project", root)
    data = apply_case(next(c for c in SPEC["cases"] if c["name"].startswith("a state field")))
    build(data["source"], root / "old.sqlite")
    build(data["target"], root / "new.sqlite")
    return root


def test_the_summary_is_posted_to_a_slack_webhook(server, tiny, run_cli):
    handler, url = server
    result = run_cli("run", tiny, "--quiet", "--notify", f"{url}/services/T000/B000/secret")
    assert result.exit_code == 1 and "warning" not in result.stderr
    ((path, body),) = handler.received
    assert path == "/services/T000/B000/secret"
    assert (
        "*reconcile tiny diff cases: 1 finding(s)*" in body["text"]
        and "state_mismatch: 1" in body["text"]
    )


@pytest.mark.parametrize(("fmt", "key"), [("dingtalk", "text"), ("wecom", "content")])
def test_dingtalk_and_wecom_get_markdown_messages(server, tiny, run_cli, fmt, key):
    handler, url = server
    result = run_cli(
        "run",
        tiny,
        "--quiet",
        "--notify",
        f"{url}/robot/send?access_token=abc",
        "--notify-format",
        fmt,
        "--fail-on",
        "state_mismatch>0",
    )
    assert result.exit_code == 1
    ((_, body),) = handler.received
    assert body["msgtype"] == "markdown" and "state_mismatch>0 (1)" in body["markdown"][key]


def test_a_failing_webhook_is_retried_then_a_warning_and_the_run_is_kept(
    server, tiny, run_cli, monkeypatch
):
    handler, url = server
    handler.status = 503
    monkeypatch.setattr(notify, "BACKOFF", 0.01)
    result = run_cli(
        "run", tiny, "--format", "json", "--quiet", "--notify", f"{url}/hook?key=s3cret"
    )
    assert result.exit_code == 1
    assert len(handler.received) == 3
    assert (
        "warning: alert to" in result.stderr
        and "HTTP 503" in result.stderr
        and "s3cret" not in result.stderr
    )
    doc = json.loads(result.stdout)
    assert Path(doc["outputs"]["summary"]).is_file()
    recorded = json.loads(run_cli("history", tiny, "--format", "json").stdout)
    assert [d["run_id"] for d in recorded] == [doc["run_id"]]


def test_an_unreachable_webhook_does_not_fail_a_clean_run(tmp_path, run_cli, monkeypatch):
    root = tmp_path / "p"
    shutil.copytree(CASES_DIR / "diff_project", root)
    data = apply_case(SPEC["cases"][0])
    build(data["source"], root / "old.sqlite")
    build(data["target"], root / "new.sqlite")
    monkeypatch.setattr(notify, "BACKOFF", 0.01)
    monkeypatch.setattr(notify, "TIMEOUT", 2.0)
    result = run_cli("run", root, "--quiet", "--notify", "http://127.0.0.1:1/hook")
    assert result.exit_code == 0
    assert "warning: alert to http://127.0.0.1:1/*** failed after 3 attempt(s)" in result.stderr


def test_a_dingtalk_error_code_counts_as_a_failure(server):
    handler, url = server
    handler.body = b'{"errcode": 310000, "errmsg": "keywords not in content"}'
    why = notify.post(f"{url}/robot/send?access_token=t", {"msgtype": "text"}, retries=1)
    assert why is not None and "errcode 310000" in why and "access_token=t" not in why


def test_a_redirecting_webhook_is_a_failure_not_a_delivery(server):
    handler, url = server
    handler.status = 302
    why = notify.post(f"{url}/hook", {"text": "x"}, retries=1)
    assert why is not None and "HTTP 302" in why


def test_a_webhook_url_without_scheme_is_refused_before_the_run(tmp_path, run_cli):
    from tests.test_diff_cases import make_project

    root = make_project(tmp_path / "p")
    result = run_cli("run", root, "--notify", "oapi.dingtalk.com/robot/send?access_token=SECRET123")
    assert result.exit_code == 2 and "not an http(s) webhook URL" in result.stderr
    assert "SECRET123" not in result.stderr and not (root / "runs").exists()
