"""Run every family's benchmark and write one report: bench/results.md and bench/results.json.

Each family runs in its own process (so one family's memory does not weigh on the next) and writes
bench/out/<family>.json; this script collects them.

Usage: python -m bench [--quick] [--only text,vision,...]  (--only keeps the other families' last results)
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

from bench.common import MET, NOISE, NOT_MET, OUT, ROOT

FAMILIES = ("text", "vision", "speech", "generation", "finetune", "memory", "engines", "hosted", "clicks", "many_people",
            "runs_store", "ray_jobs")  # ray_jobs: a local Ray head with 2 CPUs on this 2-core machine (bench/ray_jobs.py)
# Rows a family also shows from another module: (module, its flags, the bench/out name it writes). The Text page's
# default engines (generation on llama.cpp or CTranslate2, sentiment on ONNX Runtime) belong with the text rows.
ALSO = {"text": [("bench.engines", ["--text"], "text-engines")],
        "finetune": [("bench.prompt", [], "prompt")]}  # the Fine-tune page's prompt arm (k = 0 and 4)
COLUMNS = ("workload", "ours", "reference", "unit", "ratio", "spread", "floor", "vs_floor", "peak_mb", "target", "status", "note")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def _markdown(results: dict, meta: dict) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Measured {meta['when']} on {meta['machine']} ({meta['cores']} cores), mode: {meta['mode']}, "
        f"families run then: {meta.get('families_run', 'all')} (the others keep their previous results). "
        "Each row's reference is a plain-library call of the same model and input, measured in the same run. "
        "`ratio` > 1 means the project is faster; `spread` is the lower and upper quartile of the ratio over the "
        "back-to-back pairs (this machine is shared, so that is the noise); `vs_floor` is ours divided by the FLOP "
        "floor from DESIGN.md; `peak_mb` is the process's peak resident memory during our run. `status`: `met`; "
        "`within noise` when the median misses the target but the spread reaches it; `not met`.",
        "",
    ]
    lines += _targets(results)
    for family, rows in results.items():
        lines += [f"## {family}", ""]
        if isinstance(rows, str):
            lines += [f"Not measured: {rows}", ""]
            continue
        extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in COLUMNS]
        keys = list(COLUMNS) + extra
        lines.append("| " + " | ".join(keys) + " |")
        lines.append("|" + "---|" * len(keys))
        lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def _targets(results: dict) -> list[str]:
    """The verdicts first: how many rows meet their target, and every row that does not, with its note."""
    rows = [(family, r) for family, rs in results.items() if isinstance(rs, list) for r in rs if r.get("status")]
    counts = {status: sum(r["status"] == status for _, r in rows) for status in (MET, NOISE, NOT_MET)}
    lines = ["## Targets", "", f"{counts[MET]} rows meet their target, {counts[NOISE]} are within noise of it, "
             f"{counts[NOT_MET]} do not.", ""]
    misses = [(family, r) for family, r in rows if r["status"] != MET]
    if misses:
        lines += ["| family | workload | ratio or vs_floor | spread | target | status | note |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {family} | {_cell(r['workload'])} | {_cell(r.get('ratio', r.get('vs_floor')))} | {_cell(r.get('spread'))} "
                  f"| {_cell(r['target'])} | {r['status']} | {_cell(r.get('note'))} |" for family, r in misses]
        lines.append("")
    skipped = [f"{family}: {r['workload']} ({r['note']})" for family, rs in results.items() if isinstance(rs, list)
               for r in rs if str(r.get("note", "")).startswith("skipped")]
    lines += [f"Not measured here: {'; '.join(skipped)}.", ""] if skipped else []
    return lines


def _run(module: str, flags: list[str], name: str) -> list | str:
    """Run one benchmark module in its own process: its rows (from bench/out/<name>.json), or why it failed."""
    out = OUT / f"{name}.json"
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module] + flags, cwd=ROOT, capture_output=True, text=True)
    print(f"{module} {' '.join(flags)}: exit {proc.returncode} in {time.perf_counter() - start:.0f} s", flush=True)
    if proc.returncode == 0 and out.exists():
        return json.loads(out.read_text())
    return f"{module} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:] or ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(FAMILIES))
    args = parser.parse_args()
    combined = ROOT / "bench" / "results.json"
    earlier = json.loads(combined.read_text())["results"] if combined.exists() and args.only != ",".join(FAMILIES) else {}
    results: dict[str, list | str] = {}
    for family in args.only.split(","):
        parts = [(f"bench.{family}", [], family)] + ALSO.get(family, [])
        outcomes = [_run(module, flags + (["--quick"] if args.quick else []), name) for module, flags, name in parts]
        failed = [o for o in outcomes if isinstance(o, str)]
        results[family] = failed[0] if failed else [row for rows in outcomes for row in rows]
    results = {family: results.get(family, earlier.get(family)) for family in FAMILIES if family in results or family in earlier}
    meta = {
        "when": datetime.now(timezone.utc).isoformat(timespec="minutes"),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "cores": __import__("os").cpu_count(),
        "mode": "quick" if args.quick else "full",
        "families_run": args.only,
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (ROOT / "bench" / "results.md").write_text(_markdown(results, meta) + "\n")
    print((ROOT / "bench" / "results.md").read_text())


if __name__ == "__main__":
    main()
