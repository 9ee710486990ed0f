"""Serve the real app with tiny models, in one process, on loopback only (for load and fault tests).

Run: ``.venv/bin/python -m tests.support.serve_tiny --port 8599 --stats /tmp/ubt-stats.json``

The launcher writes tiny seeded models (tests/support/tiny.py, tests/support/tiny_vision.py: DistilBERT, CLIP, BLIP)
as checkpoint folders under ``$UBT_MODEL_DIR`` (``<model_dir>/<hub id>``, the registry's first
source), so each one is loaded by the app's own loader on first use, exactly as a downloaded
checkpoint would be; ``--install key=module:function`` puts any other ready-made model in the cache
with ``registry.install``. Streamlit then runs IN THIS PROCESS (``streamlit.web.bootstrap.run``),
so every session's script run shares one registry. Every load the cache performs is counted per
model, and the figures (loads, cache use against the budget, resident memory now and at peak) are
written to a JSON stats file every quarter second, with the CPU time spent in script runs (the threads
that run app.py and the page). For benchmarks: ``--real-only`` skips the tiny models (the process is then
as ``streamlit run`` makes it); ``--app`` serves another main script (a reference page);
``--profile-dir`` profiles each script run with cProfile (the script thread's CPU time) while the file
``<dir>/on`` exists, one ``.prof`` file per run.

:func:`tiny_server` starts the launcher as a child process for a test and stops it afterwards;
:func:`declared_pages` / :func:`page_script` find the page scripts from app.py, by URL path.
"""
from __future__ import annotations

import argparse
import ast
import cProfile
import importlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
LOOPBACK = "127.0.0.1"
STATS_EVERY_S = 0.25


def declared_pages() -> dict[str, str]:
    """Every page app.py declares with ``st.Page``: script path (relative to the repository root) by URL
    path, ``""`` for the default page. Read from app.py's source, so moving the scripts changes nothing here.
    """
    pages = {}
    for node in ast.walk(ast.parse(APP.read_text())):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Page" and node.args):
            continue
        options = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg in ("url_path", "default")}
        script = ast.literal_eval(node.args[0])
        url_path = "" if options.get("default") else options.get("url_path", Path(script).stem)
        pages[url_path] = script
    return pages


def page_script(url_path: str) -> str:
    """The script of the page served at ``/<url_path>`` (what ``AppTest.switch_page`` takes).

    Raises:
        LookupError: when app.py declares no such page.
    """
    try:
        return declared_pages()[url_path]
    except KeyError:
        raise LookupError(f"app.py declares no page at /{url_path}") from None


def _distilbert(folder: Path) -> None:
    from tests.support import tiny

    built = tiny.distilbert_classifier()
    built.model.save_pretrained(folder)
    built.tokenizer.save_pretrained(folder)


def _clip(folder: Path) -> None:
    from safetensors.torch import save_file

    from core.catalog import OPEN_CLIP_WEIGHTS
    from tests.support import tiny_vision

    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.contiguous() for name, tensor in tiny_vision.clip_model().model.state_dict().items()}
    save_file(state, folder / OPEN_CLIP_WEIGHTS[0])


def _blip(folder: Path) -> None:
    from tests.support import tiny_vision

    built = tiny_vision.blip_captioner()
    built.model.save_pretrained(folder)
    built.processor.save_pretrained(folder)


def _tiny_clip_options(options: dict) -> dict:
    from tests.support import tiny_vision

    return {**options, "arch": tiny_vision.register_tiny_clip_config()}


# Tiny models written as checkpoint folders, by catalog key; the page loads them with its own loader.
TINY_CHECKPOINTS = {"distilbert-sst2": _distilbert, "clip-vit-b-32": _clip, "blip-base": _blip}
# Spec options that must name the tiny architecture (open_clip builds the model from its name).
TINY_OPTIONS = {"clip-vit-b-32": _tiny_clip_options}


