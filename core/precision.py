"""Number format per model and machine: bfloat16 where this CPU runs it natively and a probe shows it pays, float32
everywhere else. :mod:`core.device` picks the device; this module picks the number format on it.

On CPUs with AVX512_BF16 or AMX, bfloat16 *weights* halve inference time (CLIP's image tower 1.98x, a MiniLM-size
encoder 2.51x, on an AMX Xeon); autocast is the wrong way for inference (3x slower at batch 8) but gains ~1.5x in
training. On CPUs without those instructions bf16 is emulated and 4-8x slower, so it is not even tried.

How a model's format is decided, at its first load on a machine (:func:`decide`):

1. ``UBT_BF16=1`` or ``0`` decides (the reason says so);
2. models on a GPU keep the device choice (float16 there);
3. a CPU without AVX512_BF16 or AMX keeps float32, without running anything;
4. else a probe runs the model in float32 and in bf16 (a cast copy) on a fixed input, alternately, and keeps bf16
   only where both hold: the family's agreement measure within its tolerance (:data:`TOLERANCES`, fixed before
   measuring) and bf16 at least :data:`MIN_SPEEDUP` times faster. The verdict is cached once per model, weights
   and machine (CPU model, flags, torch version) under ``$UBT_DATA_DIR/precision``, written through
   :func:`core.prepare.prepare_once` as the ONNX export's agreement check is; delete a folder there to probe again.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from core.config import get_settings
from core.cpu import CpuInfo, this_cpu

log = logging.getLogger("ubt.precision")
FP32, BF16, INT8 = "fp32", "bf16", "int8"
FORMATS = (FP32, BF16, INT8)
MIN_SPEEDUP = 1.3  # bf16 must be at least this much faster than float32 on the probe (fixed before measuring)
PROBE_REPEATS = 3  # timed runs per format at least; the median counts
# On an AMX Xeon, a 20 ms MiniLM probe timed 3 times after one warm-up read anywhere from 0.46x to 1.51x in one
# process, and the first CLIP probe in a process read 1.28x where later ones read 1.6x. So probes warm up for longer,
# and a short probe is timed for longer.
WARM_UP_S = 1.0  # per format, before timing: one-time set-up counts for neither
MIN_TIMED_S = 0.5  # per format: a probe repeats until this much of each format is timed ...
MAX_RUNS = 30  # ... or this many runs (of each format, for warm-up and for timing alike)
RECORD = "decision.json"


@dataclass(frozen=True)
class Tolerance:
    """How far bf16 may differ from float32 on a family's probe (fixed before measuring).

    Attributes:
        measure: what is compared, in words.
        limit: the bound.
        at_least: True when the measure must be >= limit (a similarity), False when <= limit (a difference).
    """

    measure: str
    limit: float
    at_least: bool

    def holds(self, value: float) -> bool:
        """Whether ``value`` of the measure is within the tolerance."""
        return value >= self.limit if self.at_least else value <= self.limit

    def describe(self) -> str:
        return f"{self.measure} {'>=' if self.at_least else '<='} {self.limit:g}"


# Per family, fixed before measuring (issue 26). Embeddings: the lowest cosine over the probe's items; a classifier:
# the share of the shipped texts that keep their float32 label (all must); captions and transcripts: word errors; a
# seeded image: the mean absolute pixel difference on 0-255.
TOLERANCES: dict[str, Tolerance] = {
    "clip": Tolerance("lowest embedding cosine (image and text towers)", 0.999, True),
    "text-encoder": Tolerance("lowest embedding cosine on the shipped texts", 0.999, True),
    "classifier": Tolerance("share of the shipped texts given the float32 label", 1.0, True),
    "captioner": Tolerance("word error of the bf16 caption against the float32 one", 0.25, False),
    "whisper": Tolerance("WER change against float32 on the shipped clip", 0.02, False),
    "diffusion": Tolerance("mean pixel difference of a seeded image (0-255)", 4.0, False),
    "training": Tolerance("held-out accuracy inside the float32 run's 95% interval", 1.0, True),
}


@dataclass(frozen=True)
class Decision:
    """The number format a model runs in here, and why.

    Attributes:
        format: :data:`FP32` or :data:`BF16`.
        why: one line for notes and the device line.
        speedup: float32 time over bf16 time on the probe (None: not probed).
        agreement: the family's measure on the probe (None: not probed).
        measure: the tolerance it was held to, in words ("" when not probed).
    """

    format: str = FP32
    why: str = ""
    speedup: float | None = None
    agreement: float | None = None
    measure: str = ""

    @property
    def bf16(self) -> bool:
        return self.format == BF16


@dataclass(frozen=True)
class Probe:
    """How to try one model in bf16 on a fixed input.

    Attributes:
        family: a key of :data:`TOLERANCES`.
        run: runs a module (the float32 one, or its bf16 copy) on the fixed probe input; timed.
        agreement: ``agreement(fp32_module, bf16_module)``: the family's measure between them (may run both
            on more input than ``run``, e.g. every shipped text).
        cast: turns a float32 module into its bf16 form in place (default: ``module.to(torch.bfloat16)``;
            openai-whisper also casts its inputs).
        repeats: timed runs per format.
    """

    family: str
    run: Callable[[Any], Any]
    agreement: Callable[[Any, Any], float]
    cast: Callable[[Any], Any] | None = None
    repeats: int = PROBE_REPEATS


def to_bf16(module: Any) -> Any:
    """Cast a torch module's weights to bfloat16 in place (and return it)."""
    import torch

    return module.to(torch.bfloat16)


