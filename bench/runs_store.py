"""The run store on PostgreSQL (a real server on 127.0.0.1, tests/support/postgres_server.py) against the embedded SQLite
file, measured in the same run on the same runs: the time to record one run (written and acknowledged) and the
time to draw Summary from the store (read every run, price them, build both tables and the effort chart).

Rows are information (no target): SQLite is the reference; ``ratio`` > 1 means PostgreSQL was faster.

Usage: .venv/bin/python -m bench.runs_store [--quick]
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.common import compared, paired, parse_args, report

STORED = 200  # runs in the store before Summary is drawn


def _record(i: int) -> None:
    from core import runs

    runs.record_run(page="text", task="sentiment", model="minilm-sentiment", source="package", device="cpu",
                    params={"texts": 1}, load_s=None, wall_s=0.01 + i * 1e-5, peak_mb=500.0,
                    metrics={"texts_per_s": 100.0}, session_id="bench")


def _summary() -> None:
    from core import costs, runs
    from core.charts import summary as charts

    enriched = costs.enrich(runs.fetch_runs(), costs.Rates())
    chosen = costs.select(enriched, None)
    costs.training_table(chosen), costs.inference_table(chosen)
    charts.effort_impact_chart(chosen, "seconds").to_dict()


def _on(url: str | None, fn):
    """``fn`` with the run store pointed at ``url`` (None: a SQLite file of its own)."""
    def run():
        if url is None:
            os.environ.pop("UBT_RUNS_URL", None)
        else:
            os.environ["UBT_RUNS_URL"] = url
        return fn()
    return run


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = 5 if args.quick else 20
    from tests.support.postgres_server import Unavailable, start

    os.environ["UBT_RUNS_DB"] = str(Path(tempfile.mkdtemp(prefix="bench-runs-")) / "runs.sqlite")
    try:
        server = start()
    except Unavailable as err:
        report("runs_store", [{"workload": "run store on PostgreSQL", "note": f"not measured: {err}"}])
        return
    try:
        url = server.new_database()
        counter = iter(range(10**9))
        for _ in range(STORED):  # the same runs in both stores
            _on(None, lambda: _record(next(counter)))()
            _on(url, lambda: _record(next(counter)))()
        record = paired(_on(url, lambda: _record(next(counter))), _on(None, lambda: _record(next(counter))), repeats * 5)
        draw = paired(_on(url, _summary), _on(None, _summary), repeats)
        note = "reference = the SQLite file on local disk, same runs; information, no target"
        rows = [compared("record one run: PostgreSQL on 127.0.0.1 vs SQLite", record, unit="ms", scale=1000, note=note),
                compared(f"draw Summary from {STORED}+ runs: PostgreSQL on 127.0.0.1 vs SQLite", draw, unit="ms",
                         scale=1000, note=note)]
        report("runs_store", [{**row, "target": "", "status": ""} for row in rows])
    finally:
        os.environ.pop("UBT_RUNS_URL", None)
        server.close()


if __name__ == "__main__":
    main()
