"""Many people at once: 1, 8 and 32 websocket sessions classifying sentiment with the real offline model
(MiniLM + this project's head) on one server, against a minimal page making the same model call on a
second server, at the same concurrency in the same run; then a mixed load (classify + generate +
transcribe) where the first generation under load is compared with a generation alone: once with every model
call taking its turn in core/queue.py's line, as the pages run (ui/queue.py's ``model_turn``), and once with
the line opened wide (``UBT_MODEL_SLOTS=64``: every call at once, as before the line existed, except that
each kind's first call still runs alone, so first imports never overlap).

The servers are tests/support/serve_tiny.py launchers on loopback, started as ``streamlit run`` would start
them (real models only); the sessions are tests/support/st_session.py clients
driven by tests/system/test_load.py's ``drive`` (each session renders its page, all wait for each other, then
each sends its requests one after the other). Throughput counts answered requests over the time from
the common start to the last answer.

Usage: python -m bench.many_people [--quick]
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bench.clicks import MINIMAL_PAGE
from bench.common import MET, NOT_MET, ROOT, report

os.environ.setdefault("HF_HUB_OFFLINE", "1")

THROUGHPUT_PER_S, P95_S, LONE_SHARE = 15.0, 3.0, 0.5  # issue 17's targets
NO_LINE = 64  # UBT_MODEL_SLOTS for the run without turns: more slots than sessions, so no call ever waits
SENTENCES = (
    "I love this movie, the cast is wonderful.",
    "This was a waste of money; it broke after two days.",
    "The food was cold but the staff were lovely.",
    "Delivery was on time.",
    "Never buying from them again.",
)
PROMPTS = ("Write a haiku about autumn rain.", "Explain in two sentences what a neural network is.")


def scenarios(generation_tokens: int):
    """The kinds of session: (classify on the app, classify on the minimal page, generate, transcribe)."""
    from tests.system.test_load import Scenario

    classify = Scenario(
        "text", "sentiment_run", lambda s, r: {"sentiment_text": SENTENCES[(s + r) % len(SENTENCES)]}, "Label",
        ("minilm-sentiment",), setup=lambda session: {"sentiment_model": session.option("sentiment_model", "MiniLM")},
        name="classify")
    minimal = Scenario(
        "", "run", lambda s, r: {"text": SENTENCES[(s + r) % len(SENTENCES)]}, "Label", ("minilm-sentiment",),
        setup=lambda session: {"model": True}, name="minimal page")
    generate = Scenario(
        "text", "generation_run", lambda s, r: {"generation_prompt": PROMPTS[(s + r) % len(PROMPTS)]}, "Tokens/s",
        ("smollm2-135m",), setup=lambda session: {
            "generation_model": session.option("generation_model", "SmolLM2"),
            "generation_max_new_tokens": [generation_tokens], "generation_temperature": [0.0]},
        name="generate")
    transcribe = Scenario(
        "speech", "speech_run", lambda s, r: {}, "Latency", ("faster-whisper-tiny-en",),
        setup=lambda session: {"speech_model_faster-whisper": session.option("speech_model_faster-whisper", "tiny.en"),
                               "speech_beam": ["1"]},
        name="transcribe")
    return classify, minimal, generate, transcribe


def _row(workload: str, figures: dict, reference: dict | None, final: bool) -> dict:
    """A report row: throughput against the minimal page's, latency, errors, loads and server CPU per request."""
    loaded_once = all(v == 1 for v in figures["all_loads"].values())
    errors = len(figures["problems"])
    meets = figures["throughput_per_s"] >= THROUGHPUT_PER_S and errors == 0 and loaded_once
    if final:
        meets = meets and figures["p95_s"] <= P95_S
    cpu = figures["server_cpu_per_request_s"]
    return {
        "workload": workload, "ours": figures["throughput_per_s"],
        "reference": reference["throughput_per_s"] if reference else None, "unit": "requests/s",
        "ratio": figures["throughput_per_s"] / reference["throughput_per_s"] if reference else None,
        "target": f">= {THROUGHPUT_PER_S:g} req/s, 0 errors, each model loaded once"
                  + (f", p95 <= {P95_S:g} s" if final else ""),
        "status": MET if meets else NOT_MET,
        "note": (f"reference: a minimal page making the same model call, same sessions; its p95 "
                 f"{reference['p95_s']:.2f} s, {reference['server_cpu_per_request_s'] * 1000:.0f} ms CPU/request; "
                 if reference else "") + (f"problems: {figures['problems'][:2]}" if errors else ""),
        "p50_s": figures["p50_s"], "p95_s": figures["p95_s"], "errors": errors,
        "loads": ", ".join(f"{k}: {v}" for k, v in figures["all_loads"].items()),
        "cpu_ms_per_request": cpu * 1000,
        "capacity_2_cores_per_s": 2 / cpu if cpu and cpu == cpu else None,
    }


