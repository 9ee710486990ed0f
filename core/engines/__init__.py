"""Engines: the same model, run by the library its users would pick for the job.

A model spec says *what* runs (weights, task); an engine says *how*: plain PyTorch, ONNX Runtime, CTranslate2 or
llama.cpp. Engines are the local sibling of hosted providers (:mod:`core.providers`): all return the same results
and Measurements, so pages, the run store and Summary show "same model, another engine" side by side.

This module holds the engine names, whether each is installed (looked up without importing it), the choice
for a model (:func:`choose_generation_engine`, :func:`choose_encoder_engine`), which always says why when it
falls back, and :func:`load`, which loads a model on an engine through the shared model cache.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass

from core import registry
from core.catalog import ModelSpec, get_spec
from core.config import get_settings
from core.errors import InputError
from core.prepare import weights_digest
from core.progress import OnProgress, ignore
from core.registry import Resolution

TORCH, ONNXRUNTIME, CTRANSLATE2, LLAMACPP = "torch", "onnxruntime", "ctranslate2", "llama.cpp"
AUTO = "auto"


@dataclass(frozen=True)
class Engine:
    """One inference engine.

    Attributes:
        name: stable name, used in cache keys, measurements and the run store.
        title: what pages show.
        module: the Python module that provides it (looked up, never imported, to say whether it is installed).
        install: how to get it when it is missing.
        wheels_only: installs from prebuilt wheels (no compiler), so it works on Streamlit Community Cloud.
    """

    name: str
    title: str
    module: str
    install: str
    wheels_only: bool = True


ENGINES = {
    TORCH: Engine(TORCH, "PyTorch (transformers), float32", "torch", "pip install torch transformers"),
    ONNXRUNTIME: Engine(ONNXRUNTIME, "ONNX Runtime, float32", "onnxruntime", "pip install onnxruntime onnx"),
    CTRANSLATE2: Engine(CTRANSLATE2, "CTranslate2, int8", "ctranslate2", "pip install ctranslate2"),
    LLAMACPP: Engine(LLAMACPP, "llama.cpp (GGUF as packaged)", "llama_cpp",
                     "pip install llama-cpp-python (builds from source: a C++ compiler, about 10 min on 2 cores)",
                     wheels_only=False),
}
# Generation engines in order of preference: llama.cpp reads the packaged GGUF as it is (no conversion, 0.1 s
# load, 80-100 tokens/s on 2 AVX2 cores, near the memory floor) but builds from source; CTranslate2 int8 installs
# from wheels (faster-whisper needs it): ~37 tokens/s there, 2.3x float32, but 86% next-token agreement.
GENERATION_ENGINES = (LLAMACPP, CTRANSLATE2, TORCH)
# Engines that run in a process of their own (core/engines/runner.py): a crash in their C++ ends one request.
RUNNER_ENGINES = (LLAMACPP,)
ENCODER_ENGINES = (ONNXRUNTIME, TORCH)


@dataclass(frozen=True)
class EngineChoice:
    """The engine a model runs on, and why when it is not the one asked for.

    Attributes:
        engine: an engine name.
        note: one line for people when the choice fell back (empty otherwise).
    """

    engine: str
    note: str = ""


def installed(name: str) -> bool:
    """Whether engine ``name``'s Python package is installed (nothing is imported)."""
    try:
        return importlib.util.find_spec(ENGINES[name].module) is not None
    except (ImportError, ValueError):
        return False


def threads() -> int:
    """Threads an engine runs with: the same count as torch's (:func:`core.device.thread_plan`), without importing torch."""
    from core.device import thread_plan

    return thread_plan()[0]


def _is_gguf(resolution: Resolution) -> bool:
    return resolution.location.endswith(".gguf")


def _fits(name: str, resolution: Resolution) -> str:
    """Why engine ``name`` cannot run a generation model from ``resolution`` ("" when it can)."""
    if not installed(name):
        return f"{ENGINES[name].title} is not installed ({ENGINES[name].install})"
    if name == LLAMACPP and not _is_gguf(resolution):
        return "llama.cpp reads GGUF files, and these weights are not one"
    if name in RUNNER_ENGINES:
        from core.engines.runner import failing

        why = failing(name)
        if why:
            return f"{ENGINES[name].title} failed on this machine: {why}"
    if name != TORCH and resolution.source == "test":
        return f"{ENGINES[name].title} reads weights from files, and these exist only in memory"
    return ""


def generation_engines(resolution: Resolution) -> list[str]:
    """The generation engines that can run weights from ``resolution`` here, in order of preference."""
    return [name for name in GENERATION_ENGINES if not _fits(name, resolution)]


