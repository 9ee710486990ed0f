"""The first Classify on a fresh server, with the default background preload (``UBT_PRELOAD=auto``) against none
(``UBT_PRELOAD=``), in the same run: a real app server (tests/support/serve_tiny.py, ``--real-only``) and one websocket
session (tests/support/st_session.py) that opens the Text page, reads it for a while as a visitor does, then clicks
Classify with the default model.

Usage: python -m bench.first_click [--quick]
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import MET, NOT_MET, parse_args, report

READING_S = 10.0  # a first visitor reads the page before the first click


def first_classify_s(work: Path, preload: str) -> float:
    """Seconds from the first Classify click to its result on a freshly started server."""
    from core.config import get_settings
    from tests.support.serve_tiny import tiny_server
    from tests.support.st_session import Session

    env = {"UBT_PRELOAD": preload, "UBT_CONVERTED_DIR": str(get_settings().converted_dir)}
    with tiny_server(work, env=env, tiny=False) as server, Session(server.url, "text", timeout_s=300) as session:
        session.run()
        time.sleep(READING_S)
        run = session.run({"sentiment_text": "I love this movie, the cast is wonderful."}, click="sentiment_run")
        assert run.ok and "Label" in run.metrics(), (run.exceptions, run.alerts("ERROR"))
        return run.seconds


def main() -> None:
    args = parse_args(__doc__)
    pairs = []
    for i in range(1 if args.quick else 3):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            order = [("auto", Path(a)), ("", Path(b))] if i % 2 == 0 else [("", Path(b)), ("auto", Path(a))]
            seconds = {preload: first_classify_s(work, preload) for preload, work in order}
        pairs.append((seconds["auto"], seconds[""]))
    ours, reference = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    report("first_click", [{
        "workload": f"first Classify on a fresh server, {READING_S:g} s after the Text page opened: background preload "
                    "of the default sentiment model (UBT_PRELOAD=auto) vs none", "ours": ours, "reference": reference,
        "unit": "s", "ratio": reference / max(ours, 1e-9), "target": "ratio >= 2",
        "status": MET if reference >= 2 * ours else NOT_MET, "note": f"pairs (preload, none): {pairs}",
    }])


if __name__ == "__main__":
    main()