def main() -> None:
    from bench.common import parse_args
    from core.config import get_settings
    from tests.support.serve_tiny import tiny_server
    from tests.system.test_load import drive

    args = parse_args(__doc__)
    levels, requests, mixed_requests, tokens = ((1, 8, 32), 3, 2, 24) if args.quick else ((1, 8, 32), 8, 3, 48)
    classify, minimal, generate, transcribe = scenarios(tokens)
    work = Path(tempfile.mkdtemp(prefix="ubt-bench-many-"))
    for folder in ("app", "ref", "page", "one-thread", "mixed", "mixed-turns"):
        (work / folder).mkdir()
    (work / "page" / "minimal.py").write_text(MINIMAL_PAGE)
    shutil.copytree(ROOT / ".streamlit", work / "page" / ".streamlit")
    env = {"UBT_CONVERTED_DIR": str(get_settings().converted_dir)}  # the one-time GGUF conversion is kept
    rows = []
    try:
        with tiny_server(work / "app", env=env, tiny=False) as app, \
                tiny_server(work / "ref", env=env, app=work / "page" / "minimal.py") as reference:
            drive(app, 1, 1, (classify,))  # first use loads the model: not part of the figures
            drive(reference, 1, 1, (minimal,))
            for sessions in levels:
                ours = drive(app, sessions, requests, (classify,))
                theirs = drive(reference, sessions, requests, (minimal,))
                rows.append(_row(f"{sessions} session(s) × {requests} classify (MiniLM head)", ours, theirs,
                                 final=sessions == max(levels)))
                print(rows[-1], flush=True)
        sessions = max(levels)
        with tiny_server(work / "one-thread", env={**env, "UBT_THREADS": "1"}, tiny=False) as app:
            drive(app, 1, 1, (classify,))
            rows.append(_row(f"{sessions} sessions × {requests} classify, one torch thread per request (UBT_THREADS=1)",
                             drive(app, sessions, requests, (classify,)), None, final=True))
            rows[-1]["note"] = "an option, to compare with the row above (default threads), measured after it"
        with tiny_server(work / "mixed", env={**env, "UBT_MODEL_SLOTS": str(NO_LINE)}, tiny=False) as app:
            rows += mixed(app, (classify, generate, transcribe), mixed_requests)
        with tiny_server(work / "mixed-turns", env=env, tiny=False) as app:
            rows += mixed(app, (classify, generate, transcribe), mixed_requests, turns=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report("many_people", rows)


def mixed(app, kinds, requests: int, turns: bool = False) -> list[dict]:
    """A generation alone (warm), then 4 classify + 2 generate + 2 transcribe sessions at once.

    Args:
        turns: the server's model calls take turns in its line (else the line is opened wide): said in the row's name.
    """
    from tests.system.test_load import drive

    classify, generate, transcribe = kinds
    drive(app, 1, 1, (generate,))  # first use: load (and convert once per machine)
    alone = drive(app, 1, 1, (generate,))
    lone = _rate(alone["first"]["generate"])
    load = drive(app, 8, requests, (classify, classify, generate, transcribe))
    first = load["first"].get("generate", {})
    loaded = _rate(first)
    queued = any("queue" in note.lower() for note in first.get("notes", []))
    share = loaded / lone if lone and loaded is not None else None
    meets = (share is not None and share >= LONE_SHARE or queued) and not load["problems"] and \
        all(v == 1 for v in load["all_loads"].values())
    return [{
        "workload": f"mixed: 4 classify + 2 generate + 2 transcribe sessions × {requests}, first generation"
                    + (", model calls taking turns (core/queue.py, 1 slot per 2 threads)" if turns else ""),
        "ours": loaded, "reference": lone, "unit": "tokens/s", "ratio": share,
        "target": f">= {LONE_SHARE:.0%} of its lone tokens/s, or the page says it is queued; 0 errors; loaded once",
        "status": MET if meets else NOT_MET,
        "note": f"reference: the same generation alone, same server, same run; queued note shown: {queued}; "
                f"time to first token under load {first.get('metrics', {}).get('Time to first token', '?')}"
                + (f"; problems: {load['problems'][:2]}" if load["problems"] else ""),
        "p50_s": load["p50_s"], "p95_s": load["p95_s"], "errors": len(load["problems"]),
        "loads": ", ".join(f"{k}: {v}" for k, v in load["all_loads"].items()),
        **{f"{kind}_p95_s": figures["p95_s"] for kind, figures in load["per_page"].items()},
    }]


def _rate(first: dict) -> float | None:
    """Tokens/s shown on a generation's result card."""
    text = first.get("metrics", {}).get("Tokens/s")
    return float(text.replace(",", "")) if text else None


if __name__ == "__main__":
    main()
