"""The `reconcile` command line: parse options, call one library function, map errors to exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import click
from tabulate import tabulate

from . import __version__
from .check import check_project
from .dictionary.diff import diff_dictionaries
from .dictionary.model import Dictionary
from .errors import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, EXIT_INTERRUPTED, ReconcileError
from .schema import load_model


class _Group(click.Group):
    """Turns library errors into one paragraph on stderr and exit code 2 (traceback with --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ReconcileError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(
                f"error: internal error ({type(exc).__name__}: {exc}). This is a bug in reconcile; "
                "run again with --debug for the traceback and report it.",
                err=True,
            )
            ctx.exit(EXIT_ERROR)


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json (on stdout) for machines.",
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconcile")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-paragraph errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Check that a new CRM says what the old one meant."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("project_dir", default=".", type=click.Path(path_type=Path))
@format_option
def check(project_dir: Path, fmt: str) -> None:
    """Validate the project's data dictionaries and field mappings.

    Reports schema errors (unknown keys, typos, wrong types, duplicate keys), broken
    cross-references, version pins that do not match, and source codes nobody mapped.
    Exit 0 when clean, 1 when problems are found, 2 when a file cannot be read.
    """
    result = check_project(project_dir)
    problems = result.problems
    if fmt == "json":
        out = {
            "project": str(project_dir),
            "files": [str(x.doc.path) for x in result.dictionaries + result.mappings],
            "errors": len(result.errors),
            "warnings": len(problems) - len(result.errors),
            "problems": [p.to_dict() for p in problems],
        }
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
    elif problems:
        rows = [(str(p.location), p.severity, p.kind, p.message) for p in problems]
        click.echo(
            tabulate(
                rows,
                headers=["where", "severity", "kind", "problem"],
                maxcolwidths=[None, None, None, 70],
            )
        )
    n_files = len(result.dictionaries) + len(result.mappings)
    click.echo(
        f"{n_files} file(s) checked: {len(result.errors)} error(s), "
        f"{len(problems) - len(result.errors)} warning(s)",
        err=True,
    )
    sys.exit(EXIT_FINDINGS if result.errors else EXIT_CLEAN)


@cli.group()
def dictionary() -> None:
    """Work with data dictionaries."""


@dictionary.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md", show_default=True)
def dictionary_diff(old: Path, new: Path, fmt: str) -> None:
    """The semantic changes between two versions of a dictionary.

    Fields added, removed or retyped; enum codes added, removed or deprecated; labels
    changed. Markdown for the meeting notes, or JSON. Exit 1 when there are changes.
    """
    a, b = load_model(Dictionary, old), load_model(Dictionary, new)
    changes = diff_dictionaries(a, b)
    if fmt == "json":
        out = {
            "old": {"system": a.system, "version": a.version, "file": str(old)},
            "new": {"system": b.system, "version": b.version, "file": str(new)},
            "changes": [c.to_dict() for c in changes],
        }
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        click.echo(f"## {a.system} v{a.version} → {b.system} v{b.version}\n")
        if changes:
            rows = [
                (c.entity, c.field, c.change, c.item, _cell(c.old), _cell(c.new)) for c in changes
            ]
            headers = ["entity", "field", "change", "item", "old", "new"]
            click.echo(tabulate(rows, headers=headers, tablefmt="github"))
        else:
            click.echo("No semantic changes.")
    sys.exit(EXIT_FINDINGS if changes else EXIT_CLEAN)


def _progress(quiet: bool):
    return (lambda _msg: None) if quiet else (lambda msg: click.echo(msg, err=True))


run_options = [
    format_option,
    click.option(
        "--lang",
        type=click.Choice(["zh", "en"]),
        default=None,
        help="Language of labels in the worksheet (default: the project's language).",
    ),
    click.option(
        "--as-of",
        type=click.DateTime(["%Y-%m-%d"]),
        default=None,
        help="Judge temporary codes as of this date (default: the project's as_of, else today).",
    ),
    click.option("--quiet", "-q", is_flag=True, help="No progress on stderr."),
    click.option(
        "--fail-on",
        default=None,
        metavar="RULES",
        help="Exit 1 only when a threshold is crossed, e.g. 'state_mismatch>0,missing_in_target>=10' "
        "(counters: finding kinds, total, new, reopened, resolved, stale). Default: any finding.",
    ),
    click.option(
        "--notify",
        multiple=True,
        metavar="URL",
        help="Post the summary to a webhook (DingTalk, WeCom or Slack; repeatable).",
    ),
    click.option(
        "--notify-format",
        type=click.Choice(["slack", "dingtalk", "wecom"]),
        default=None,
        help="Message format for --notify (default: from the webhook's host).",
    ),
    click.option(
        "--since-last",
        is_flag=True,
        help="Compare only records changed since the last recorded run (by the dictionaries' "
        "updated_at); findings about the others are carried forward.",
    ),
    click.option(
        "--partitions",
        type=click.IntRange(1, 4096),
        default=1,
        show_default=True,
        help="Stream both sides into this many UID-hash partitions on disk ($TMPDIR) and diff "
        "one at a time: memory follows a partition, not the table.",
    ),
    click.option(
        "--stale-days",
        type=click.IntRange(1, 3650),
        default=7,
        show_default=True,
        help="Report open records not updated for this many days, by owner.",
    ),
]


def with_run_options(fn):
    for option in reversed(run_options):
        fn = option(fn)
    return fn


def _run(
    project_dir: Path,
    fmt,
    lang,
    as_of,
    quiet,
    fail_on,
    notify,
    notify_format,
    since_last,
    partitions,
    stale_days,
) -> None:
    from .drift import check_and_record, crossed, parse_fail_on
    from .notify import notify as post_alerts
    from .project import load_project

    thresholds = parse_fail_on(fail_on) if fail_on is not None else None
    from .notify import check_url

    for url in notify:
        check_url(url)
    progress = _progress(quiet)
    proj = load_project(project_dir)
    _, folder, doc = check_and_record(
        proj,
        lang=lang,
        as_of=as_of.date() if as_of else None,
        stale_days=stale_days,
        progress=progress,
        since_last=since_last,
        partitions=partitions,
    )
    progress(f"wrote {folder}")
    hits = crossed(doc, thresholds) if thresholds else []
    failed = bool(hits) if thresholds is not None else bool(doc["findings"]["total"])
    for why in post_alerts(list(notify), doc, hits, lang or proj.config.language, notify_format):
        click.echo(f"warning: {why}", err=True)
    if fmt == "json":
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    elif not quiet or failed:
        click.echo(_summary_table(doc))
        if hits:
            click.echo("thresholds crossed: " + ", ".join(hits))
    sys.exit(EXIT_FINDINGS if failed else EXIT_CLEAN)


def _summary_table(doc: dict) -> str:
    v = doc["versions"]
    lines = [
        f"run {doc['run_id']}: {v['source']['system']} v{v['source']['version']} → "
        f"{v['target']['system']} v{v['target']['version']} (mapping v{v['mapping']['version']}), "
        f"as of {doc['as_of']}",
        "",
    ]
    entities = list(doc["records"])
    rows = [
        [
            "records (old / new)",
            *[f"{r['source']:,} / {r['target']:,}" for r in doc["records"].values()],
        ]
    ]
    from .findings import KINDS

    for kind in KINDS:
        counts = [doc["findings"]["by_entity"].get(e, {}).get(kind, 0) for e in entities]
        rows.append([kind, *counts])
    rows.append(
        [
            "total findings",
            *[sum(doc["findings"]["by_entity"].get(e, {}).values()) for e in entities],
        ]
    )
    lines.append(
        tabulate(rows, headers=["", *entities], colalign=("left", *["right"] * len(entities)))
    )
    life = doc.get("lifecycle") or {}
    if life.get("previous_run"):
        lines.append(
            f"\nsince run {life['previous_run']}: {life['new']} new, {life['persisting']} persisting, "
            f"{life['reopened']} reopened, {life['resolved']} resolved"
        )
    for entity, st in (doc.get("stale") or {}).items():
        owners = ", ".join(f"{o} {n}" for o, n in list(st["by_owner"].items())[:5])
        lines.append(
            f"\n{entity}: {st['total']} open record(s) not updated for {st['days']} days ({owners}, …)"
        )
    if doc["findings"].get("accepted"):
        lines.append(
            f"\n{doc['findings']['accepted']} accepted difference(s) not shown (reviewers kept them)"
        )
    folder = Path(os.path.relpath(Path(doc["outputs"]["summary"]).parent))
    lines += [
        "",
        f"worksheet: {folder / 'worksheet.xlsx'}",
        f"findings:  {folder / 'findings.csv'}",
    ]
    return "\n".join(lines)


@cli.command()
@click.argument("project_dir", default=".", type=click.Path(path_type=Path))
@with_run_options
def run(project_dir: Path, **options) -> None:
    """Compare both CRMs of a project and write findings and the correction worksheet.

    Reads reconcile.yaml in PROJECT_DIR, extracts both systems, projects every old record into
    the new system's terms with the mapping, and reports typed findings. Outputs go to
    OUTPUT/<run id>/ and recorded in the run history, where every finding is followed from run
    to run (new, persisting, reopened, resolved, accepted). Two runs of one project never
    overlap. Exit 0 when nothing is found (or no --fail-on threshold is crossed), 1 otherwise,
    2 on error. A failed --notify alert is a warning, never a failed run.
    """
    _run(project_dir, **options)


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Folder for the demo project, its databases and its runs.",
)
@click.option("--fresh", is_flag=True, help="Rebuild the demo databases even if they exist.")
@click.option(
    "--size",
    type=click.IntRange(1000, 20_000_000),
    default=5000,
    show_default=True,
    help="Number of legacy opportunities to generate.",
)
@with_run_options
def demo(out: Path, fresh: bool, size: int, **options) -> None:
    """Build the demo CRMs (the seed article's migration incident) and run the check on them.

    The databases are built in OUT when absent and kept otherwise, so that the review round trip
    can be tried on them; --fresh rebuilds them. OUT is an ordinary project: every other
    command works inside it.
    """
    from .demo import prepare

    prepare(out, fresh=fresh, n=size, progress=_progress(options["quiet"]))
    _run(out, **options)