def choose_generation_engine(resolution: Resolution, wanted: str = AUTO) -> EngineChoice:
    """Pick the engine for a text-generation model.

    Args:
        resolution: where the weights come from (a packaged GGUF file, a Hub id, a folder).
        wanted: an engine name, or ``auto`` for the fastest one available.

    Returns:
        The EngineChoice; its note says what was missing when ``wanted`` (or the first preference) could not run.

    Raises:
        InputError: for an engine name that does not generate text.
    """
    if wanted != AUTO and wanted not in GENERATION_ENGINES:
        raise InputError(f"Unknown generation engine {wanted!r}; choose from {', '.join(GENERATION_ENGINES)}.")
    usable = generation_engines(resolution)
    first = GENERATION_ENGINES[0] if wanted == AUTO else wanted
    if first in usable:
        return EngineChoice(first)
    engine = usable[0] if usable else TORCH
    return EngineChoice(engine, f"{_fits(first, resolution)}; running on {ENGINES[engine].title} instead.")


def explain(choice: EngineChoice, wanted: str = AUTO) -> str:
    """One line for the page: which engine runs and why (the fallback note when there is one)."""
    title = ENGINES[choice.engine].title
    if choice.note:
        return choice.note
    if wanted != AUTO:
        return f"Runs on {title}, as chosen."
    why = {
        LLAMACPP: "first by this project's benchmarks (bench/results.md): it reads the packaged GGUF file as it is, "
                  "with no conversion; Compare engines below measures every engine on this server",
        CTRANSLATE2: "first by this project's benchmarks among the engines installed here (converted to int8 once per "
                     "machine); Compare engines below measures every engine on this server",
        ONNXRUNTIME: "faster than PyTorch for this encoder, with the same answers (checked when it was exported)",
    }.get(choice.engine, "the reference engine")
    return f"Runs on {title}, {why}."


def needs_preparation(key: str, engine: str) -> bool:
    """Whether running ``key`` on ``engine`` first converts its weights (once per machine, seconds to a minute).

    Loads nothing; False when the converted files are there already, or the model cannot be found.
    """
    spec = get_spec(key)
    resolution = registry.availability(spec).resolution
    if engine == TORCH:
        from core import textgen

        return spec.task == "generation" and textgen.needs_conversion(spec, resolution)
    if resolution is None or resolution.source == "test":
        return False
    if engine == CTRANSLATE2:
        from core.engines import ct2

        return ct2.needs_conversion(spec, resolution)
    return False


def choose_encoder_engine(wanted: str = AUTO) -> EngineChoice:
    """Pick the engine for a sentence encoder: ONNX Runtime on CPU when installed, else PyTorch (with why).

    Raises:
        InputError: for an engine name that does not run encoders.
    """
    if wanted != AUTO and wanted not in ENCODER_ENGINES:
        raise InputError(f"Unknown encoder engine {wanted!r}; choose from {', '.join(ENCODER_ENGINES)}.")
    if wanted == TORCH:
        return EngineChoice(TORCH)
    from core.device import choose_device

    if choose_device().device != "cpu":
        return EngineChoice(TORCH, "Models run on the GPU here, so the encoder runs on PyTorch.")
    if not installed(ONNXRUNTIME) or importlib.util.find_spec("onnx") is None:
        return EngineChoice(TORCH, f"{ENGINES[ONNXRUNTIME].title} is not installed ({ENGINES[ONNXRUNTIME].install}); "
                                   "running on PyTorch instead.")
    return EngineChoice(ONNXRUNTIME)


# --- loading through the shared model cache ----------------------------------------------------------
def _load_generator(spec: ModelSpec, resolution: Resolution, engine: str, on_progress: OnProgress):
    if engine == LLAMACPP:
        from core.engines.runner import RunnerLM

        return RunnerLM(LLAMACPP, "llama.cpp", "core.engines.llamacpp:load",
                        (resolution.location, bool(spec.options.get("chat")), threads()))
    if engine == CTRANSLATE2:
        from core.engines import ct2

        return ct2.load(spec, resolution, threads(), on_progress)
    raise InputError(f"{spec.title} does not run on {ENGINES[engine].title} in this app.")


def _load_encoder(key: str, on_progress: OnProgress):
    """The ONNX Runtime encoder for ``key``, or the PyTorch one with a note when the export cannot be used."""
    from core.engines import onnx

    base = registry.load(key)
    encoder = base.model
    location = base.resolution.location
    if base.resolution.source == "test":  # built in this process: only its weights identify it
        location = f"in memory:{weights_digest(encoder.model)}"
    folder = onnx.export_folder(get_settings().converted_dir, key, location)
    runner, note = onnx.load(encoder.tokenizer, encoder.model, encoder.max_length, folder, threads(), on_progress)
    return runner if runner is not None else FallBack(encoder, note)


@dataclass
class Converted(registry.Loaded):
    """A model loaded on an engine; ``conversion_s``: the one-time conversion of its weights this load paid for."""

    conversion_s: float = 0.0


@dataclass
class FallBack:
    """A model that runs on PyTorch because the engine asked for could not take it; ``note`` says why."""

    model: object
    note: str