def native_bf16(cpu: CpuInfo) -> tuple[bool, str]:
    """Whether ``cpu`` has bfloat16 arithmetic (AVX512_BF16 or AMX), and a line saying so.

    Returns:
        (native, why): why names the instructions found, or says bf16 is not tried and why.
    """
    if cpu.bf16:
        found = " and ".join(n for n, f in (("AMX", "amx_bf16"), ("AVX512_BF16", "avx512_bf16")) if f in cpu.flags)
        return True, f"this CPU has {found}"
    return False, "bf16 not tried: this CPU has no AVX512_BF16 or AMX (bf16 would be emulated, 4-8x slower)"


def override() -> bool | None:
    """``UBT_BF16``: True for ``1``, False for ``0``, None for ``auto`` (decided by the probe)."""
    value = get_settings().bf16
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def device_note(cpu: CpuInfo | None = None) -> str:
    """The device line's word on bf16, e.g. ``bf16 not tried: this CPU has no AVX512_BF16 or AMX (...)``."""
    forced = override()
    if forced is not None:
        return f"bf16 {'on' if forced else 'off'} (UBT_BF16={int(forced)})"
    native, why = native_bf16(cpu or this_cpu())
    return f"bf16 where a probe at first use keeps it ({why})" if native else why


def _settled_without_probe(device: str, cpu: CpuInfo | None, off_cpu: str) -> Decision | None:
    """The decision when nothing needs measuring: the override, a device other than the CPU (``off_cpu`` says why
    float32), a CPU without bf16 units; None when a probe must decide."""
    forced = override()
    if forced is not None:
        return Decision(BF16 if forced else FP32, f"UBT_BF16={int(forced)}")
    if device != "cpu":
        return Decision(FP32, off_cpu)
    native, why = native_bf16(cpu or this_cpu())
    return None if native else Decision(FP32, why)


def machine_key(cpu: CpuInfo | None = None) -> str:
    """What identifies this machine for a decision: as in engine health (CPU model, class, flags, torch version)."""
    if cpu is None:
        from core.cpu import machine_key as cpu_machine_key

        return cpu_machine_key("torch")
    import torch

    flags = " ".join(sorted(cpu.flags & {"amx_tile", "amx_bf16", "avx512_bf16", "avx512f", "avx2"}))
    return f"{cpu.model} | {cpu.kind} | {flags} | torch {torch.__version__}"


