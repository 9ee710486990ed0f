"""The one place that chooses device, dtype and thread count, and says when it falls back.

The thread count follows the CPU time this process may really use: a container's cgroup CPU quota
(cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) and the CPUs it may run on
(``sched_getaffinity``), not the host's core count. ``UBT_THREADS`` overrides it.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from core.config import get_settings

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF = Path("/proc/self")


@dataclass(frozen=True)
class CpuShare:
    """The CPU this process may use.

    Attributes:
        cores: logical CPUs of the machine (``os.cpu_count()``).
        affinity: CPUs this process may run on (``sched_getaffinity``).
        quota: the cgroup CPU quota in cores (e.g. 0.5, 2.0), None when there is none.
    """

    cores: int
    affinity: int
    quota: float | None = None

    @property
    def threads(self) -> int:
        """Threads worth running: the affinity count, capped by the quota rounded to whole cores (at least one)."""
        if self.quota is None:
            return max(1, self.affinity)
        return max(1, min(self.affinity, int(self.quota + 0.5)))

    def describe(self) -> str:
        """E.g. ``CPU quota 1.5 of 4 cores`` or ``2 of 8 cores (affinity)`` or ``2 cores``."""
        if self.quota is not None and self.quota < self.affinity:
            return f"CPU quota {self.quota:g} of {self.cores} core(s)"
        if self.affinity < self.cores:
            return f"{self.affinity} of {self.cores} cores (CPU affinity)"
        return f"{self.cores} core(s)"


def _read_quota_v2(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _read_quota_v1(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def _cgroup_folders(root: Path, proc: Path) -> list[tuple[Path, bool]]:
    """Folders that may hold this process's CPU limits, innermost first, each with whether it is cgroup v2.

    Every level from the process's own cgroup up to the mount root is listed: a limit set on a parent
    applies to its children, and inside a container the mount root often is the container's own cgroup.
    """
    try:
        lines = (proc / "cgroup").read_text().splitlines()
    except OSError:
        lines = []
    folders: list[tuple[Path, bool]] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2].lstrip("/")
        if controllers == "":
            mount, v2 = root / "unified" if (root / "unified" / "cgroup.controllers").exists() else root, True
        elif "cpu" in controllers.split(","):
            mount, v2 = root / controllers, False
            if not mount.exists():
                mount = next((m for m in (root / "cpu,cpuacct", root / "cpu") if m.exists()), mount)
        else:
            continue
        here = mount / path if path else mount
        while True:
            folders.append((here, v2))
            if here == mount or mount not in here.parents:
                break
            here = here.parent
    return folders


def cpu_share(root: Path = CGROUP_ROOT, proc: Path = PROC_SELF) -> CpuShare:
    """Read the CPU share of this process: core count, affinity and the tightest cgroup CPU quota.

    Args:
        root: where cgroups are mounted (tests pass a folder of fake files).
        proc: the process's /proc folder (``cgroup`` inside it names its cgroups).

    Returns:
        The CpuShare; ``quota`` is None when no cgroup limits the CPU.
    """
    cores = os.cpu_count() or 1
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = cores
    quotas = [q for folder, v2 in _cgroup_folders(root, proc)
              if (q := (_read_quota_v2(folder) if v2 else _read_quota_v1(folder))) is not None]
    return CpuShare(cores=cores, affinity=affinity, quota=min(quotas) if quotas else None)


def thread_plan() -> tuple[int, str]:
    """Torch threads to use and why: ``UBT_THREADS`` when set, else the process's CPU share.

    Returns:
        (threads, reason), e.g. ``(1, "CPU quota 1 of 2 core(s)")``.
    """
    wanted = get_settings().threads
    if wanted > 0:
        return wanted, "UBT_THREADS"
    share = cpu_share()
    return share.threads, share.describe()


@dataclass(frozen=True)
class DeviceChoice:
    """Where models run and why.

    Attributes:
        device: a torch device string, ``cpu`` or ``cuda``.
        dtype_name: ``float32`` on CPU, ``float16`` on CUDA.
        threads: torch intra-op threads in use.
        note: why this choice was made (e.g. a fallback), empty when nothing is noteworthy.
        threads_from: where the thread count comes from (``UBT_THREADS``, a CPU quota, the cores).
    """

    device: str
    dtype_name: str
    threads: int
    note: str = ""
    threads_from: str = ""

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)

    @property
    def training_threads(self) -> int:
        """Threads for training: half the cores (at least one), leaving the rest to inference.
        On a small or shared CPU, small training steps also run faster on one thread than on two."""
        return max(1, self.threads // 2)

    def label(self) -> str:
        """Short text for result cards."""
        return f"{self.device} · {self.dtype_name} · {self.threads} thread(s)"


_choice: DeviceChoice | None = None


def cuda_present_without_torch() -> bool:
    """True when an NVIDIA driver is visible; does not import torch."""
    return Path("/proc/driver/nvidia/version").exists()


def choose_device() -> DeviceChoice:
    """Pick device, dtype and threads once per process (imports torch).

    Returns:
        The cached DeviceChoice.
    """
    global _choice
    if _choice is not None:
        return _choice
    import torch

    settings = get_settings()
    wanted = settings.device
    note = ""
    if wanted in ("auto", "cuda") and torch.cuda.is_available():
        device, dtype = "cuda", "float16"
    else:
        device, dtype = "cpu", "float32"
        if wanted == "cuda":
            note = "CUDA was asked for but is not available; running on CPU in float32."
    threads, reason = thread_plan()
    torch.set_num_threads(threads)
    _choice = DeviceChoice(device=device, dtype_name=dtype, threads=torch.get_num_threads(), note=note, threads_from=reason)
    return _choice


def device_summary() -> str:
    """Describe the device and thread count for the sidebar, without importing torch when it is not loaded yet."""
    if _choice is None and "torch" in sys.modules:
        choose_device()
    if _choice is not None:
        reason = f" ({_choice.threads_from})" if _choice.threads_from else ""
        return f"{_choice.label()}{reason}"
    threads, reason = thread_plan()
    gpu = cuda_present_without_torch() and get_settings().device != "cpu"
    return f"{'cuda' if gpu else 'cpu'} · {threads} thread(s) ({reason}) · torch not loaded yet"


def quantize_int8(bundle):
    """Dynamic int8 quantisation of every ``torch.nn.Linear`` in ``bundle.model`` (CPU only).

    Weights are stored as int8 with one scale per output channel, and activations quantised on the fly: less memory and faster
    matrix products on CPUs, at a small cost in accuracy that the caller should measure.

    Args:
        bundle: a loaded-model dataclass with a ``model`` attribute (others are returned as they are).

    Returns:
        The same bundle, its ``model`` replaced by the quantised module.

    Raises:
        InputError: when models run on a GPU, where this kind of quantisation does not apply.
    """
    import warnings

    import torch

    from core.errors import InputError

    if choose_device().device != "cpu":
        raise InputError("int8 dynamic quantisation runs on the CPU only; this server runs models on the GPU.")
    module = getattr(bundle, "model", None)
    if isinstance(module, torch.nn.Module):
        module = module.float()  # from a model this CPU runs in bf16 too: int8 is made from float32 weights
        if hasattr(bundle, "precision"):
            from core.precision import Decision

            bundle.precision = Decision()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao eager quantisation is deprecated in favour of torchao
            # One scale per output channel: on the MiniLM sentiment head this flips fewer labels than one
            # scale per tensor (7 against 8 of 266) and moves scores less (p95 0.12 against 0.17), as fast.
            qconfig = {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
            bundle.model = torch.ao.quantization.quantize_dynamic(module, qconfig)
    return bundle
