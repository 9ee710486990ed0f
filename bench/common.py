"""Shared benchmark plumbing: paired timing with its spread and peak memory, verdicts, and the report rows."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.config import set_openmp_wait

set_openmp_wait()  # every bench runs its models as app.py does (set before torch or llama.cpp loads OpenMP)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

MET, NOISE, NOT_MET = "met", "within noise", "not met"


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


@dataclass
class Paired:
    """Ours against a reference, timed in back-to-back pairs.

    Attributes:
        ours_s: median seconds of ours.
        reference_s: median seconds of the reference.
        ratio: median over pairs of reference / ours (> 1: ours is faster). Pairs share the machine's
            load at that moment, so drift on this shared machine cancels.
        low, high: the lower and upper quartile of the per-pair ratios: the run-to-run spread.
        peak_mb: the highest peak resident memory of the process during one of our runs.
        pairs: every pair's (ours, reference) seconds.
    """

    ours_s: float
    reference_s: float
    ratio: float
    low: float
    high: float
    peak_mb: float
    pairs: list[tuple[float, float]]

    @property
    def spread(self) -> str:
        return f"{self.low:.3f}–{self.high:.3f}"


def paired(ours: Callable[[], object], reference: Callable[[], object], repeats: int, warmup: int = 1,
           self_timed: bool = False) -> Paired:
    """Time ``ours`` and ``reference`` alternately, swapping which goes first in every pair.

    Args:
        ours, reference: the two workloads; each warms up ``warmup`` times first.
        repeats: pairs timed.
        self_timed: the callables return the seconds that count (e.g. training time without setup).
    """
    from core.measure import PeakTracker

    for _ in range(warmup):
        ours(), reference()

    def timed(fn) -> tuple[float, float]:
        with PeakTracker() as tracker:
            start = time.perf_counter()
            value = fn()
            seconds = time.perf_counter() - start
        return (float(value) if self_timed else seconds), tracker.peak_mb

    pairs, peak = [], 0.0
    for i in range(repeats):
        if i % 2 == 0:
            (mine, mb), (theirs, _) = timed(ours), timed(reference)
        else:
            (theirs, _), (mine, mb) = timed(reference), timed(ours)
        pairs.append((mine, theirs))
        peak = max(peak, mb)
    return summarise(pairs, peak)


def summarise(pairs: list[tuple[float, float]], peak_mb: float) -> Paired:
    """Medians, the median per-pair ratio and its quartiles, from (ours, reference) pairs of seconds."""
    ratios = sorted(theirs / max(mine, 1e-12) for mine, theirs in pairs)
    low, _, high = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return Paired(statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs),
                  statistics.median(ratios), low, high, peak_mb, pairs)


def verdict(value: float | None, need: float, spread: tuple[float, float] | None = None, at_most: bool = False) -> str:
    """``met`` when value reaches need (>=, or <= with ``at_most``); ``within noise`` when it does not but
    the run-to-run spread of the ratio reaches it; otherwise ``not met``."""
    if value is None:
        return ""
    if (value <= need) if at_most else (value >= need):
        return MET
    if spread is not None and (spread[0] <= need if at_most else spread[1] >= need):
        return NOISE
    return NOT_MET


def compared(workload: str, result: Paired, unit: str = "s", scale: float = 1.0, need: float = 1.0,
             target: str | None = None, note: str = "", **extra) -> dict:
    """A report row for a paired comparison: times (multiplied by ``scale``), ratio, spread, verdict, memory."""
    return {
        "workload": workload, "ours": result.ours_s * scale, "reference": result.reference_s * scale, "unit": unit,
        "ratio": result.ratio, "spread": result.spread, "peak_mb": result.peak_mb,
        "target": f"ratio >= {need:g}" if target is None else target,
        "status": verdict(result.ratio, need, (result.low, result.high)), "note": note, **extra,
    }


def report(name: str, rows: list[dict]) -> None:
    """Print rows as JSON and as a markdown table, and write bench/out/<name>.json.

    Each row is one workload: ``workload``, ``ours``, ``reference``, ``unit``, ``ratio``, ``spread``,
    ``peak_mb``, ``target``, ``status`` and ``note`` are the usual keys; any other keys are printed too.
    """
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps(rows, indent=2))
    keys = list(dict.fromkeys(k for row in rows for k in row))
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{row[k]:.4g}" if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys]
        print("| " + " | ".join(cells) + " |")


def own_overhead_s(ours: Callable[[], object], owner: object, name: str, runs: int = 3) -> float:
    """Median seconds ``ours()`` spends outside the library call ``owner.name`` it wraps: our own overhead.

    The call is wrapped for the duration of the measurement only. Where a row is slower than its
    plain-library reference, this tells our code's share of the gap from the machine's noise.
    """
    original = getattr(owner, name)
    inside = [0.0]

    def timed_call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - start

    setattr(owner, name, timed_call)
    try:
        outside = []
        for _ in range(runs):
            inside[0] = 0.0
            start = time.perf_counter()
            ours()
            outside.append(time.perf_counter() - start - inside[0])
    finally:
        setattr(owner, name, original)
    return statistics.median(outside)


def _median_for(fn: Callable[[], object], seconds: float) -> float:
    """Median wall seconds of ``fn()``, run (after two warm-ups) for about ``seconds``, at least 3 times."""
    fn(), fn()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < end:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_rates(threads: int, seconds: float = 1.0) -> dict[str, float]:
    """This machine's sustained rates, measured now, for floors computed in the same run.

    Args:
        threads: torch threads to measure with (the app's count).
        seconds: about how long each rate is measured.

    Returns:
        ``gemm_gflops``: float32 ``torch.mm`` of two 2048x2048 matrices, in GFLOP/s (median over runs);
        ``copy_gbs``: bytes copied per second between two 256 MB buffers, in GB/s (the rate a decode step reads
        weights at, at best).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n = 2048
        a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        gemm = _median_for(lambda: torch.mm(a, b, out=out), seconds)
        src = torch.ones(64 * 2**20)  # 256 MB of float32, far past the caches
        dst = torch.empty_like(src)
        copy = _median_for(lambda: dst.copy_(src), seconds)
    finally:
        torch.set_num_threads(before)
    return {"gemm_gflops": 2 * n**3 / gemm / 1e9, "copy_gbs": src.numel() * 4 / copy / 1e9}
