"""Alerts: the run summary posted to a DingTalk, WeCom or Slack webhook.

A failed alert is reported on stderr and never fails or loses the run: the run folder and the
history are written before anything is posted.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

from .errors import ConfigError
from .extract.sql import redact
from .findings import KINDS

FORMATS = ("slack", "dingtalk", "wecom")
TIMEOUT = 10.0  # seconds per attempt
BACKOFF = 1.0  # seconds before the second attempt, doubled before each next one


def guess_format(url: str) -> str:
    host = urlparse(url).hostname or ""
    if "dingtalk" in host:
        return "dingtalk"
    if "weixin" in host or "wecom" in host:
        return "wecom"
    return "slack"


def message(doc: dict, crossed: list[str], lang: str) -> tuple[str, str]:
    """(title, Markdown text) of a run summary, in the project's language."""
    zh = lang == "zh"
    f, life = doc["findings"], doc.get("lifecycle", {})
    title = f"reconcile {doc.get('project') or ''}: " + (
        f"{f['total']} 个问题" if zh else f"{f['total']} finding(s)"
    )
    lines = [f"**{title}**", f"run `{doc['run_id']}` · as of {doc['as_of']}"]
    if life:
        lines.append(
            (
                f"新增 {life.get('new', 0)} · 持续 {life.get('persisting', 0)} · 重现 {life.get('reopened', 0)}"
                f" · 已解决 {life.get('resolved', 0)}"
            )
            if zh
            else (
                f"new {life.get('new', 0)} · persisting {life.get('persisting', 0)} · reopened "
                f"{life.get('reopened', 0)} · resolved {life.get('resolved', 0)}"
            )
        )
    for kind in KINDS:
        if f["by_kind"].get(kind):
            lines.append(f"- {kind}: {f['by_kind'][kind]}")
    if crossed:
        lines.append(("超过阈值: " if zh else "thresholds crossed: ") + ", ".join(crossed))
    return title, "\n".join(lines)


def payload(fmt: str, title: str, text: str) -> dict:
    if fmt == "dingtalk":
        return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    if fmt == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": text}}
    return {"text": text.replace("**", "*")}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects has not received the POST: urllib would follow with a GET."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(
            req.full_url, code, f"redirect to elsewhere ({code})", headers, fp
        )


_OPENER = urllib.request.build_opener(_NoRedirect)


def check_url(url: str) -> None:
    """A webhook URL must be http(s) with a host; checked before the run, shown redacted."""
    try:
        parts = urlparse(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--notify: not an http(s) webhook URL: {redact_url(url)}",
            hint="Give the whole URL, e.g. https://oapi.dingtalk.com/robot/send?access_token=…",
        )


def _attempt(request, timeout: float) -> bytes:
    """One POST, bounded as a whole (a server that drips its answer cannot hold the run)."""
    box: dict = {}

    def go():
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                box["answer"] = response.read(65536)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=go, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"no complete answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["answer"]


def post(
    url: str,
    body: dict,
    *,
    timeout: float | None = None,
    retries: int = 3,
    backoff: float | None = None,
) -> str | None:
    """POST `body` as JSON; None when delivered, else why not (after the retries)."""
    timeout = TIMEOUT if timeout is None else timeout
    backoff = BACKOFF if backoff is None else backoff
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    reason = "not sent"
    for attempt in range(retries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            request = urllib.request.Request(
                url,
                data=data,
                method="POST",
                headers={"Content-Type": "application/json; charset=utf-8"},
            )
            answer = _attempt(request, timeout)
            # DingTalk and WeCom answer 200 with an error code in the body.
            try:
                code = json.loads(answer or b"{}").get("errcode", 0)
            except (ValueError, AttributeError):
                code = 0
            if code in (0, None):
                return None
            reason = f"the webhook answered errcode {code}"
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break  # a client error (or a redirect) will not change on retry
        except (
            urllib.error.URLError,
            TimeoutError,
            OSError,
            ValueError,
            http.client.HTTPException,
        ) as exc:
            reason = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            reason = reason.replace(url, redact_url(url))
    return f"alert to {redact_url(url)} failed after {attempt + 1} attempt(s): {reason}"


def redact_url(url: str) -> str:
    """Webhook URLs carry their secret in the path (Slack) or the query (DingTalk, WeCom): only
    the scheme and host are ever printed."""
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}/***"


def notify(
    urls: list[str], doc: dict, crossed: list[str], lang: str, fmt: str | None = None
) -> list[str]:
    """Post to every URL; the failures, as messages."""
    failures = []
    title, text = message(doc, crossed, lang)
    for url in urls:
        why = post(url, payload(fmt or guess_format(url), title, text))
        if why:
            failures.append(why)
    return failures


__all__ = ["FORMATS", "notify", "redact", "redact_url"]
