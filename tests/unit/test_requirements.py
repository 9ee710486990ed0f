"""The Community Cloud requirements and the local install pin the same versions.

requirements.txt takes torch and torchvision from PyTorch's CPU wheel index (``+cpu`` builds, no CUDA
packages); `make` installs the same file with that index line and the ``+cpu`` labels removed, from PyPI.
"""
import re
import subprocess
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)")


def _pins(text: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) for line in text.splitlines() if (m := PIN.match(line.strip()))}


def _local_requirements() -> str:
    """requirements.txt as the Makefile rewrites it for this machine (its own sed command, run here)."""
    command = next(line.strip() for line in (ROOT / "Makefile").read_text().splitlines() if line.strip().startswith("sed "))
    command = command.split(">")[0].replace("$$", "$")
    return subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_cloud_file_takes_cpu_only_torch_from_pytorchs_index():
    text = (ROOT / "requirements.txt").read_text()
    assert f"--extra-index-url {CPU_INDEX}" in text.splitlines()
    pins = _pins(text)
    assert pins["torch"].endswith("+cpu") and pins["torchvision"].endswith("+cpu")
    assert not [name for name in pins if name.startswith(("nvidia", "cuda", "triton"))]
    assert [name for name, pin in pins.items() if "+" in pin] == ["torch", "torchvision"]


def test_local_install_pins_the_same_versions_and_has_them_installed():
    cloud, local = _pins((ROOT / "requirements.txt").read_text()), _pins(_local_requirements())
    assert CPU_INDEX not in _local_requirements()
    assert local == {name: pin.removesuffix("+cpu") for name, pin in cloud.items()}
    installed = {}
    for name in local:
        try:
            installed[name] = version(name)
        except PackageNotFoundError:
            installed[name] = None
    # PyPI's torch carries no local label; a CPU build installed here would read 2.14.1+cpu: both are the pin.
    assert {n: (v or "").split("+")[0] for n, v in installed.items()} == local


def test_uv_looks_at_every_index_like_pip():
    settings = tomllib.loads((ROOT / "uv.toml").read_text())
    assert settings["pip"]["index-strategy"] == "unsafe-best-match"