def prepare_tiny_models(model_dir: Path) -> list[str]:
    """Write each tiny checkpoint as ``<model_dir>/<hub id>`` (where the registry looks first), once,
    and point the specs that name an architecture at the tiny one (in this process only).

    Args:
        model_dir: the folder ``UBT_MODEL_DIR`` points to.

    Returns:
        The catalog keys now served by tiny checkpoints.
    """
    from dataclasses import replace

    from core import catalog

    for key, write in TINY_CHECKPOINTS.items():
        folder = model_dir / catalog.get_spec(key).hub_id
        if not folder.is_dir():
            partial = folder.with_name(folder.name + ".partial")
            write(partial)
            partial.rename(folder)
    for key, options in TINY_OPTIONS.items():
        spec = catalog.get_spec(key)
        catalog.CATALOG[key] = replace(spec, options=options(spec.options))
    return list(TINY_CHECKPOINTS)


def _count_loads(loads: Counter, lock: threading.Lock) -> None:
    """Count every load the shared cache performs, per catalog key."""
    from core import registry

    cache_get = registry.CACHE.get

    def counting_get(key, spec, resolution, load):
        def counted():
            with lock:
                loads[key] += 1
            return load()

        return cache_get(key, spec, resolution, counted)

    registry.CACHE.get = counting_get


def _instrument_script_runs(totals: Counter, lock: threading.Lock, profile_dir: Path | None) -> None:
    """Add every script run's thread CPU time to ``totals`` and, while ``<profile_dir>/on`` exists,
    profile the run with cProfile into ``<profile_dir>/<id>.prof``."""
    from streamlit.runtime.scriptrunner import script_runner

    original = script_runner.ScriptRunner._run_script

    def run_script(self, rerun_data):
        on = profile_dir is not None and (profile_dir / "on").exists()
        profiler = cProfile.Profile(time.thread_time) if on else None  # this thread's CPU, not the wall
        start = time.thread_time()
        if profiler is not None:
            profiler.enable()
        try:
            return original(self, rerun_data)
        finally:
            if profiler is not None:
                profiler.disable()
                partial = profile_dir / f"{uuid.uuid4().hex}.partial"
                profiler.dump_stats(partial)
                partial.rename(partial.with_suffix(".prof"))
            with lock:
                totals["script_cpu_s"] += time.thread_time() - start
                totals["script_runs"] += 1

    script_runner.ScriptRunner._run_script = run_script


def _write_stats(path: Path, loads: Counter, lock: threading.Lock, totals: Counter) -> None:
    import psutil

    from core import registry
    from core.config import get_settings

    process = psutil.Process()
    while True:
        with lock:
            counted, scripts = dict(loads), dict(totals)
        stats = {
            "pid": os.getpid(),
            "rss_mb": process.memory_info().rss / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
            "budget_mb": get_settings().memory_budget_mb,
            "cache_used_mb": registry.CACHE.used_mb(),
            "cache_loads": registry.CACHE.loads,
            "loads": counted,
            "cached": [loaded.spec.key for loaded in registry.CACHE.snapshot()],
            "evictions": list(registry.CACHE.evictions),
            "script_cpu_s": scripts.get("script_cpu_s", 0.0),
            "script_runs": scripts.get("script_runs", 0),
            "time": time.time(),
        }
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(stats))
        os.replace(partial, path)
        time.sleep(STATS_EVERY_S)


