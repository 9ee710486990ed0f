"""Run every family's benchmark and write one report: bench/results.md and bench/results.json.

Each family runs in its own process (so one family's memory does not weigh on the next) and writes
bench/out/<family>.json; this script collects them.

Usage: python -m bench [--quick] [--only text,vision,...]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

from bench.common import OUT, ROOT

FAMILIES = ("text", "vision", "speech", "generation", "finetune", "memory")
COLUMNS = ("workload", "ours", "reference", "unit", "ratio", "floor", "vs_floor", "target", "note")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def _markdown(results: dict, meta: dict) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Measured {meta['when']} on {meta['machine']} ({meta['cores']} cores), mode: {meta['mode']}. "
        "Each row's reference is a plain-library call of the same model and input, measured in the same run. "
        "`ratio` > 1 means the project is faster; `vs_floor` is ours divided by the FLOP floor from DESIGN.md.",
        "",
    ]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(FAMILIES))
    args = parser.parse_args()
    results: dict[str, list | str] = {}
    for family in args.only.split(","):
        out = OUT / f"{family}.json"
        out.unlink(missing_ok=True)
        start = time.perf_counter()
        cmd = [sys.executable, "-m", f"bench.{family}"] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        print(f"bench.{family}: exit {proc.returncode} in {time.perf_counter() - start:.0f} s", flush=True)
        if proc.returncode == 0 and out.exists():
            results[family] = json.loads(out.read_text())
        else:
            results[family] = f"bench.{family} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:] or ''}"
    meta = {
        "when": datetime.now(timezone.utc).isoformat(timespec="minutes"),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "cores": __import__("os").cpu_count(),
        "mode": "quick" if args.quick else "full",
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (ROOT / "bench" / "results.md").write_text(_markdown(results, meta) + "\n")
    print((ROOT / "bench" / "results.md").read_text())


if __name__ == "__main__":
    main()
