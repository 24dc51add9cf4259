"""`reconcile run` at scale against datacompy's PandasCompare, on the same demo data.

    pip install -e '.[bench]'
    python benchmarks/run_vs_datacompy.py [--n 1000000] [--work /tmp/reconcile-bench]

Builds the demo CRMs with N opportunities (kept between runs), then measures, each in its own
process so that peak memory is that tool's alone:

  reconcile   `reconcile run` end to end: extraction, projection, diff, outputs (worksheet too);
  datacompy   the same two tables read with pandas, given the same renames, code maps, unit and
              time-zone conversions by hand, then PandasCompare joined on the UID.

datacompy compares scalar columns only: tags, duplicates handling, cutover and dictionary
validity are reconcile's alone, so the check at the end compares what both can see: records
only on one side and the per-column count of unequal values.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

DATACOMPY = r"""
import json, sqlite3, sys, time
import pandas as pd
import yaml
import datacompy

work = sys.argv[1]
t0 = time.perf_counter()
mapping = yaml.safe_load(open(f"{work}/mappings/legacy_to_new.yaml", encoding="utf-8"))
pairs = {f.get("source"): f for f in mapping["entities"]["opportunity"]["fields"]}
def codes(field):
    return {k: (v if isinstance(v, str) else v["to"]) for k, v in pairs[field]["values"].items()}
old = pd.read_sql(
    "SELECT opp_guid AS uid, name, customer_name, owner, stage, quotation_status, amount_fen, "
    "expected_close, created_at FROM opportunities WHERE is_deleted IS NOT 1",
    sqlite3.connect(f"{work}/legacy_crm.sqlite"))
new = pd.read_sql(
    "SELECT d.legacy_uid AS uid, d.title, d.account_name, d.owner_login, s.code AS stage, "
    "d.quote_stage, d.amount, d.expected_close_date, d.created_at FROM deals d "
    "LEFT JOIN deal_stages s ON s.id = d.stage_id WHERE d.archived IS NOT 1 AND d.legacy_uid IS NOT NULL",
    sqlite3.connect(f"{work}/new_crm.sqlite"))
t1 = time.perf_counter()
left = pd.DataFrame({
    "uid": old["uid"],
    "title": old["name"].str.strip(),
    "account_name": old["customer_name"],
    "owner_login": old["owner"].replace(pairs["owner"]["values"]),
    "stage": old["stage"].map(codes("stage")),
    "quote_stage": old["quotation_status"].map(codes("quotation_status")),
    "amount": (old["amount_fen"] / 100).round(2),
    "expected_close_date": pd.to_datetime(old["expected_close"], format="%Y-%m-%d", errors="coerce"),
    "created_at": pd.to_datetime(old["created_at"], format="%Y-%m-%d %H:%M:%S")
        .dt.tz_localize("Asia/Shanghai").dt.tz_convert("UTC").dt.tz_localize(None),
})
right = new.rename(columns={}).assign(
    expected_close_date=pd.to_datetime(new["expected_close_date"], format="%Y-%m-%d", errors="coerce"),
    created_at=pd.to_datetime(new["created_at"], format="%Y-%m-%d %H:%M:%S"),
)
right = right.drop_duplicates("uid", keep=False)
t2 = time.perf_counter()
cmp = datacompy.PandasCompare(left, right, join_columns="uid", abs_tol=0.01)
unequal = {c["column"]: int(c["unequal_cnt"]) for c in cmp.column_stats if c["unequal_cnt"]}
result = {
    "only_old": len(cmp.df1_unq_rows), "only_new": len(cmp.df2_unq_rows), "unequal": unequal,
    "read_s": round(t1 - t0, 2), "prepare_s": round(t2 - t1, 2), "compare_s": round(time.perf_counter() - t2, 2),
}
print(json.dumps(result))
"""


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    wrapper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "sys.stderr.write(p.stderr)\n"
        "print(json.dumps({'wall': wall, 'rss': rss, 'rc': p.returncode, 'out': p.stdout}))\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    info = json.loads(done.stdout)
    if info["rc"] not in (0, 1):
        sys.exit(f"{cmd} failed ({info['rc']}):\n{done.stderr[-3000:]}")
    return info["wall"], info["rss"], info["out"]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/reconcile-bench"))
    args = ap.parse_args()
    work = args.work / f"n{args.n}"
    if not (work / "new_crm.sqlite").exists():
        work.mkdir(parents=True, exist_ok=True)
        for name in ("reconcile.yaml", "data_dictionary", "mappings"):
            src = REPO / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "fixtures.demo", str(work), "--n", str(args.n)],
            check=True,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
        print(f"built demo CRMs with {args.n:,} opportunities in {time.perf_counter() - t:.1f} s")
    shutil.rmtree(work / "runs", ignore_errors=True)

    wall, rss, out = run_measured(
        [sys.executable, "-m", "reconcile.cli", "run", str(work), "--format", "json", "--quiet"]
    )
    summary = json.loads(out)
    r_counts = summary["findings"]["by_kind"]
    dc_wall, dc_rss, dc_out = run_measured([sys.executable, "-c", DATACOMPY, str(work)])
    dc = json.loads(dc_out)

    rows = [
        (
            "reconcile run (end to end)",
            wall,
            rss,
            f"extract {summary['timings']['extract']:.1f} s, "
            f"compare {summary['timings']['compare']:.1f} s, {summary['findings']['total']} findings",
        ),
        (
            "datacompy PandasCompare",
            dc_wall,
            dc_rss,
            f"read {dc['read_s']} s, prepare {dc['prepare_s']} s, compare {dc['compare_s']} s",
        ),
    ]
    print(f"\nN = {args.n:,} opportunities per side, {os.cpu_count()} cores\n")
    print(f"{'tool':32} {'wall s':>8} {'peak MiB':>9}  detail")
    for name, w, m, detail in rows:
        print(f"{name:32} {w:8.1f} {m:9.0f}  {detail}")
    print(
        f"\ndiff stage only: reconcile {summary['timings']['compare']:.1f} s vs datacompy "
        f"{dc['compare_s']:.1f} s ({dc['compare_s'] / max(summary['timings']['compare'], 1e-9):.1f}x)"
    )

    # What both can see: records on one side only, and unequal scalar values per column.
    by_field: dict[str, int] = {}
    findings = (
        json.loads(Path(summary["outputs"]["findings"]).read_text())
        if summary["outputs"]["findings"].endswith(".json")
        else []
    )
    for f in findings:
        if f["kind"] in ("state_mismatch", "value_mismatch") and f["field"] in dc["unequal"]:
            by_field[f["field"]] = by_field.get(f["field"], 0) + 1
    print("\nagreement on what both tools compare:")
    print(
        f"  only in old: reconcile missing_in_target={r_counts.get('missing_in_target', 0)}, "
        f"datacompy={dc['only_old']} (datacompy also counts the "
        f"{r_counts.get('duplicate_uid', 0)} UIDs loaded twice, which it cannot match)"
    )
    for col, n in sorted(dc["unequal"].items()):
        print(f"  {col:20} datacompy {n:6}   reconcile {by_field.get(col, 0):6}")


if __name__ == "__main__":
    main()