def serve(port: int, stats: Path, installed: tuple[str, ...] = (), app: Path = APP,
          profile_dir: Path | None = None, tiny: bool = True) -> None:
    """Prepare tiny models, then run Streamlit on ``127.0.0.1:port`` in this process (blocks).

    Args:
        port: the loopback port.
        stats: the JSON stats file, rewritten every :data:`STATS_EVERY_S` seconds.
        installed: catalog keys to put in the cache ready-made (``registry.install``), as
            ``key=module:function`` builders returning the loaded model.
        app: the main script (default: the app's app.py).
        profile_dir: where to write a cProfile file per script run while ``<profile_dir>/on`` exists.
        tiny: write the tiny models first; False serves the real models only, as ``streamlit run``
            would (torch is then first imported by a page, in a script run's thread).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("UBT_OFFLINE", "1")
    data_dir = Path(os.environ.setdefault("UBT_DATA_DIR", tempfile.mkdtemp(prefix="ubt-serve-")))
    os.environ.setdefault("UBT_RUNS_DB", str(data_dir / "runs.sqlite"))
    model_dir = Path(os.environ.setdefault("UBT_MODEL_DIR", str(data_dir / "models")))
    sys.path.insert(0, str(ROOT))

    from core import registry

    if tiny and app == APP:  # another main script (a benchmark's reference page) gets a bare Streamlit process
        prepare_tiny_models(model_dir)
    for item in installed:
        key, target = item.split("=", 1)
        module, builder = target.split(":")
        registry.install(key, getattr(importlib.import_module(module), builder)())

    loads, totals, lock = Counter(), Counter(), threading.Lock()
    _count_loads(loads, lock)
    _instrument_script_runs(totals, lock, profile_dir)
    threading.Thread(target=_write_stats, args=(stats, loads, lock, totals), name="ubt-stats", daemon=True).start()

    from streamlit import config
    from streamlit.web import bootstrap

    flags = {"server.port": port, "server.address": LOOPBACK, "server.headless": True}
    config._main_script_path = str(app)  # as `streamlit run` does, so .streamlit/config.toml is found
    bootstrap.load_config_options(flag_options=flags)
    bootstrap.run(str(app), False, [], flags)


# --- for tests: the launcher as a child process ------------------------------------------------------
@dataclass(frozen=True)
class TinyServer:
    """A running launcher.

    Attributes:
        url: ``http://127.0.0.1:<port>``.
        pid: the server process (whose memory the tests watch).
        stats_path: its JSON stats file.
        log_path: its stdout and stderr.
        env: the environment it runs with (``UBT_RUNS_DB`` tells where its runs go).
    """

    url: str
    pid: int
    stats_path: Path
    log_path: Path
    env: dict

    def stats(self) -> dict:
        """The latest figures the server wrote."""
        return json.loads(self.stats_path.read_text())

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@contextmanager
def tiny_server(workdir: Path, env: dict | None = None, installed: tuple[str, ...] = (),
                start_timeout_s: float = 120.0, app: Path | None = None,
                profile_dir: Path | None = None, tiny: bool = True) -> Iterator[TinyServer]:
    """Start the launcher on a free loopback port, wait until it answers, stop it afterwards.

    Args:
        workdir: a private folder for its data, models, stats and log.
        env: extra environment variables (e.g. ``UBT_MEMORY_BUDGET_MB``).
        installed: ``key=module:function`` models to install ready-made.
        start_timeout_s: the longest to wait for the health endpoint and the first stats.
        app: another main script to serve instead of app.py.
        profile_dir, tiny: see :func:`serve`.

    Yields:
        The TinyServer.

    Raises:
        RuntimeError: when it does not start (its log is in the message).
    """
    port = free_port()
    stats_path, log_path = workdir / "stats.json", workdir / "server.log"
    server_env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "UBT_OFFLINE": "1", "UBT_DATA_DIR": str(workdir / "data"),
        "UBT_RUNS_DB": str(workdir / "data" / "runs.sqlite"), "UBT_MODEL_DIR": str(workdir / "models"),
        "PYTHONUNBUFFERED": "1", **(env or {}),
    }
    command = [sys.executable, "-m", "tests.support.serve_tiny", "--port", str(port), "--stats", str(stats_path)]
    command += [arg for item in installed for arg in ("--install", item)]
    command += ["--app", str(app)] if app is not None else []
    command += ["--profile-dir", str(profile_dir)] if profile_dir is not None else []
    command += [] if tiny else ["--real-only"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the tiny server did not start (exit {proc.poll()}):\n{log_path.read_text()}")
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                if stats_path.exists():
                    break
            except OSError:
                pass
            time.sleep(0.3)
        yield TinyServer(url, proc.pid, stats_path, log_path, server_env)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--install", action="append", default=[], metavar="KEY=MODULE:FUNCTION",
                        help="put a ready-made model in the cache (repeatable)")
    parser.add_argument("--app", type=Path, default=APP, help="the main script (default: app.py)")
    parser.add_argument("--profile-dir", type=Path, help="profile script runs while <dir>/on exists")
    parser.add_argument("--real-only", action="store_true", help="no tiny models: the real ones only, as `streamlit run`")
    args = parser.parse_args()
    serve(args.port, args.stats, tuple(args.install), args.app, args.profile_dir, tiny=not args.real_only)


if __name__ == "__main__":
    main()
