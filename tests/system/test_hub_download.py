"""Hub reachability and downloads through huggingface_hub's own HTTP stack, against a loopback Hub.

``HF_ENDPOINT`` points at tests/support/hub_server.py, which serves a tiny DistilBERT under the id of the app's
default sentiment model, with the Hub's headers. Nothing here reaches the internet.
"""
import hashlib
import threading
from collections import namedtuple
from pathlib import Path

import pytest
from huggingface_hub import constants
from huggingface_hub.utils import close_session

from core import engines, registry, text
from core.catalog import get_spec
from core.config import get_settings
from core.errors import ModelUnavailable
from tests.support.hub_server import DECOYS, HubServer, sentiment_repo

SENTIMENT = "distilbert-sst2"
REPO = get_spec(SENTIMENT).hub_id


@pytest.fixture(scope="module")
def repo_folder(tmp_path_factory) -> Path:
    return sentiment_repo(tmp_path_factory.mktemp("repo"))


@pytest.fixture
def online(tmp_path, monkeypatch, fresh_cache):
    """Online settings, an empty Hub cache in tmp_path, and huggingface_hub pointed at ``online.use(server)``."""
    for name in ("UBT_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "0")
    for name in ("HF_TOKEN", "UBT_MODEL_DIR", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # progress every 64 KiB, not every 10 MB
    monkeypatch.setattr(registry.sources, "_probe_results", {})
    monkeypatch.setattr(registry.downloads, "REPORT_EVERY_S", 0.0)
    get_settings.cache_clear()
    close_session()

    class Online:
        @staticmethod
        def use(server: HubServer) -> HubServer:
            # What HF_ENDPOINT sets when huggingface_hub is imported: the API base and the file URL template.
            monkeypatch.setattr(constants, "ENDPOINT", server.url)
            monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
            return server

    yield Online
    close_session()
    get_settings.cache_clear()


def _load_with_progress(key: str = SENTIMENT) -> tuple[registry.Loaded, list[registry.DownloadProgress]]:
    reports: list[registry.DownloadProgress] = []
    with registry.download_listener(reports.append):
        loaded = registry.load(key)
    return loaded, reports


# --- which files ----------------------------------------------------------------------------------
def test_only_the_files_the_loader_reads_are_chosen():
    transformers_repo = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack",
                         "rust_model.ot", "onnx/model.onnx", "openvino/openvino_model.xml", "tokenizer.json", "vocab.txt",
                         "README.md", ".gitattributes", "1_Pooling/config.json", "map.jpeg"]
    assert registry.hub_files(get_spec(SENTIMENT), transformers_repo) == [
        "config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "1_Pooling/config.json"]
    # A repository without safetensors keeps its PyTorch weights (faster-whisper's CTranslate2 model.bin too).
    assert registry.hub_files(get_spec("faster-whisper-tiny"), ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]) == [
        "config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    diffusers_repo = ["model_index.json", "sd_turbo.safetensors", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                      "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.bin",
                      "text_encoder/model.fp16.safetensors", "scheduler/scheduler_config.json",
                      "vae/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.fp16.safetensors"]
    assert registry.hub_files(get_spec("sd-turbo"), diffusers_repo) == [
        "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "text_encoder/model.fp16.safetensors", "scheduler/scheduler_config.json",  # a variant alone stays
        "vae/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.fp16.safetensors"]  # full precision only as .bin
    open_clip_repo = ["open_clip_config.json", "open_clip_model.safetensors", "open_clip_pytorch_model.bin",
                      "model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json"]
    assert registry.hub_files(get_spec("clip-vit-b-32"), open_clip_repo) == ["open_clip_config.json", "open_clip_model.safetensors"]


# --- reachability ----------------------------------------------------------------------------------
def test_probe_asks_hf_endpoint_through_huggingface_hub(online, repo_folder):
    with online.use(HubServer({REPO: repo_folder})) as hub:
        assert registry.remote_reachable("hf") is True
        assert [(r.method, r.path) for r in hub.requests] == [("HEAD", "/")]
        resolution = registry.resolve(get_spec(SENTIMENT))
    assert resolution.source == "hub" and resolution.detail == f"download from {hub.url.split('//')[1]}"


def test_probe_of_a_closed_port_says_unreachable(online, monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    assert registry.remote_reachable("hf") is False


def test_probe_honours_huggingface_hub_offline_mode(online, repo_folder, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=1 as huggingface_hub read it at import
    with online.use(HubServer({REPO: repo_folder})) as hub:
        assert registry.remote_reachable("hf") is False
    assert hub.requests == []


def test_probe_goes_through_the_proxy_from_the_environment(online, repo_folder, monkeypatch):
    with HubServer({REPO: repo_folder}) as proxy:
        monkeypatch.setattr(constants, "ENDPOINT", "http://hub.invalid")  # a name that never resolves
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        monkeypatch.setenv("no_proxy", "")
        close_session()  # huggingface_hub's client reads proxies when it is created
        assert registry.remote_reachable("hf") is True
    assert [r.method for r in proxy.requests] == ["HEAD"]


# --- downloads ---------------------------------------------------------------------------------------
def test_download_through_the_registry_reports_progress_and_loads(online, repo_folder):
    with online.use(HubServer({REPO: repo_folder}, chunk_delay_s=0.005)) as hub:
        loaded, reports = _load_with_progress()
        result = text.classify(engines.load_sentiment(SENTIMENT, engines.TORCH), text.prepare_texts("I love this movie").texts)
    assert loaded.resolution.source == "hub" and loaded.load_s is not None
    assert len(result.predictions) == 1 and result.predictions[0].label in ("negative", "positive")
    wanted = registry.hub_files(get_spec(SENTIMENT), sorted(hub.files(REPO)))
    total = sum((repo_folder / name).stat().st_size for name in wanted)
    assert {r.total_bytes for r in reports} == {total}
    moving = [r for r in reports if 0 < r.done_bytes < total]
    assert len(moving) >= 5, reports  # about 1.7 MB in 64 KiB steps
    assert all(r.speed_bps > 0 and r.eta_s is not None and r.title == get_spec(SENTIMENT).title for r in moving)
    done = [r.done_bytes for r in reports]
    assert done == sorted(done)
    assert reports[-1].finished and reports[-1].fraction == 1.0 and reports[-1].eta_s == 0.0
    assert not any(hub.file_requests(name) for name in DECOYS)
    # Now the cache holds it: the next resolution needs no network.
    assert registry.resolve(get_spec(SENTIMENT)).source == "hub-cache"


def test_a_dropped_connection_resumes_with_a_range_request(online, repo_folder):
    with online.use(HubServer({REPO: repo_folder}, drop_after=300_000)) as hub:
        registry.download(get_spec(SENTIMENT))
    first, resumed = hub.file_requests("model.safetensors")
    assert first.range is None
    start = int(resumed.range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= 300_000  # from the last whole chunk the client had written
    cached = Path(constants.HF_HUB_CACHE)
    blob = next(cached.rglob("snapshots/*/model.safetensors")).resolve()
    assert hashlib.sha256(blob.read_bytes()).digest() == hashlib.sha256((repo_folder / "model.safetensors").read_bytes()).digest()


def test_an_interrupted_download_is_not_taken_for_a_cached_model_and_continues(online, repo_folder):
    spec = get_spec(SENTIMENT)
    with online.use(HubServer({REPO: repo_folder}, fail_get={"model.safetensors"})) as hub:
        with pytest.raises(ModelUnavailable) as err:
            registry.load(SENTIMENT)
        assert "Files fetched so far are kept" in str(err.value)
        assert hub.file_requests("config.json")  # the small files arrived before the failure
        # The cache holds part of the repository: it must not count as a cached model.
        assert registry.resolve(spec).source == "hub"
        hub.fail_get.clear()
        before = len(hub.requests)
        loaded, _ = _load_with_progress()
        again = [r.path.rsplit("/", 1)[-1] for r in hub.requests[before:] if r.method == "GET" and "/resolve/" in r.path]
    assert loaded.resolution.source == "hub"
    assert again == ["model.safetensors"]  # only what was missing


def test_a_gated_model_needs_hf_token(online, repo_folder, monkeypatch):
    with online.use(HubServer({REPO: repo_folder}, token="hf_test_token", gated=(REPO,))) as hub:
        with pytest.raises(ModelUnavailable) as err:
            registry.load(SENTIMENT)
        assert "gated" in str(err.value) and "HF_TOKEN" in str(err.value)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        loaded, _ = _load_with_progress()
    assert loaded.resolution.source == "hub"
    assert hub.file_requests("model.safetensors")[-1].authorization == "Bearer hf_test_token"


def test_free_disk_is_checked_before_anything_large_is_fetched(online, repo_folder, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(registry.downloads.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 50_000, 50_000))
    with online.use(HubServer({REPO: repo_folder})) as hub:
        with pytest.raises(ModelUnavailable) as err:
            registry.load(SENTIMENT)
    message = str(err.value)
    assert "MB of free disk to download" in message and "only 0 MB free" in message and "HF_HOME" in message
    assert not [r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]


def test_whisper_checkpoint_resumes_a_partial_file_and_checks_its_hash(online, tmp_path, monkeypatch):
    import whisper

    checkpoint = tmp_path / "tiny.pt"
    checkpoint.write_bytes(bytes(range(256)) * 4096)  # 1 MiB stand-in for the real checkpoint
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    path = f"/main/whisper/models/{digest}/tiny.pt"
    monkeypatch.setitem(whisper._MODELS, "tiny", "https://openaipublic.azureedge.net" + path)
    spec = get_spec("whisper-tiny")
    with HubServer({}, raw={path: checkpoint}) as host:
        monkeypatch.setattr(registry.sources, "WHISPER_URL", host.url)
        partial = registry.whisper_root() / "tiny.pt.partial"
        partial.parent.mkdir(parents=True)
        partial.write_bytes(checkpoint.read_bytes()[:400_000])  # what a restarted server left behind
        reports: list[registry.DownloadProgress] = []
        with registry.download_listener(reports.append):
            registry.download(spec)
    assert [r.range for r in host.file_requests("tiny.pt")] == ["bytes=400000-"]
    assert (registry.whisper_root() / "tiny.pt").read_bytes() == checkpoint.read_bytes() and not partial.exists()
    assert reports[-1].finished and reports[-1].total_bytes == checkpoint.stat().st_size
    assert registry.sources._whisper_cache_has("tiny")


def test_a_corrupt_whisper_checkpoint_is_deleted(online, tmp_path, monkeypatch):
    import whisper

    checkpoint = tmp_path / "tiny.pt"
    checkpoint.write_bytes(b"x" * 10_000)
    path = f"/main/whisper/models/{'0' * 64}/tiny.pt"
    monkeypatch.setitem(whisper._MODELS, "tiny", "https://openaipublic.azureedge.net" + path)
    with HubServer({}, raw={path: checkpoint}) as host:
        monkeypatch.setattr(registry.sources, "WHISPER_URL", host.url)
        with pytest.raises(ModelUnavailable, match="SHA-256"):
            registry.download(get_spec("whisper-tiny"))
    assert not list(registry.whisper_root().iterdir())


def test_two_sessions_asking_for_one_download_fetch_it_once(online, repo_folder):
    with online.use(HubServer({REPO: repo_folder}, chunk_delay_s=0.002)) as hub:
        results: list[registry.Loaded] = []
        threads = [threading.Thread(target=lambda: results.append(registry.load(SENTIMENT))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(results) == 2 and results[0].model is results[1].model
    assert len(hub.file_requests("model.safetensors")) == 1


# --- on the page ------------------------------------------------------------------------------------
def test_the_text_page_shows_the_download_then_the_result(online, repo_folder):
    from tests.support.apptest import app_at

    with online.use(HubServer({REPO: repo_folder})):
        at = app_at("app_pages/text.py").run()
        at.selectbox(key="sentiment_model").select(get_spec(SENTIMENT)).run()
        at.text_area(key="sentiment_text").input("I love this movie")
        at = at.button(key="sentiment_run").click().run()
    assert not at.exception and not at.error and not at.warning, [m.value for m in at.warning]
    done = [c.value for c in at.caption if "Downloaded" in c.value]
    assert len(done) == 1 and done[0].startswith(f":material/download_done: Downloaded {get_spec(SENTIMENT).title}: 1.7 MB in ")
