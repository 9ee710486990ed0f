"""What this CPU is and which of its vector units the engines may use, read from ``/proc/cpuinfo``.

The project's machines are not alike: AVX2 only, AVX-512, AVX-512 with BF16, AVX-512 with AMX. Choices that
depend on the CPU (an engine's code path, a number format) are made here from the flags, so they can be tested
with recorded flag lines of every class (tests/data/cpuinfo/). Standard library only: ``python -m core.cpu``
prints the CPU line before anything is installed (``.ci/run`` does, so a red run can be tied to a CPU).
"""
from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class CpuInfo:
    """One CPU's model name and feature flags.

    Attributes:
        model: the ``model name`` line (e.g. ``AMD EPYC``, ``Intel(R) Xeon(R) Platinum 8480+``).
        flags: every flag of the ``flags`` line.
    """

    model: str
    flags: frozenset[str]

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def bf16(self) -> bool:
        """Native bfloat16 arithmetic: AVX512_BF16 or AMX's BF16 tiles."""
        return "avx512_bf16" in self.flags or "amx_bf16" in self.flags

    @property
    def amx(self) -> bool:
        """Intel AMX tiles (Sapphire Rapids and later)."""
        return "amx_tile" in self.flags

    @property
    def kind(self) -> str:
        """The CPU class this project tells apart: ``AVX-512 with AMX``, ``AVX-512 with BF16``, ``AVX-512``,
        ``AVX2 only`` or ``no AVX2``."""
        if self.amx:
            return "AVX-512 with AMX"
        if self.avx512:
            return "AVX-512 with BF16" if self.bf16 else "AVX-512"
        return "AVX2 only" if self.avx2 else "no AVX2"

    def describe(self) -> str:
        """One line, e.g. ``AMD EPYC (AVX-512 with BF16): avx2 avx512f avx512_vnni avx512_bf16``."""
        present = " ".join(flag for flag in REPORTED_FLAGS if flag in self.flags) or "none of the vector flags"
        return f"{self.model} ({self.kind}): {present}"


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's model name and flags in the text of ``/proc/cpuinfo``."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and not model:
            model = value.strip()
        elif name == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model or platform.processor() or "unknown CPU", flags)


@functools.cache
def this_cpu() -> CpuInfo:
    """This machine's CPU (read once per process; an empty flag set where ``/proc/cpuinfo`` cannot be read)."""
    try:
        return parse_cpuinfo(CPUINFO.read_text())
    except OSError:
        return CpuInfo(platform.processor() or "unknown CPU", frozenset())


def llamacpp_repack(cpu: CpuInfo) -> tuple[bool, str]:
    """Whether llama.cpp may repack weights into its extra CPU buffer types (``use_extra_bufts``) on ``cpu``.

    On CPUs with AMX the repack goes to the AMX buffer, and the first decode segfaults (ggml-org/llama.cpp#20824,
    open). Elsewhere the repack (AVX2/AVX-512 interleaved layouts) works and is kept.

    Returns:
        (allowed, why): why is a line for the engine's label when the repack is off, "" otherwise.
    """
    if cpu.amx:
        return False, "weight repack off: it crashes on AMX CPUs (llama.cpp#20824)"
    return True, ""


@functools.cache
def machine_key(package: str) -> str:
    """What identifies this machine for a cached verdict about ``package`` (an engine, torch): the CPU model, its
    vector flags and the package's version (fixed for the process's life, so looked up once)."""
    import importlib.metadata

    cpu = this_cpu()
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return f"{cpu.model} | {cpu.kind} | {' '.join(sorted(cpu.flags & {'amx_tile', 'avx512_bf16', 'avx512f', 'avx2'}))} | {package} {version}"


if __name__ == "__main__":
    print(f"CPU: {this_cpu().describe()}")
