"""core.cpu: the CPU class and the choices made from its flags, on recorded /proc/cpuinfo lines of every class
this project's machines have had (tests/data/cpuinfo/), so each is tested on any machine."""
from pathlib import Path

import pytest

from core import cpu

RECORDED = Path(__file__).resolve().parents[1] / "data" / "cpuinfo"
CLASSES = {  # file -> (class, native bf16, AMX, llama.cpp repack allowed)
    "epyc_avx2.txt": ("AVX2 only", False, False, True),
    "epyc_avx512.txt": ("AVX-512", False, False, True),
    "epyc_avx512_bf16.txt": ("AVX-512 with BF16", True, False, True),
    "xeon_amx.txt": ("AVX-512 with AMX", True, True, False),
}


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_each_recorded_cpu_gets_its_class_and_its_llamacpp_repack_choice(name):
    info = cpu.parse_cpuinfo((RECORDED / name).read_text())
    kind, bf16, amx, repack = CLASSES[name]
    assert (info.kind, info.bf16, info.amx) == (kind, bf16, amx)
    allowed, why = cpu.llamacpp_repack(info)
    assert allowed is repack
    assert ("llama.cpp#20824" in why) is (not repack)  # the reason names the upstream bug where it is off
    assert info.describe().startswith(info.model) and kind in info.describe()


def test_only_the_first_processor_is_read_and_a_missing_model_name_is_said():
    text = "processor\t: 0\nflags\t\t: sse avx2\n\nprocessor\t: 1\nmodel name\t: Second\nflags\t\t: avx512f amx_tile\n"
    info = cpu.parse_cpuinfo(text)
    assert info.flags == frozenset({"sse", "avx2"}) and info.kind == "AVX2 only"
    assert info.model == "Second"  # the first model name line, wherever it is
    assert cpu.parse_cpuinfo("").kind == "no AVX2"


def test_the_ci_line_names_this_cpu_without_anything_installed():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-S", "-m", "core.cpu"], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.startswith("CPU: ") and cpu.this_cpu().kind in out