@cli.command()
@click.argument("run_id", required=False)
@click.option("--project", "project_dir", type=click.Path(path_type=Path), default=Path("."))
@click.option(
    "--lang", type=click.Choice(["zh", "en"]), default=None, help="Default: the project's language."
)
@click.option(
    "--format", "fmt", type=click.Choice(["html", "md"]), default="html", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="File to write (default: report.html or report.md in the run's folder).",
)
def report(
    run_id: str | None, project_dir: Path, lang: str | None, fmt: str, output: Path | None
) -> None:
    """A report for the data-semantics meeting: one self-contained HTML page, or Markdown.

    The latest run by default. Versions used, summary by entity, kind and field, the state
    transition matrix (old state × new state, unexpected cells highlighted), unmapped and
    invalid values, tags lost, new and resolved since the previous run, the trend over recent
    runs, stale records by owner and sample rows per kind. Opens from a file or an e-mail
    attachment: no script, no network.
    """
    from .atomic import atomic_path
    from .project import load_project
    from .report import data as report_data
    from .report import render

    proj = load_project(project_dir)
    d = report_data.build(proj, run_id, lang or proj.config.language)
    text = render.html(d) if fmt == "html" else render.markdown(d)
    path = output or Path(d["run"]["folder"]) / f"report.{fmt}"
    with atomic_path(path) as tmp:
        tmp.write_text(text, "utf-8")
    click.echo(os.path.relpath(path))


