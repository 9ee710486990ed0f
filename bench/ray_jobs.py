"""Fine-tune jobs on a local Ray cluster against the same job in this process.

The job: the four training-page arms (use as is, transfer learning, fine-tune one epoch of MiniLM's top 2 layers,
from scratch) on the shipped sentiment table, as the Fine-tune page runs it (core.finetune.training.start_training).
A Ray head with 2 CPUs is started on 127.0.0.1 (tests/support/ray_head.py), and every arm asks it for one CPU.

- overhead: each arm as a Ray job of its own, one after the other (one worker at a time, the same work as in
  process), against the in-process job: what Ray adds per job (submitting the task, the data through the object
  store, progress through the channel actor, the result back), in seconds.
- parallel: the four arms as one Ray job, two at a time on two workers, against the in-process job: the speed-up
  of running arms side by side. This machine has 2 cores, shared, so 2x is the ceiling.

Both sides run each arm on one torch thread (``UBT_THREADS=1``, what an arm asking Ray for one CPU gets). Workers
are warm (one job of each kind runs first), and every run has a fresh data fingerprint, so no run reads features
an earlier one cached. Runs are recorded in a temporary run store, never the app's.

Usage: python -m bench.ray_jobs [--quick]
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid

os.environ["UBT_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("UBT_OFFLINE", "1")
os.environ["UBT_PRELOAD"] = ""
os.environ["UBT_RUNS_DB"] = os.path.join(tempfile.mkdtemp(prefix="bench-ray-"), "runs.sqlite")
os.environ.pop("UBT_RUNS_URL", None)
os.environ.pop("UBT_RAY_ADDRESS", None)

from bench.common import parse_args, report, verdict  # noqa: E402

NEED_SPEED_UP = 1.3  # two workers on two shared cores
NEED_OVERHEAD_S = 2.0  # per arm, warm workers


def _settings() -> dict:
    from core.finetune import arms

    return {"zero-shot": arms.ZeroShotSettings(), "transfer": arms.TransferSettings(),
            "fine-tune": arms.FineTuneSettings(top_layers=2, epochs=1, time_budget_s=3600.0, patience=None),
            "scratch": arms.ScratchSettings()}


def _fresh_data():
    """The sentiment table under a fingerprint no run has used, and its default split."""
    from core.finetune import data

    base = data.example_sentiment()
    labelled = data.LabelledData("text", base.items, base.labels, [], f"bench-ray-{uuid.uuid4().hex}", "bench")
    return (labelled, *data.split(labelled))


def _job_s(chosen: dict, address: str) -> float:
    """Wall seconds of one job from start to its last result; raises when an arm did not finish."""
    from core.finetune import training

    labelled, train, test = _fresh_data()
    start = time.perf_counter()
    job = training.start_training(labelled, train, test, chosen, session_id="bench-ray", ray_address=address)
    job.join()
    seconds = time.perf_counter() - start
    failed = {s.name: s.error or s.message for s in job.snapshot() if s.status != "done"}
    if failed or (address and not job.backend.startswith("Ray")):
        raise RuntimeError(f"the job did not run as asked: {failed or job.notes}")
    return seconds


def _rows(address: str, repeats: int) -> list[dict]:
    chosen = _settings()
    _job_s(chosen, ""), _job_s(chosen, address)  # warm-up: models loaded here and in the workers
    here, one_by_one, side_by_side = [], [], []
    for _ in range(repeats):
        here.append(_job_s(chosen, ""))
        one_by_one.append(sum(_job_s({arm: settings}, address) for arm, settings in chosen.items()))
        side_by_side.append(_job_s(chosen, address))
    load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end"  # this machine is shared
    here_s, one_s, side_s = (statistics.median(v) for v in (here, one_by_one, side_by_side))
    overhead = (one_s - here_s) / len(chosen)
    speed_up = here_s / side_s
    speed_ups = sorted(h / s for h, s in zip(here, side_by_side))
    return [
        {"workload": "four-arm job: each arm a Ray job of its own, one after the other, vs in process", "ours": one_s,
         "reference": here_s, "unit": "s", "ratio": here_s / one_s, "overhead_per_arm_s": overhead,
         "target": f"overhead <= {NEED_OVERHEAD_S:g} s per arm", "status": verdict(overhead, NEED_OVERHEAD_S, at_most=True),
         "note": f"what Ray adds per arm: task, object store, channel actor, result back (warm workers); {load}"},
        {"workload": "four-arm job: one Ray job, arms side by side on 2 workers, vs in process", "ours": side_s,
         "reference": here_s, "unit": "s", "ratio": speed_up, "spread": f"{speed_ups[0]:.3f}–{speed_ups[-1]:.3f}",
         "target": f"speed-up >= {NEED_SPEED_UP:g}", "status": verdict(speed_up, NEED_SPEED_UP),
         "note": f"2 shared cores: 2x is the ceiling; the fine-tune arm is most of the job; {load}"},
    ]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = 1 if args.quick else 3
    from core.finetune import features as feats

    skipped = None
    try:
        import ray  # noqa: F401
    except ImportError:
        skipped = "Ray is not installed (pip install -r requirements-ray.txt)"
    skipped = skipped or feats.unavailable_reason("minilm-l6")
    if skipped:
        report("ray_jobs", [{"workload": "four-arm job on a local Ray cluster vs in process", "note": f"skipped: {skipped}"}])
        return
    from core.finetune import ray_backend
    from tests.support import ray_head

    try:
        head = ray_head.start(num_cpus=2)
    except ray_head.Unavailable as err:
        report("ray_jobs", [{"workload": "four-arm job on a local Ray cluster vs in process", "note": f"skipped: {err}"}])
        return
    try:
        rows = _rows(head.address, repeats)
    finally:
        ray_backend.disconnect()
        head.close()
    report("ray_jobs", rows)


if __name__ == "__main__":
    main()
