"""Shared benchmark plumbing: timing with warm-up, and a JSON + markdown report."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))


def parse_args(description: str) -> argparse.Namespace:
    """Standard flags: ``--quick`` for few repeats."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="few repeats, for a fast check")
    return parser.parse_args()


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(name: str, rows: list[dict]) -> None:
    """Print rows as JSON and as a markdown table, and write bench/out/<name>.json.

    Each row is one workload: ``workload``, ``ours``, ``reference``, ``unit``, ``ratio``,
    ``target`` and ``note`` are the usual keys; any other keys are printed too.
    """
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps(rows, indent=2))
    keys = list(dict.fromkeys(k for row in rows for k in row))
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{row[k]:.4g}" if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys]
        print("| " + " | ".join(cells) + " |")
