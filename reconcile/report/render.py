"""The report as one self-contained HTML page (inline CSS and SVG, no script, no network) or as
Markdown for wikis, in Chinese or English."""

from __future__ import annotations

from importlib import resources

import jinja2
from markupsafe import Markup, escape
from tabulate import tabulate

from ..findings import KINDS

COLORS = {
    "missing_in_target": "#c0392b",
    "unexpected_in_target": "#e67e22",
    "duplicate_uid": "#8e44ad",
    "missing_uid": "#6c3483",
    "state_mismatch": "#d35400",
    "value_mismatch": "#2980b9",
    "missing_tag": "#16a085",
    "unexpected_tag": "#7f8c8d",
    "unmapped_value": "#b7950b",
    "invalid_value": "#a93226",
    "unparseable_value": "#5d6d7e",
}

TEXT = {
    "en": {
        "title": "Reconciliation report",
        "run": "Run",
        "as_of": "As of",
        "started": "Started",
        "versions": "Versions checked against",
        "system": "System",
        "version": "Version",
        "file": "File",
        "summary": "Summary",
        "records": "Records (old / new / matched)",
        "kind": "Kind",
        "total": "Total",
        "open": "open findings",
        "accepted": "accepted differences (not counted)",
        "lifecycle": "Since the previous run",
        "new": "new",
        "persisting": "persisting",
        "reopened": "reopened",
        "resolved": "resolved",
        "no_previous": "This is the first recorded run.",
        "transitions": "State transitions",
        "transitions_help": "Rows: the old system's state. Columns: what the new system says. Green cells are what the mapping expects; red cells are records in an unexpected state.",
        "unexpected": "unexpected",
        "of": "of",
        "old": "Old",
        "new_state": "New",
        "by_field": "Findings by field",
        "entity": "Entity",
        "field": "Field",
        "count": "Count",
        "unmapped": "Values nobody mapped",
        "invalid": "Values the new system's dictionary does not allow",
        "value": "Value",
        "tags_lost": "Tags lost",
        "tag": "Tag",
        "label": "Label",
        "changes": "New and resolved since the previous run",
        "trend": "Trend over recent runs",
        "stale": "Open records without an update",
        "owner": "Owner",
        "days": "days without an update",
        "samples": "Sample findings",
        "uid": "UID",
        "expected": "Expected",
        "actual": "Actual",
        "suggestion": "Suggestion",
        "none": "None.",
        "masked": "(personal data, hidden)",
        "partial": "Partial run (--since-last): only records changed since {since} were compared "
        "({n}); findings about the others were carried from run {previous}. Record counts and "
        "transitions cover the changed records only.",
    },
    "zh": {
        "title": "数据核对报告",
        "run": "运行",
        "as_of": "核对日期",
        "started": "开始时间",
        "versions": "核对所依据的版本",
        "system": "系统",
        "version": "版本",
        "file": "文件",
        "summary": "概览",
        "records": "记录数(旧 / 新 / 已匹配)",
        "kind": "问题类型",
        "total": "合计",
        "open": "待处理问题",
        "accepted": "已接受的差异(不计入)",
        "lifecycle": "与上次运行相比",
        "new": "新增",
        "persisting": "持续",
        "reopened": "重现",
        "resolved": "已解决",
        "no_previous": "这是第一次记录的运行。",
        "transitions": "状态迁移矩阵",
        "transitions_help": "行:旧系统中的状态;列:新系统中的状态。绿色格为映射预期的结果,红色格为状态不符的记录。",
        "unexpected": "不符",
        "of": "/",
        "old": "旧",
        "new_state": "新",
        "by_field": "按字段统计",
        "entity": "实体",
        "field": "字段",
        "count": "数量",
        "unmapped": "未映射的值",
        "invalid": "新系统数据字典不允许的值",
        "value": "值",
        "tags_lost": "丢失的标签",
        "tag": "标签",
        "label": "名称",
        "changes": "与上次运行相比的新增与已解决",
        "trend": "近期运行趋势",
        "stale": "长期未更新的进行中记录",
        "owner": "负责人",
        "days": "天未更新",
        "samples": "问题样例",
        "uid": "UID",
        "expected": "期望值",
        "actual": "现值",
        "suggestion": "建议修正",
        "none": "无。",
        "masked": "(个人信息,已隐藏)",
        "partial": "部分核对(--since-last):只比较了 {since} 之后变更的记录({n} 条);"
        "其余记录的问题沿用自运行 {previous}。记录数与状态迁移矩阵只包含变更的记录。",
    },
}