@cli.command("history")
@click.argument("project_dir", default=".", type=click.Path(path_type=Path))
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def history_cmd(project_dir: Path, limit: int, fmt: str) -> None:
    """List the project's recorded runs, newest first, with their lifecycle counts."""
    from .project import load_project

    proj = load_project(project_dir)
    rows = []
    if proj.has_history():
        history = proj.history()
        try:
            rows = history.runs(limit)
        finally:
            history.close()
    if fmt == "json":
        click.echo(json.dumps([r["summary"] for r in rows], ensure_ascii=False, indent=2))
        return
    table = []
    for r in rows:
        d = r["summary"]
        life = d.get("lifecycle") or {}
        v = d["versions"]
        table.append(
            [
                d["run_id"],
                d["as_of"],
                d["findings"]["total"],
                life.get("new", ""),
                life.get("persisting", ""),
                life.get("resolved", ""),
                d["findings"].get("accepted", 0),
                f"{v['source']['system']} v{v['source']['version']} → {v['target']['system']} "
                f"v{v['target']['version']}, mapping v{v['mapping']['version']}",
            ]
        )
    click.echo(
        tabulate(
            table,
            headers=[
                "run",
                "as of",
                "open",
                "new",
                "persisting",
                "resolved",
                "accepted",
                "versions",
            ],
        )
        if table
        else "no runs recorded yet"
    )


@cli.command()
@click.argument("run_id")
@click.option("--project", "project_dir", type=click.Path(path_type=Path), default=Path("."))
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def show(run_id: str, project_dir: Path, fmt: str) -> None:
    """Show one recorded run: versions, counts by kind and entity, lifecycle, outputs."""
    from .project import load_project
    from .report.data import find_run

    proj = load_project(project_dir)
    doc = find_run(proj, run_id)
    if fmt == "json":
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        click.echo(_summary_table(doc))


