"""Hosted endpoints as data: the providers, their example prices, and one configured :class:`Endpoint`.

Keys: a key comes from this browser session (typed on the page), the app's secrets, or an environment
variable, in that order; it is held only in an :class:`Endpoint`, whose ``repr`` hides it.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from core.errors import InputError

CHAT, TRANSCRIPTION, IMAGES = "openai-chat", "openai-transcription", "openai-images"
HF_IMAGES, REPLICATE_IMAGES = "hf-text-to-image", "replicate-predictions"
IMAGE_KINDS = (IMAGES, HF_IMAGES, REPLICATE_IMAGES)  # the three ways to ask for an image


@dataclass(frozen=True)
class Prices:
    """What a provider charges, in US dollars. Example figures, editable on the pages; ``as_of`` dates them.

    Attributes:
        input_per_m: per 1M input (prompt) tokens.
        output_per_m: per 1M output (generated) tokens.
        per_image: per generated image.
        per_audio_minute: per minute of transcribed audio.
        as_of: when the example was read off the provider's price page ("" for user-entered prices).
    """

    input_per_m: float = 0.0
    output_per_m: float = 0.0
    per_image: float = 0.0
    per_audio_minute: float = 0.0
    as_of: str = ""

    def chat_usd(self, input_tokens: int, output_tokens: int) -> float:
        """Cost of one chat call."""
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1e6


@dataclass(frozen=True)
class Provider:
    """A kind of hosted endpoint, as data.

    Attributes:
        key: short name, used in settings and the run store.
        title: what the page shows.
        kinds: the call kinds it serves (:data:`CHAT`, :data:`TRANSCRIPTION`, and one of :data:`IMAGE_KINDS`).
        base_url: its API root; None when the user supplies one (any OpenAI-compatible server).
        task_urls: API roots that differ by task (Hugging Face's text-to-image route is not under ``/v1``).
        key_env: environment variables (and secrets names) that may hold its key, first found wins.
        url_env: an environment variable (and secrets name) that may hold its base URL.
        models: an example model per task.
        prices: example prices (see :class:`Prices`).
        key_required: whether a call without a key is refused before it is sent.
    """

    key: str
    title: str
    kinds: tuple[str, ...]
    base_url: str | None
    key_env: tuple[str, ...]
    url_env: str | None = None
    task_urls: Mapping[str, str] = field(default_factory=dict)
    models: Mapping[str, str] = field(default_factory=dict)
    prices: Prices = Prices()
    key_required: bool = True


# Example prices read from the providers' public price pages on the date given; edit them on the page.
PROVIDERS: dict[str, Provider] = {p.key: p for p in (
    Provider(
        "openai-compatible", "OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama ...)", (CHAT, TRANSCRIPTION, IMAGES),
        None, ("OPENAI_API_KEY",), url_env="OPENAI_BASE_URL",
        models={"chat": "local-model", "vision": "local-model", "transcription": "whisper-1", "images": "local-model"},
        prices=Prices(as_of="your own server: enter its cost"), key_required=False,
    ),
    Provider(
        "openai", "OpenAI", (CHAT, TRANSCRIPTION, IMAGES), "https://api.openai.com/v1", ("OPENAI_API_KEY",),
        models={"chat": "gpt-4o-mini", "vision": "gpt-4o-mini", "transcription": "whisper-1", "images": "gpt-image-1"},
        prices=Prices(input_per_m=0.15, output_per_m=0.60, per_image=0.04, per_audio_minute=0.006, as_of="2026-11 example"),
    ),
    Provider(
        "hf", "Hugging Face Inference Providers", (CHAT, HF_IMAGES), "https://router.huggingface.co/v1", ("HF_TOKEN",),
        task_urls={"images": "https://router.huggingface.co/hf-inference"},
        models={"chat": "HuggingFaceTB/SmolLM3-3B", "vision": "Qwen/Qwen2.5-VL-7B-Instruct",
                "images": "black-forest-labs/FLUX.1-schnell"},
        prices=Prices(input_per_m=0.10, output_per_m=0.30, per_image=0.003, as_of="2026-11 example"),
    ),
    Provider(
        "replicate", "Replicate", (REPLICATE_IMAGES,), "https://api.replicate.com/v1", ("REPLICATE_API_TOKEN",),
        models={"images": "black-forest-labs/flux-schnell"},
        prices=Prices(per_image=0.003, as_of="2026-11 example"),
    ),
)}


@dataclass(frozen=True)
class Endpoint:
    """One configured endpoint: provider, base URL, model and key. ``repr`` never shows the key.

    Attributes:
        provider: the provider.
        base_url: API root, without a trailing slash.
        model: model name as the endpoint knows it.
        api_key: the key, or None.
        key_source: where the key came from (``this session``, ``secrets``, ``environment``, ``none``).
        timeout_s: longest wait for one call.
        prices: prices to charge (the provider's examples unless edited).
    """

    provider: Provider
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    key_source: str = "none"
    timeout_s: float = 60.0
    prices: Prices = Prices()

    @property
    def label(self) -> str:
        """``provider/model``, for measurements and the run store (never the key or the URL's query)."""
        return f"{self.provider.key}/{self.model}"


def _lookup(names: Sequence[str], secrets: Mapping[str, object], env: Mapping[str, str]) -> tuple[str | None, str]:
    for name in names:
        value = secrets.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip(), "secrets"
    for name in names:
        if env.get(name, "").strip():
            return env[name].strip(), "environment"
    return None, "none"


def configured(secrets: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Which providers have a key configured, and where from; never the keys.

    Args:
        secrets: the app's secrets (Streamlit's ``st.secrets``), or None.
        env: environment variables (default ``os.environ``).

    Returns:
        ``{provider key: "secrets" | "environment"}`` for each provider whose key is set.
    """
    env = os.environ if env is None else env
    found = {}
    for provider in PROVIDERS.values():
        _, source = _lookup(provider.key_env, secrets or {}, env)
        if source != "none":
            found[provider.key] = source
    return found


def endpoint(provider_key: str, model: str = "", base_url: str = "", session_key: str = "", task: str = "chat",
             secrets: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None,
             timeout_s: float = 60.0, prices: Prices | None = None) -> Endpoint:
    """Build an endpoint from the page's fields, the secrets and the environment.

    Args:
        provider_key: a key of :data:`PROVIDERS`.
        model: model name; empty means the provider's example for ``task``.
        base_url: API root; empty means the provider's own for ``task``, else its ``url_env`` setting.
        session_key: a key typed in this browser session; it wins over secrets and environment.
        task: ``chat``, ``vision``, ``transcription`` or ``images``: which example model (when ``model`` is
            empty) and which of the provider's API roots to use.
        secrets, env: configuration sources (default: none, ``os.environ``).
        timeout_s: longest wait for one call.
        prices: prices to charge; default the provider's examples.

    Returns:
        The endpoint. Raises InputError when a required field is missing or the URL is not http(s).
    """
    if provider_key not in PROVIDERS:
        raise InputError(f"Unknown provider {provider_key!r}; choose one of: {', '.join(PROVIDERS)}.")
    provider = PROVIDERS[provider_key]
    secrets, env = secrets or {}, os.environ if env is None else env
    if session_key.strip():
        key, source = session_key.strip(), "this session"
    else:
        key, source = _lookup(provider.key_env, secrets, env)
    from_settings = _lookup((provider.url_env,), secrets, env)[0] if provider.url_env else None
    url = base_url.strip() or provider.task_urls.get(task) or provider.base_url or from_settings
    if not url:
        raise InputError(f"{provider.title} needs a base URL, such as http://127.0.0.1:8080/v1.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"The base URL must start with http:// or https:// and name a host (got {url[:80]!r}).")
    if parts.username or parts.password or parts.query:
        raise InputError("Put the key in the key field, not in the URL; the base URL takes no user, password or query.")
    url = url.rstrip("/")
    model = model.strip() or provider.models.get(task, "")
    if not model:
        raise InputError(f"Enter a model name for {provider.title}.")
    return Endpoint(provider, url, model, key, source, timeout_s, prices or provider.prices)



def with_prices(point: Endpoint, prices: Prices) -> Endpoint:
    """The same endpoint charged at other prices."""
    return replace(point, prices=prices)