def trend_svg(trend: list[dict], lang: str) -> Markup:
    """Stacked bars of open findings by kind over recent runs, as inline SVG."""
    if not trend:
        return Markup("")
    width, height, pad, legend_h = 640, 220, 36, 18 * ((len(KINDS) + 2) // 3)
    top = max(1, max(r["total"] for r in trend))
    bar = (width - 2 * pad) / len(trend)
    parts = [
        f'<svg viewBox="0 0 {width} {height + legend_h}" role="img" class="chart" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(TEXT[lang]["trend"])}</title>'
    ]
    parts.append(
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
    )
    parts.append(f'<text x="{pad - 6}" y="{pad}" text-anchor="end" font-size="11">{top}</text>')
    parts.append(
        f'<text x="{pad - 6}" y="{height - pad}" text-anchor="end" font-size="11">0</text>'
    )
    for i, run in enumerate(trend):
        x = pad + i * bar + bar * 0.15
        y = height - pad
        for kind in KINDS:
            n = run["by_kind"].get(kind, 0)
            if not n:
                continue
            h = (height - 2 * pad) * n / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar * 0.7:.1f}" height="{h:.1f}" '
                f'fill="{COLORS[kind]}"><title>{escape(run["as_of"])} {kind}: {n}</title></rect>'
            )
        parts.append(
            f'<text x="{x + bar * 0.35:.1f}" y="{height - pad + 14}" text-anchor="middle" '
            f'font-size="10">{escape(run["started"][5:10])}</text>'
        )
        parts.append(
            f'<text x="{x + bar * 0.35:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="10">'
            f"{run['total']}</text>"
        )
    for j, kind in enumerate(KINDS):
        lx, ly = pad + (j % 3) * 200, height + 4 + (j // 3) * 18
        parts.append(
            f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{COLORS[kind]}"/>'
            f'<text x="{lx + 14}" y="{ly + 9}" font-size="11">{kind}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def partial_note(data: dict) -> str:
    """One sentence for a --since-last run, else ''."""
    info = data["run"].get("since_last") or {}
    if not info:
        return ""
    changed = [v for v in info.values() if isinstance(v, dict)]
    since = min((v["since"] for v in changed), default="")
    n = sum(v["records"] for v in changed)
    return TEXT[data["lang"]]["partial"].format(
        since=since, n=n, previous=info.get("previous_run", "")
    )


def html(data: dict) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("reconcile.report") / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template("report.html.j2")
    return template.render(
        partial=partial_note(data),
        d=data,
        t=TEXT[data["lang"]],
        kinds=KINDS,
        colors=COLORS,
        trend=trend_svg(data["trend"], data["lang"]),
    )


def _md_cell(value) -> str:
    """A value safe in a Markdown table cell: one line, no pipe, no raw HTML."""
    text = " ".join(("" if value is None else str(value)).splitlines())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _md_table(rows: list[list], headers: list[str], empty: str) -> str:
    if not rows:
        return empty
    clean = [[_md_cell(v) for v in r] for r in rows]
    # values are shown as the systems hold them: 007 stays 007, 3584818.06 stays that
    return tabulate(
        clean, headers=[_md_cell(h) for h in headers], tablefmt="github", disable_numparse=True
    )


def markdown(data: dict) -> str:
    t, run = TEXT[data["lang"]], data["run"]
    v = run["versions"]
    out = [
        f"# {t['title']}: {run.get('project') or ''}",
        "",
        f"{t['run']} `{run['run_id']}` · {t['as_of']} {run['as_of']} · {t['started']} {run['started']}",
        "",
        *([partial_note(data), ""] if partial_note(data) else []),
        f"## {t['versions']}",
        "",
        _md_table(
            [
                [
                    role,
                    v[role].get("system", ""),
                    v[role]["version"],
                    v[role]["file"],
                    v[role]["sha256"][:12],
                ]
                for role in ("source", "target", "mapping")
            ],
            [t["system"], "", t["version"], t["file"], "sha256"],
            "",
        ),
        "",
        f"## {t['summary']}",
        "",
    ]
    entities = list(run["records"])
    rows = [
        [
            t["records"],
            *[
                f"{r['source']} / {r['target']} / {r.get('matched', '')}"
                for r in run["records"].values()
            ],
        ]
    ]
    rows += [
        [k, *[run["findings"]["by_entity"].get(e, {}).get(k, 0) for e in entities]] for k in KINDS
    ]
    rows.append(
        [t["total"], *[sum(run["findings"]["by_entity"].get(e, {}).values()) for e in entities]]
    )
    out += [_md_table(rows, [t["kind"], *entities], ""), ""]
    if run["findings"].get("accepted"):
        out += [f"{run['findings']['accepted']} {t['accepted']}", ""]
    life = run.get("lifecycle") or {}
    out += [f"## {t['lifecycle']}", ""]
    if data["previous"]:
        out += [
            f"{t['new']} {life.get('new', 0)} · {t['persisting']} {life.get('persisting', 0)} · "
            f"{t['reopened']} {life.get('reopened', 0)} · {t['resolved']} {life.get('resolved', 0)} "
            f"(← `{data['previous']['run_id']}`)",
            "",
        ]
        out += [
            _md_table(
                [[r["entity"], r["kind"], r["lifecycle"], r["count"]] for r in data["new"]],
                [t["entity"], t["kind"], "", t["new"]],
                t["none"],
            ),
            "",
            _md_table(
                [[r["entity"], r["kind"], r["count"]] for r in data["resolved"]],
                [t["entity"], t["kind"], t["resolved"]],
                t["none"],
            ),
            "",
        ]
    else:
        out += [t["no_previous"], ""]
    out += [f"## {t['transitions']}", "", t["transitions_help"], ""]
    for m in data["matrices"]:
        out += [
            f"### {m['entity']}.{m['source_field']} → {m['field']} ({t['unexpected']}: {m['unexpected']} "
            f"{t['of']} {m['total']})",
            "",
        ]
        rows = []
        for r in m["rows"]:
            cells = []
            for c in m["cols"]:
                n = m["cells"].get(f"{r['code']}\x1f{c['code']}", 0)
                mark = (
                    "✓"
                    if c["code"] == r["expected"]
                    else ("**✗**" if n and r["expected"] is not None else "")
                )
                cells.append(f"{mark}{n}" if n or mark == "✓" else "")
            rows.append([f"{r['code']} {r['label']}".strip(), *cells])
        out += [
            _md_table(
                rows,
                [
                    f"{t['old']} \\ {t['new_state']}",
                    *[f"{c['code']} {c['label']}".strip() for c in m["cols"]],
                ],
                "",
            ),
            "",
        ]
    out += [
        f"## {t['by_field']}",
        "",
        _md_table(
            [[r["entity"], r["field"] or "", r["kind"], r["count"]] for r in data["by_field"]],
            [t["entity"], t["field"], t["kind"], t["count"]],
            t["none"],
        ),
        "",
        f"## {t['unmapped']}",
        "",
        _md_table(
            [[r["entity"], r["field"], r["old_value"], r["count"]] for r in data["unmapped"]],
            [t["entity"], t["field"], t["value"], t["count"]],
            t["none"],
        ),
        "",
        f"## {t['invalid']}",
        "",
        _md_table(
            [[r["entity"], r["field"], r["actual_value"], r["count"]] for r in data["invalid"]],
            [t["entity"], t["field"], t["value"], t["count"]],
            t["none"],
        ),
        "",
        f"## {t['tags_lost']}",
        "",
        _md_table(
            [
                [r["entity"], r["field"], r["expected_value"], r["label"], r["count"]]
                for r in data["tags_lost"]
            ],
            [t["entity"], t["field"], t["tag"], t["label"], t["count"]],
            t["none"],
        ),
        "",
        f"## {t['trend']}",
        "",
        _md_table(
            [[r["started"][:16], r["as_of"], r["total"]] for r in data["trend"]],
            [t["started"], t["as_of"], t["total"]],
            t["none"],
        ),
        "",
    ]
    out += [f"## {t['stale']}", ""]
    stale = run.get("stale") or {}
    if not stale:
        out += [t["none"], ""]
    for entity, st in stale.items():
        out += [
            f"{entity}: {st['total']} ({st['days']} {t['days']})",
            "",
            _md_table(
                [[o, n] for o, n in st["by_owner"].items()], [t["owner"], t["count"]], t["none"]
            ),
            "",
        ]
    out += [f"## {t['samples']}", ""]
    for kind in KINDS:
        rows = data["samples"].get(kind)
        if not rows:
            continue
        out += [
            f"### {kind}",
            "",
            _md_table(
                [
                    [
                        r["uid"],
                        r["field"],
                        r["old_value"],
                        r["expected_value"],
                        r["actual_value"],
                        r["suggestion"],
                    ]
                    for r in rows
                ],
                [t["uid"], t["field"], t["old"], t["expected"], t["actual"], t["suggestion"]],
                "",
            ),
            "",
        ]
    return "\n".join(out).rstrip() + "\n"
