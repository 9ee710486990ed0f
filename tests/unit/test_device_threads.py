"""Thread count from the container's real CPU share: cgroup v1/v2 quota files, affinity, UBT_THREADS."""
import subprocess
import sys
from pathlib import Path

import pytest

from core import device
from core.config import get_settings

ROOT = Path(__file__).resolve().parents[2]


def _tree(tmp_path: Path, proc_cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake /sys/fs/cgroup (``root``) and /proc/self (``proc``) holding the given files."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(proc_cgroup)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root, proc


@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setattr(device.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1})


def test_cgroup_v2_quota_of_half_a_core_gives_one_thread(tmp_path, two_cpus):
    root, proc = _tree(tmp_path, "0::/user.slice/app\n", {"cgroup.controllers": "cpu memory", "user.slice/app/cpu.max": "50000 100000\n"})
    share = device.cpu_share(root, proc)
    assert share == device.CpuShare(cores=4, affinity=2, quota=0.5)
    assert share.threads == 1
    assert share.describe() == "CPU quota 0.5 of 4 core(s)"


def test_cgroup_v2_takes_the_tightest_limit_up_the_hierarchy(tmp_path, two_cpus):
    root, proc = _tree(tmp_path, "0::/a/b\n", {
        "cgroup.controllers": "cpu", "cpu.max": "100000 100000", "a/cpu.max": "max 100000", "a/b/cpu.max": "300000 100000",
    })
    share = device.cpu_share(root, proc)
    assert share.quota == 1.0 and share.threads == 1


def test_cgroup_v2_without_a_limit_uses_the_affinity(tmp_path, two_cpus):
    root, proc = _tree(tmp_path, "0::/\n", {"cgroup.controllers": "cpu", "cpu.max": "max 100000\n"})
    share = device.cpu_share(root, proc)
    assert share.quota is None and share.threads == 2
    assert share.describe() == "2 of 4 cores (CPU affinity)"


def test_cgroup_v1_quota_in_a_container_is_read_at_the_mount_root(tmp_path, two_cpus):
    # Docker without a cgroup namespace: /proc/self/cgroup names /docker/<id>, but the container sees its
    # own cgroup mounted at the root of the hierarchy.
    root, proc = _tree(tmp_path, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n", {
        "cpu,cpuacct/cpu.cfs_quota_us": "150000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    share = device.cpu_share(root, proc)
    assert share.quota == 1.5
    assert share.threads == 2  # 1.5 rounds to 2, within the 2 CPUs of the affinity


def test_cgroup_v1_unlimited_quota_is_no_quota(tmp_path, two_cpus):
    root, proc = _tree(tmp_path, "3:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"})
    assert device.cpu_share(root, proc).quota is None


def test_hybrid_hierarchy_reads_the_v1_cpu_controller(tmp_path, two_cpus):
    # Like this machine: cgroup v2 mounted at unified/ with no cpu controller, v1 cpu beside it.
    root, proc = _tree(tmp_path, "1:cpu:/job\n0::/\n", {
        "unified/cgroup.controllers": "", "cpu/job/cpu.cfs_quota_us": "100000", "cpu/job/cpu.cfs_period_us": "100000",
    })
    share = device.cpu_share(root, proc)
    assert share.quota == 1.0 and share.threads == 1


def test_unreadable_or_garbled_files_are_ignored(tmp_path, two_cpus):
    root, proc = _tree(tmp_path, "garbage\n0::/x\n", {"cgroup.controllers": "", "x/cpu.max": "lots\n"})
    assert device.cpu_share(root, proc).quota is None
    assert device.cpu_share(tmp_path / "absent", tmp_path / "absent").quota is None


def test_a_tiny_quota_still_gets_one_thread():
    assert device.CpuShare(cores=8, affinity=8, quota=0.078).threads == 1


def test_ubt_threads_overrides_the_cpu_share(monkeypatch):
    monkeypatch.setenv("UBT_THREADS", "3")
    get_settings.cache_clear()
    try:
        assert device.thread_plan() == (3, "UBT_THREADS")
        monkeypatch.setenv("UBT_THREADS", "0")
        get_settings.cache_clear()
        monkeypatch.setattr(device, "cpu_share", lambda: device.CpuShare(cores=4, affinity=4, quota=1.0))
        assert device.thread_plan() == (1, "CPU quota 1 of 4 core(s)")
    finally:
        get_settings.cache_clear()


def test_device_summary_shows_the_threads_and_why(monkeypatch):
    monkeypatch.setattr(device, "_choice", device.DeviceChoice("cpu", "float32", 1, threads_from="CPU quota 1 of 2 core(s)"))
    assert device.device_summary() == "cpu · float32 · 1 thread(s) (CPU quota 1 of 2 core(s))"
    # Before torch is imported the summary still says how many threads models will get, and does not import torch.
    monkeypatch.setattr(device, "_choice", None)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(device, "thread_plan", lambda: (1, "CPU quota 1 of 2 core(s)"))
    monkeypatch.setattr(device, "cuda_present_without_torch", lambda: False)
    assert device.device_summary() == "cpu · 1 thread(s) (CPU quota 1 of 2 core(s)) · torch not loaded yet"
    assert "torch" not in sys.modules


def test_app_sets_openmp_waiting_before_anything_loads_openmp():
    """app.py sets OPENMP_WAIT after its imports: none of them may load torch or llama.cpp (OpenMP reads the
    variables once, when it loads; PASSIVE alone left llama.cpp decoding 4x slower in the app)."""
    code = (
        "import os, sys\n"
        "for name in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT'): os.environ.pop(name, None)\n"
        "os.environ['GOMP_SPINCOUNT'] = '5'\n"  # a value already set wins
        "import streamlit\n"
        "from core.config import get_settings, set_openmp_wait\n"
        "from core.engines import preload\n"
        "from core.registry import preload_in_background\n"
        "from ui.sidebar import refresh_sidebar, sidebar\n"
        "loaded = sorted(m for m in ('torch', 'llama_cpp', 'ctranslate2', 'onnxruntime') if m in sys.modules)\n"
        "set_openmp_wait()\n"
        "print(loaded, os.environ['OMP_WAIT_POLICY'], os.environ['GOMP_SPINCOUNT'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]", "PASSIVE", "5"]
    source = (ROOT / "app.py").read_text()
    assert source.index("set_openmp_wait()") < source.index("preload_in_background(get_settings")  # before models load