def load(key: str, engine: str, on_progress: OnProgress = ignore) -> registry.Loaded:
    """Load ``key`` on ``engine`` through the shared model cache (one copy per model and engine).

    Args:
        key: catalog key of a text-generation model or a sentence encoder.
        engine: an engine name (``torch`` returns the registry's own model).
        on_progress: told a line of text during one-time work (a conversion, an export).

    Returns:
        Loaded, whose ``model`` is the engine's runner (or a :class:`FallBack`).

    Raises:
        ModelUnavailable, ModelTooLarge: as :func:`core.registry.load`.
        InputError: for an engine that does not run this kind of model.
    """
    spec = get_spec(key)
    if engine == TORCH:
        if spec.task != "generation":
            return registry.load(key)
        from core import textgen
        from core.engines import pytorch

        converted_s = 0.0
        resolution = registry.availability(spec).resolution
        if textgen.needs_conversion(spec, resolution):  # packaged GGUF: dequantised once per machine, timed as load
            start = time.perf_counter()
            textgen.convert_packaged_weights(spec, resolution, on_progress)
            converted_s = time.perf_counter() - start
        base = registry.load(key)
        load_s = (base.load_s or 0.0) + converted_s or None
        return Converted(pytorch.wrap(base.model), base.spec, base.resolution, load_s, base.size_mb, converted_s)
    if spec.task == "generation" and engine in GENERATION_ENGINES:
        resolution = registry.resolve(spec)
        why = _fits(engine, resolution)
        if why:
            raise InputError(f"{spec.title} cannot run on {ENGINES[engine].title}: {why}.")
        return registry.CACHE.get(f"{key}@{engine}", spec, resolution, lambda: _load_generator(spec, resolution, engine, on_progress))
    if spec.task == "embedding" and engine == ONNXRUNTIME:
        base = registry.load(key)
        return registry.CACHE.get(f"{key}@{engine}", spec, base.resolution, lambda: _load_encoder(key, on_progress))
    raise InputError(f"{spec.title} does not run on {ENGINES[engine].title} in this app.")


def load_encoder(key: str, wanted: str = AUTO, on_progress: OnProgress = ignore
                 ) -> tuple[registry.Loaded, EngineChoice]:
    """Load sentence encoder ``key`` on the engine chosen for it, falling back to PyTorch when that engine cannot run it.

    Args:
        key: catalog key of a sentence encoder (task ``embedding``).
        wanted: an encoder engine name, or ``auto``.
        on_progress: told a line of text during a one-time export.

    Returns:
        The Loaded encoder (an :class:`core.engines.onnx.OnnxEncoder` or the registry's PyTorch encoder; both offer
        ``tokenizer`` and ``max_length``) and the EngineChoice that ran, whose note says why when it fell back.
    """
    choice = choose_encoder_engine(wanted)
    if choice.engine == ONNXRUNTIME:
        loaded = load(key, ONNXRUNTIME, on_progress)
        if not isinstance(loaded.model, FallBack):
            return loaded, choice
        choice = EngineChoice(TORCH, loaded.model.note)
    return registry.load(key), choice


def load_sentiment(key: str, wanted: str = AUTO, int8: bool = False):
    """Sentiment model ``key`` loaded as the app runs it, ready for :func:`core.text.classify`.

    A head on a sentence encoder gets its encoder on ``wanted`` (auto: ONNX Runtime where its export agrees with
    PyTorch, else PyTorch with a note); a classifier such as DistilBERT runs on PyTorch. ``int8`` loads the
    dynamically quantised PyTorch variant instead (of the classifier, or of a head's encoder).

    Returns:
        A :class:`core.text.SentimentModel`.
    """
    from core import text

    classifier = registry.load(key)
    if not isinstance(classifier.model, text.EmbeddingClassifier):
        return text.SentimentModel(registry.load(key, int8=True) if int8 else classifier, int8=int8)
    encoder_key = classifier.model.head.encoder
    if int8:
        return text.SentimentModel(classifier, registry.load(encoder_key, int8=True), int8=True)
    encoder, choice = load_encoder(encoder_key, wanted)
    return text.SentimentModel(classifier, encoder, choice.engine, choice.note)


def load_int8_pair(key: str):
    """Sentiment model ``key`` as float32 and as int8, both on PyTorch, for :func:`core.text.classify_int8`."""
    return load_sentiment(key, TORCH), load_sentiment(key, int8=True)


# --- what a fresh server loads before its first visitor asks ------------------------------------------
PRELOAD_AUTO = "auto"


def preload(key: str) -> None:
    """Load ``key`` as its page runs it: a sentiment head with its encoder on the encoder engine. ``auto`` (the
    default of ``UBT_PRELOAD``) is the Text page's default sentiment model: the first in the catalog with a source
    here (the packaged MiniLM head offline)."""
    from core.catalog import CATALOG

    if key == PRELOAD_AUTO:
        key = next((s.key for s in CATALOG.values()
                    if s.task == "sentiment" and registry.availability(s).resolution is not None), "")
        if not key:
            return
    load_sentiment(key)