def _project_of(path: Path, given: Path | None) -> Path:
    """The project a worksheet belongs to: --project, else the folder above its runs folder."""
    if given is not None:
        return given
    for parent in Path(path).resolve().parents:
        if (parent / "reconcile.yaml").is_file():
            return parent
    return Path(".")


@cli.command()
@click.argument("worksheet", type=click.Path(path_type=Path))
@click.option(
    "--project",
    "project_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Project folder (default: the one the worksheet lies in).",
)
@click.option("--execute", is_flag=True, help="Write to the new CRM. Without it: a dry run.")
@click.option(
    "--skip-invalid", is_flag=True, help="Apply the valid rows even if some rows are invalid."
)
@click.option("--reviewer", default=None, help="Reviewer for rows that name none.")
@click.option(
    "--run", "run_id", default=None, help="Run id, for a CSV worksheet kept outside its run folder."
)
@click.option(
    "--emit-upsert",
    type=click.Path(path_type=Path),
    default=None,
    help="Write import files (one CSV per object, keyed by external id) instead of SQL.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def apply(
    worksheet, project_dir, execute, skip_invalid, reviewer, run_id, emit_upsert, fmt
) -> None:
    """Apply a reviewed worksheet to the new CRM, safely.

    Validates every row first (locked cells intact, decisions from approve/reject/edit,
    corrected values valid for their field). A dry run by default: prints the exact SQL and
    writes it as a patch file. With --execute the changes run in one transaction with
    compare-and-set: a value that changed since the run is a conflict and is left alone. An
    undo patch and an audit record are written; rejected rows are remembered as accepted
    differences; answers to unmapped values become a proposed next mapping version.
    Exit 0 when everything planned was applied, 1 on conflicts or skipped rows, 2 when the
    worksheet is invalid.
    """
    from .apply.run import apply_worksheet
    from .project import load_project

    proj = load_project(_project_of(worksheet, project_dir))
    result = apply_worksheet(
        proj,
        worksheet,
        execute=execute,
        skip_invalid=skip_invalid,
        reviewer=reviewer,
        run_id=run_id,
        emit_upsert=emit_upsert,
    )
    problems = result.review.problems
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str))
    else:
        for p in problems:
            click.echo(f"invalid: {p}", err=True)
        if not execute and emit_upsert is None:
            for c in result.changes:
                for sql, params in c.sql:
                    click.echo(
                        f"-- #{c.seq} {c.action} {c.entity} {c.target_id or c.uid} {c.field or ''}"
                    )
                    click.echo(f"{sql.strip()};  -- {json.dumps(params, ensure_ascii=False)}")
        rows = sorted(result.counts().items())
        if rows:
            click.echo(tabulate(rows, headers=["status", "changes"]))
        for name, path in sorted(result.outputs.items()):
            click.echo(f"{name}: {os.path.relpath(path)}")
    if problems and not skip_invalid:
        click.echo(
            f"error: {len(problems)} invalid row(s) in {worksheet}; nothing was applied "
            "(fix them, or pass --skip-invalid)",
            err=True,
        )
        sys.exit(EXIT_ERROR)
    conflicts = sum(1 for c in result.changes if c.status == "conflict")
    sys.exit(EXIT_FINDINGS if conflicts or problems else EXIT_CLEAN)


@cli.command()
@click.argument("patch", type=click.Path(path_type=Path))
@click.option("--project", "project_dir", type=click.Path(path_type=Path), default=None)
@click.option("--execute", is_flag=True, help="Write to the new CRM. Without it: a dry run.")
def undo(patch: Path, project_dir: Path | None, execute: bool) -> None:
    """Undo an executed apply with the undo patch it wrote (undo.json).

    Each step is compare-and-set on the value the apply wrote: a value changed since is a
    conflict and left alone. A dry run by default. Exit 1 when any step conflicts.
    """
    from .apply.run import undo_patch
    from .project import load_project

    proj = load_project(_project_of(patch, project_dir))
    report = undo_patch(proj, patch, execute)
    click.echo(
        tabulate(sorted(Counter(s["status"] for s in report).items()), headers=["status", "steps"])
    )
    sys.exit(EXIT_FINDINGS if any(s["status"] == "conflict" for s in report) else EXIT_CLEAN)


def _cell(value) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code so tests can call it directly."""
    try:
        rc = cli.main(args=argv, prog_name="reconcile", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return EXIT_ERROR
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    return rc if isinstance(rc, int) else EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