def weights_identity(location: str | None, module: Any) -> str:
    """What identifies the weights: the files at ``location`` (path, sizes, times), else a digest of the tensors
    (models built in memory, e.g. the tests' tiny ones)."""
    from core.prepare import fingerprint, weights_digest

    if location and Path(location).exists():
        return fingerprint(location)
    parts = [module] if hasattr(module, "state_dict") else list(getattr(module, "components", {}).values())
    digests = [weights_digest(part) for part in parts if hasattr(part, "state_dict")]
    return f"{location or 'in memory'}|{'|'.join(digests)}"


def decision_folder(key: str, family: str, identity: str, machine: str) -> Path:
    """Where the decision for one model, weights and machine is cached."""
    digest = hashlib.sha256(f"{key}|{family}|{identity}|{machine}".encode()).hexdigest()[:12]
    return get_settings().data_dir / "precision" / f"{key.replace('/', '_')}-{digest}"


def seconds(run: Callable[[], Any], number_format: str) -> float:
    """Wall seconds of one ``run()`` (``number_format`` says which format runs; tests pass a timer that reads it)."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _warm_up(run: Callable[[], Any]) -> None:
    """Run ``run`` once, then again until :data:`WARM_UP_S` has passed (at most :data:`MAX_RUNS` times)."""
    started = time.perf_counter()
    for _ in range(MAX_RUNS):
        run()
        if time.perf_counter() - started >= WARM_UP_S:
            return


def measure(module: Any, probe: Probe, timer: Callable[[Callable[[], Any], str], float] = seconds) -> dict:
    """Run ``probe`` on ``module`` (float32) and on a bf16 copy of it: speed-up, agreement and the verdict.

    Each format warms up for :data:`WARM_UP_S`, then the two take turns, so a busy machine slows both alike, for
    ``probe.repeats`` runs each and at least :data:`MIN_TIMED_S` of timed runs (at most :data:`MAX_RUNS`).

    Args:
        module: the float32 module.
        probe: the family's probe.
        timer: ``timer(run, format)`` -> seconds of one run (default: the wall clock).

    Returns:
        The record: ``format``, ``speedup``, ``agreement``, ``measure``, ``fp32_s``, ``bf16_s``, ``why``.
    """
    import torch

    tolerance = TOLERANCES[probe.family]
    cast = copy.deepcopy(module)
    (probe.cast or to_bf16)(cast)
    with torch.inference_mode():
        for model in (module, cast):
            _warm_up(lambda: probe.run(model))
        fp32_s, bf16_s = [], []
        while len(fp32_s) < max(1, probe.repeats) or (sum(fp32_s) < MIN_TIMED_S and len(fp32_s) < MAX_RUNS):
            fp32_s.append(timer(lambda: probe.run(module), FP32))
            bf16_s.append(timer(lambda: probe.run(cast), BF16))
        agreement = float(probe.agreement(module, cast))
    del cast
    fp32, bf16 = statistics.median(fp32_s), statistics.median(bf16_s)
    speedup = fp32 / max(bf16, 1e-12)
    agrees, fast = tolerance.holds(agreement), speedup >= MIN_SPEEDUP
    keep = agrees and fast
    if keep:
        why = f"bf16: {speedup:.2f}x float32 on the probe, {tolerance.measure} {agreement:.4g}"
    elif not agrees:
        why = f"float32: bf16 disagrees ({tolerance.measure} {agreement:.4g}, needs {tolerance.describe()})"
    else:
        why = f"float32: bf16 was only {speedup:.2f}x float32 on the probe (needs >= {MIN_SPEEDUP:g}x)"
    return {"format": BF16 if keep else FP32, "speedup": round(speedup, 3), "agreement": agreement,
            "measure": tolerance.describe(), "fp32_s": fp32, "bf16_s": bf16, "why": why,
            "torch": torch.__version__}


def built(probe: "Probe | Callable[[], Probe]") -> Probe:
    """A Probe, or the Probe a factory makes (loaders pass factories: a probe's input is read only when needed)."""
    return probe if isinstance(probe, Probe) else probe()


def decide(key: str, module: Any, probe: "Probe | Callable[[], Probe]", location: str | None = None, cpu: CpuInfo | None = None,
           device: str = "cpu", timer: Callable[[Callable[[], Any], str], float] = seconds) -> Decision:
    """The number format ``module`` (a float32 torch module) should run in on this machine.

    Args:
        key: catalog key (the cache's name for the model).
        module: the float32 module to probe (left in float32; cast it with :func:`apply`).
        probe: the family's probe, or a function that makes it (called only when a probe runs).
        location: where its weights were read (identifies them in the cache); None: a digest of the tensors.
        cpu: the CPU to decide for (tests inject recorded ones); None: this machine's.
        device: where the model runs; anything but ``cpu`` keeps the device choice.
        timer: how a probe's runs are timed (see :func:`measure`).

    Returns:
        The Decision; a probe that fails keeps float32, with the reason.
    """
    settled = _settled_without_probe(device, cpu, "bf16 is decided for CPUs only; the device choice applies on a GPU")
    if settled is not None:
        return settled
    from core.prepare import prepare_once

    try:
        folder = decision_folder(key, "inference", weights_identity(location, module), machine_key(cpu))

        def build(tmp: Path) -> None:  # only where no decision is cached: the probe's input is read only then
            (tmp / RECORD).write_text(json.dumps(measure(module, built(probe), timer), indent=1) + "\n")

        prepare_once(folder, build, what="bf16 probe")
        record = json.loads((folder / RECORD).read_text())
    except Exception as err:  # a probe that cannot run (an op without a bf16 kernel, a full disk): float32 works
        log.warning("bf16 probe of %s failed", key, exc_info=True)
        return Decision(FP32, f"float32: the bf16 probe failed ({type(err).__name__}: {str(err)[:160]})")
    return Decision(record["format"], record["why"], record.get("speedup"), record.get("agreement"),
                    record.get("measure", ""))


def apply(key: str, module: Any, probe: "Probe | Callable[[], Probe]", location: str | None = None,
          device: str = "cpu") -> Decision:
    """Decide ``module``'s format (:func:`decide`) and cast it in place when bf16 wins.

    Args:
        key, module, probe, location, device: as for :func:`decide`.

    Returns:
        The Decision (loaders keep it on their bundle as ``precision``, so results carry it).
    """
    if not isinstance(probe, Probe):
        probe = functools.cache(probe)  # made at most once, and only when needed
    decision = decide(key, module, probe, location, device=device)
    if decision.bf16:
        (built(probe).cast or to_bf16)(module)
    log.info("%s runs in %s: %s", key, decision.format, decision.why)
    return decision


def format_of(bundle: Any) -> str:
    """The number format a loaded bundle runs in: its ``precision`` Decision's, else :data:`FP32`."""
    decision = getattr(bundle, "precision", None)
    return decision.format if isinstance(decision, Decision) else FP32


def format_in_label(device_label: str) -> str:
    """The number format a device label names (``cpu · int8 · 2 thread(s)``: int8; ``bfloat16``: bf16; ``float16``:
    fp16; GGUF quantisations such as ``Q4_1`` as written, lower case); float32 otherwise."""
    label = device_label.lower()
    if "int8" in label:
        return INT8
    if "bfloat16" in label or "bf16" in label:
        return BF16
    if "float16" in label:
        return "fp16"
    for word in label.replace("·", " ").split():
        if len(word) > 1 and word[0] == "q" and word[1].isdigit():
            return word
    return FP32


def bf16_label(device_label: str) -> str:
    """A device label with its float32 named bfloat16 (``cpu · float32 · 2 thread(s)`` -> ``cpu · bfloat16 · ...``)."""
    return device_label.replace("float32", "bfloat16") if "float32" in device_label else f"{device_label} · bfloat16"


# --- training -----------------------------------------------------------------------------------------
def wilson_interval(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy ``hits / total``."""
    if total <= 0:
        return 0.0, 1.0
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * ((p * (1 - p) / total + z * z / (4 * total * total)) ** 0.5) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class TrainingProbe:
    """How to try bf16 autocast for one training arm on this machine.

    Attributes:
        name: what is trained (the cache's name, e.g. ``scratch`` or ``fine-tune:minilm-l6``).
        epoch: ``epoch(autocast)`` trains a fresh copy for a short fixed run and returns (seconds of its last
            epoch, held-out hits, held-out items).
    """

    name: str
    epoch: Callable[[bool], tuple[float, int, int]]


def measure_training(probe: TrainingProbe) -> dict:
    """Train once in float32 and once with bf16 autocast: keep autocast where its held-out accuracy lies inside the
    float32 run's 95% interval and its epoch is at least :data:`MIN_SPEEDUP` times shorter."""
    fp32_s, fp32_hits, total = probe.epoch(False)
    bf16_s, bf16_hits, _ = probe.epoch(True)
    low, high = wilson_interval(fp32_hits, total)
    accuracy = bf16_hits / max(total, 1)
    inside, speedup = low <= accuracy <= high, fp32_s / max(bf16_s, 1e-12)
    keep = inside and speedup >= MIN_SPEEDUP
    if keep:
        why = f"bf16 autocast: epoch {speedup:.2f}x float32's, held-out accuracy {accuracy:.3f} in [{low:.3f}, {high:.3f}]"
    elif not inside:
        why = f"float32: bf16 autocast's held-out accuracy {accuracy:.3f} is outside float32's [{low:.3f}, {high:.3f}]"
    else:
        why = f"float32: a bf16 autocast epoch was only {speedup:.2f}x float32's (needs >= {MIN_SPEEDUP:g}x)"
    return {"format": BF16 if keep else FP32, "speedup": round(speedup, 3), "agreement": float(inside),
            "measure": TOLERANCES["training"].measure, "fp32_accuracy": fp32_hits / max(total, 1),
            "bf16_accuracy": accuracy, "why": why}


def decide_training(probe: TrainingProbe, cpu: CpuInfo | None = None, device: str = "cpu") -> Decision:
    """Whether a training arm uses bf16 autocast here: ``UBT_BF16``, then the CPU, then a cached probe.

    Args:
        probe: the arm's training probe.
        cpu: the CPU to decide for (tests inject recorded ones); None: this machine's.
        device: where training runs; anything but ``cpu`` trains in float32.

    Returns:
        The Decision (``format`` bf16 means: train under ``torch.autocast("cpu", dtype=torch.bfloat16)``).
    """
    settled = _settled_without_probe(device, cpu, "bf16 autocast is decided for CPUs only")
    if settled is not None:
        return settled
    from core.prepare import prepare_once

    try:
        folder = decision_folder(probe.name, "training", "", machine_key(cpu))
        prepare_once(folder, lambda tmp: (tmp / RECORD).write_text(json.dumps(measure_training(probe), indent=1)),
                     what="bf16 training probe")
        record = json.loads((folder / RECORD).read_text())
    except Exception as err:
        log.warning("bf16 training probe of %s failed", probe.name, exc_info=True)
        return Decision(FP32, f"float32: the bf16 training probe failed ({type(err).__name__}: {str(err)[:160]})")
    return Decision(record["format"], record["why"], record.get("speedup"), record.get("agreement"),
                    record.get("measure", ""))


def as_dict(decision: Decision) -> dict:
    """A Decision as plain data (for results and the bench)."""
    return asdict(decision)
