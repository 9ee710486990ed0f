"""Hosted inference ("you call it"): endpoints as data, and calls that return the same results and
Measurements as local runs, plus their cost in dollars.

Calls, all plain HTTP posts (``huggingface_hub.InferenceClient`` would serve most of them, but it refuses every
request while ``HF_HUB_OFFLINE`` is set, even to a server on 127.0.0.1):

* chat, streamed, also with an image (vision chat: captions and zero-shot labels): any OpenAI-compatible server
  (vLLM, TGI, llama.cpp's server, Ollama), OpenAI, and Hugging Face's router;
* transcription: OpenAI's ``/audio/transcriptions`` (multipart), also served by ``faster-whisper-server``;
* text-to-image: OpenAI's ``/images/generations`` (base64 JSON), Hugging Face Inference Providers'
  ``hf-inference`` route (image bytes), and Replicate's predictions (``Prefer: wait``, then the output URL).

Keys: a key comes from this browser session (typed on the page), the app's secrets, or an environment
variable, in that order; it is held only in an :class:`Endpoint`, whose ``repr`` hides it, and every error
message is scrubbed of it before it leaves this module. Nothing here writes a key anywhere.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from core.errors import InputError
from core.measure import Measurement

CHAT, TRANSCRIPTION, IMAGES = "openai-chat", "openai-transcription", "openai-images"
HF_IMAGES, REPLICATE_IMAGES = "hf-text-to-image", "replicate-predictions"
IMAGE_KINDS = (IMAGES, HF_IMAGES, REPLICATE_IMAGES)  # the three ways to ask for an image
MAX_IMAGE_PIXELS = 4096 * 4096  # a generated image larger than this is refused as oversized
REACH_TIMEOUT_S = 2.0  # "endpoint unreachable" is said within this
MAX_RESPONSE_BYTES = 20 * 2**20  # a larger answer is refused as oversized
MAX_RETRY_WAIT_S = 20.0  # a 429 asking for a longer wait is not retried


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


class HostedError(RuntimeError):
    """A hosted call that failed, in one line a person can act on.

    Attributes:
        kind: ``no-key``, ``auth``, ``not-found``, ``rate-limited``, ``timeout``, ``server``, ``malformed``,
            ``oversized``, ``unreachable`` or ``failed``.
        retry_after_s: the wait a 429 asked for, when it said.
    """

    def __init__(self, kind: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind, self.retry_after_s = kind, retry_after_s


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


# --- failures ----------------------------------------------------------------------------------------
def _scrub(text: str, secret: str | None) -> str:
    text = " ".join(str(text).split())[:300]
    return text.replace(secret, "•••") if secret else text


def _status_error(status: int, body: str, point: Endpoint, retry_after: str | None = None) -> HostedError:
    where = point.provider.title
    detail = _scrub(body, point.api_key)
    if status in (401, 403) and not point.api_key:
        return HostedError("auth", f"{where} asks for a key (HTTP {status}), and no key was sent: press Enter in the key "
                                   "field, or set it in secrets or the environment.")
    if status in (401, 403):
        return HostedError("auth", f"{where} refused the key (HTTP {status}): check it, or its permissions for {point.model}.")
    if status == 404:
        return HostedError("not-found", f"{where} does not know the model {point.model!r} at this URL (HTTP 404).")
    if status == 429:
        wait = _seconds(retry_after)
        said = f" It asks to wait {wait:.0f} s." if wait is not None else ""
        return HostedError("rate-limited", f"{where} is rate-limiting these calls (HTTP 429).{said}", wait)
    if status == 413:
        return HostedError("oversized", f"{where} refused the request as too large (HTTP 413).")
    if status >= 500:
        return HostedError("server", f"{where} had a server error (HTTP {status}): {detail or 'no detail'}. Try again later.")
    return HostedError("failed", f"{where} refused the request (HTTP {status}): {detail or 'no detail'}.")


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _classify(exc: BaseException, point: Endpoint) -> HostedError:
    """One HostedError for anything a client library raised, with the key scrubbed."""
    if isinstance(exc, HostedError):
        return exc
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and status >= 400:
        try:
            body = response.text
        except Exception:  # a streamed body may already be closed
            body = ""
        return _status_error(status, body, point, response.headers.get("retry-after"))
    name = type(exc).__name__.lower()
    if isinstance(exc, TimeoutError) or "timeout" in name:
        return HostedError("timeout", f"{point.provider.title} did not answer within {point.timeout_s:.0f} s (the timeout setting).")
    if isinstance(exc, (ConnectionError, OSError)) or "connect" in name:
        return HostedError("unreachable", f"Cannot reach {point.base_url or point.provider.title}: {_scrub(exc, point.api_key)}.")
    if isinstance(exc, (ValueError, KeyError, TypeError, json.JSONDecodeError)):
        return HostedError("malformed", f"{point.provider.title} sent an answer this app cannot read: {_scrub(exc, point.api_key)}.")
    return HostedError("failed", f"{point.provider.title} call failed: {type(exc).__name__}: {_scrub(exc, point.api_key)}.")


def check_reachable(point: Endpoint, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Raise HostedError("unreachable") within ``timeout_s`` when nothing listens at the endpoint's host."""
    if not point.base_url:
        return
    parts = urlsplit(point.base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as err:
        raise HostedError("unreachable", f"Cannot reach {parts.scheme}://{parts.hostname}:{port} within {timeout_s:.0f} s "
                          f"({type(err).__name__}). Check the base URL and that the server is running.") from None


def _require_key(point: Endpoint) -> None:
    if point.api_key is None and point.provider.key_required:
        names = " or ".join(point.provider.key_env)
        raise HostedError("no-key", f"No key for {point.provider.title}: type one on this page (this session only), or set "
                          f"{names} in the app's secrets or environment.")


def _with_one_retry(call, point: Endpoint, sleep=time.sleep):
    """Run ``call()``; on a 429 that says how long to wait (at most MAX_RETRY_WAIT_S), wait and try once more."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - classified below
        error = _classify(exc, point)
        if error.kind != "rate-limited" or error.retry_after_s is None or error.retry_after_s > MAX_RETRY_WAIT_S:
            raise error from None
        sleep(error.retry_after_s)
    try:
        return call()
    except Exception as exc:  # noqa: BLE001
        raise _classify(exc, point) from None


def _send(point: Endpoint, method: str, url: str, headers: dict | None = None, **kwargs):
    """One HTTP request, streamed; the key goes only to the endpoint's own host. A non-2xx answer raises HostedError.

    Plain HTTP (``requests``, which Streamlit already needs), not ``InferenceClient``: that client refuses every
    request, even to 127.0.0.1, while ``HF_HUB_OFFLINE`` is set, which is exactly when a local server is used.
    """
    import requests

    headers = dict(headers or {})
    if point.api_key and _same_origin(url, point.base_url):
        headers["Authorization"] = f"Bearer {point.api_key}"
    response = requests.request(method, url, headers=headers, stream=True, timeout=(REACH_TIMEOUT_S, point.timeout_s),
                                **kwargs)
    if response.status_code >= 400:
        raise _status_error(response.status_code, response.text[:2000], point, response.headers.get("retry-after"))
    return response


def _same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _post(point: Endpoint, path: str, payload: dict | None = None, **kwargs):
    """POST to the endpoint (JSON ``payload``, or ``files``/``data`` for multipart); a non-2xx answer raises HostedError."""
    return _send(point, "POST", f"{point.base_url}{path}", json=payload, **kwargs)


def _read(response, point: Endpoint, limit: int | None = None) -> bytes:
    """A response's body, refused as oversized past ``limit`` bytes (default MAX_RESPONSE_BYTES) without reading on."""
    limit = MAX_RESPONSE_BYTES if limit is None else limit
    oversized = HostedError("oversized", f"{point.provider.title} sent more than {limit / 2**20:.0f} MB; this app "
                            "stopped reading it.")
    try:
        if int(response.headers.get("content-length") or 0) > limit:
            raise oversized
        body = bytearray()
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise oversized
        return bytes(body)
    finally:
        response.close()


def _json(response, point: Endpoint) -> dict:
    """A response's body as a JSON object (base64 images inside may make it a third larger than the image)."""
    answer = json.loads(_read(response, point, MAX_RESPONSE_BYTES * 4 // 3 + 4096))
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    return answer


def _events(response) -> Iterator[dict]:
    """The JSON events of a server-sent-event stream, up to ``[DONE]``."""
    for line in response.iter_lines(decode_unicode=True):
        if not line or not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if not isinstance(event, dict):
            raise ValueError("a stream event is not a JSON object")
        if "error" in event:
            raise HostedError("server", f"{event['error'].get('message', 'the server reported an error')[:200]}")
        yield event


def _measurement(point: Endpoint, seconds: float, **extra: float) -> Measurement:
    return Measurement(model=point.label, model_id=point.model, source="hosted", device=f"hosted: {point.provider.title}",
                       load_s=None, latency_s=seconds, peak_mb=0.0, extra=extra, engine="hosted")


# --- chat ------------------------------------------------------------------------------------------
@dataclass
class HostedText:
    """A hosted chat answer: the text, token counts, notes (e.g. a cut stream) and the measurement."""

    text: str
    input_tokens: int
    output_tokens: int
    notes: list[str]
    measurement: Measurement


CHARS_PER_TOKEN = 4  # a common rule of thumb for English text with BPE tokenizers
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators each chat message adds in OpenAI-style templates


def estimate_tokens(messages: list[dict]) -> int:
    """An estimate of the prompt tokens of chat ``messages`` when the server reports no usage: their text at
    :data:`CHARS_PER_TOKEN` characters a token, plus :data:`MESSAGE_OVERHEAD_TOKENS` a message (images not counted)."""
    chars = 0
    for message in messages:
        content = message["content"]
        parts = [content] if isinstance(content, str) else [p.get("text", "") for p in content if p.get("type") == "text"]
        chars += sum(map(len, parts))
    return max(1, round(chars / CHARS_PER_TOKEN)) + MESSAGE_OVERHEAD_TOKENS * len(messages)


class ChatStream:
    """Stream a chat completion piece by piece; afterwards ``result`` holds the whole answer and its figures.

    Figures: latency (request to last piece), time to first token, output tokens/s after the first token,
    and cost from the endpoint's prices (token counts from the server's usage report, else counted pieces).
    A stream cut in the middle keeps what arrived, with a note; other failures raise HostedError.
    ``image_url`` (see :func:`image_data_url`) sends an image with the prompt, for vision chat models.
    """

    def __init__(self, point: Endpoint, prompt: str, max_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = 0, system: str | None = None, image_url: str | None = None,
                 sleep=time.sleep) -> None:
        self.point, self.prompt, self.sleep = point, prompt, sleep
        content = prompt if image_url is None else [{"type": "text", "text": prompt},
                                                    {"type": "image_url", "image_url": {"url": image_url}}]
        self.messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        self.options = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
        self.result: HostedText | None = None

    def _open(self):
        payload = {"model": self.point.model, "messages": self.messages, "stream": True,
                   "stream_options": {"include_usage": True}, **self.options}
        return _post(self.point, "/chat/completions", payload)

    def __iter__(self) -> Iterator[str]:
        _require_key(self.point)
        check_reachable(self.point)
        start = time.perf_counter()
        stream = _with_one_retry(self._open, self.point, self.sleep)
        pieces, notes, usage, first = [], [], None, None
        try:
            for event in _events(stream):
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece:
                        first = first or time.perf_counter()
                        pieces.append(piece)
                        if sum(map(len, pieces)) > MAX_RESPONSE_BYTES:
                            raise HostedError("oversized", f"{self.point.provider.title} sent more than "
                                              f"{MAX_RESPONSE_BYTES // 2**20} MB of text; stopped reading.")
                        yield piece
        except HostedError as err:
            notes.append(str(err))
        except Exception as exc:  # noqa: BLE001 - a cut stream keeps what arrived
            error = _classify(exc, self.point)
            if not pieces:
                raise error from None
            notes.append(f"The stream was cut after {len(pieces)} pieces ({error}); the text below is what arrived.")
        finally:
            stream.close()
        end = time.perf_counter()
        self.result = self._finish(pieces, usage, start, first, end, notes)

    def _finish(self, pieces, usage, start, first, end, notes) -> HostedText:
        text = "".join(pieces)
        prompt_tokens = int((usage or {}).get("prompt_tokens") or 0)
        output_tokens = int((usage or {}).get("completion_tokens") or 0)
        if not output_tokens:
            output_tokens = len(pieces)
            prompt_tokens = prompt_tokens or estimate_tokens(self.messages)
            notes.append(f"The server reported no token usage: the answer is counted as {output_tokens} streamed pieces, "
                         f"and the prompt as an estimated {prompt_tokens} tokens (about {CHARS_PER_TOKEN} characters a "
                         "token, the model's tokenizer being unknown here); the cost uses both.")
        ttft = (first or end) - start
        decode = end - (first or end)
        extra = {"time_to_first_token_s": ttft,
                 "tokens_per_s": (output_tokens - 1) / decode if decode > 0 and output_tokens > 1 else 0.0,
                 "cost_usd": self.point.prices.chat_usd(prompt_tokens, output_tokens)}
        return HostedText(text, prompt_tokens, output_tokens, notes, _measurement(self.point, end - start, **extra))


def chat(point: Endpoint, prompt: str, **options) -> HostedText:
    """A whole chat answer (the stream, collected). Options as :class:`ChatStream`."""
    stream = ChatStream(point, prompt, **options)
    for _ in stream:
        pass
    return stream.result


# --- classification by prompting a chat model ------------------------------------------------------
CLASSIFY_SYSTEM = ("You are a text classifier. Answer with exactly one label from the list, copied exactly, "
                   "and nothing else.")


def classify_prompt(text: str, labels: Sequence[str]) -> str:
    """The user message that asks a chat model for one of ``labels``."""
    return f"Labels: {', '.join(labels)}\nText: {text}\nLabel:"


def match_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label a chat answer names: an exact match first, then the only label the answer contains."""
    clean = answer.strip().strip(".\"'`*").lower()
    for label in labels:
        if clean == label.lower():
            return label
    named = [label for label in labels if label.lower() in clean]
    return named[0] if len(named) == 1 else None


@dataclass
class HostedLabels:
    """Labels a chat model gave, one per text (None where its answer named no label), with cost and notes."""

    labels: list[str | None]
    input_tokens: int
    output_tokens: int
    notes: list[str]
    measurement: Measurement


def _ask_labels(point: Endpoint, items: Sequence, labels: Sequence[str], ask: Callable[[object], HostedText],
                max_calls: int, on_item: Callable[[int, int], None] | None,
                stop: Callable[[], bool] | None, rate: str = "items_per_s") -> HostedLabels:
    """One chat call per item (``ask(item)``), each answer matched to a label, the throughput named ``rate``; the
    loop :func:`classify` and :func:`label_images` share."""
    if len(labels) < 2:
        raise InputError("Give at least two label names to choose from.")
    if len(items) > max_calls:
        raise InputError(f"{len(items)} items would be {len(items)} paid calls; the limit is {max_calls}.")
    start = time.perf_counter()
    found, notes, prompt_tokens, output_tokens = [], [], 0, 0
    for done, item in enumerate(items, 1):
        if stop is not None and stop():
            notes.append(f"Stopped after {done - 1} of {len(items)} calls; the rest count as unanswered.")
            break
        answer = ask(item)
        prompt_tokens += answer.input_tokens
        output_tokens += answer.output_tokens
        found.append(match_label(answer.text, labels))
        if on_item is not None:
            on_item(done, len(items))
    seconds = time.perf_counter() - start
    answered = len(found)
    unmatched = sum(label is None for label in found)
    if unmatched:
        notes.append(f"{unmatched} of {answered} answers named no label; they count as wrong.")
    found += [None] * (len(items) - answered)
    cost = point.prices.chat_usd(prompt_tokens, output_tokens)
    extra = {rate: answered / seconds if seconds > 0 else 0.0, "cost_usd": cost,
             "cost_per_1000_usd": cost / max(answered, 1) * 1000}
    return HostedLabels(found, prompt_tokens, output_tokens, notes, _measurement(point, seconds, **extra))


def classify(point: Endpoint, texts: Sequence[str], labels: Sequence[str], max_calls: int = 500,
             on_item: Callable[[int, int], None] | None = None, stop: Callable[[], bool] | None = None) -> HostedLabels:
    """Zero-shot classification by prompting a chat model with the label names, one call per text.

    Args:
        point: a chat endpoint.
        texts: the texts.
        labels: the label names, as the user's data spells them.
        max_calls: refuse more texts than this (each one is a paid call).
        on_item: called with (done, total) after each text.
        stop: when it returns True, no further call is made; the rest count as unanswered, with a note.

    Returns:
        HostedLabels; its measurement has items/s, cost_usd and cost_per_1000_usd (per text answered).
    """
    return _ask_labels(point, texts, labels, lambda text: chat(
        point, classify_prompt(text, labels), max_tokens=8, temperature=0.0, system=CLASSIFY_SYSTEM),
        max_calls, on_item, stop)


# --- images in a vision chat: captions and zero-shot labels ----------------------------------------------
CAPTION_PROMPT = "Describe this image in one short sentence."
LABEL_IMAGE_SYSTEM = ("You are an image classifier. Answer with exactly one label from the list, copied exactly, "
                      "and nothing else.")
MAX_SENT_SIDE = 1024  # images are sent at most this large on their longest side


def image_data_url(image) -> str:
    """A PIL image as a ``data:image/jpeg;base64,...`` URL (at most MAX_SENT_SIDE px), as vision chat APIs take it."""
    image = image.convert("RGB")
    if max(image.size) > MAX_SENT_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SENT_SIDE, MAX_SENT_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class HostedCaptions:
    """Captions from a vision chat model, one per image, with notes and the measurement of all the calls."""

    captions: list[str]
    notes: list[str]
    measurement: Measurement


def caption(point: Endpoint, images: Sequence, prompt: str = CAPTION_PROMPT, max_tokens: int = 60,
            max_calls: int = 64, on_item: Callable[[int, int], None] | None = None) -> HostedCaptions:
    """Caption images with a vision chat model, one call per image.

    Args:
        point: a chat endpoint whose model reads images.
        images: PIL images (decoded by :mod:`core.images`).
        prompt: what to ask about each image.
        max_tokens: longest caption.
        max_calls: refuse more images than this (each one is a paid call).
        on_item: called with (done, total) after each image.

    Returns:
        HostedCaptions; its measurement has images_per_s, tokens_per_s (output tokens over all calls) and cost_usd.
    """
    if not images:
        raise InputError("There is no image to caption yet: upload one or pick a sample.")
    if len(images) > max_calls:
        raise InputError(f"{len(images)} images would be {len(images)} paid calls; the limit is {max_calls}.")
    start = time.perf_counter()
    answers = []
    for done, image in enumerate(images, 1):
        answers.append(chat(point, prompt, max_tokens=max_tokens, temperature=0.0, image_url=image_data_url(image)))
        if on_item is not None:
            on_item(done, len(images))
    seconds = time.perf_counter() - start
    output_tokens = sum(a.output_tokens for a in answers)
    extra = {"images_per_s": len(images) / seconds if seconds > 0 else 0.0,
             "tokens_per_s": output_tokens / seconds if seconds > 0 else 0.0,
             "cost_usd": point.prices.chat_usd(sum(a.input_tokens for a in answers), output_tokens)}
    notes = list(dict.fromkeys(note for a in answers for note in a.notes))
    return HostedCaptions([a.text.strip() for a in answers], notes, _measurement(point, seconds, **extra))


def label_images(point: Endpoint, images: Sequence, labels: Sequence[str], max_calls: int = 64,
                 on_item: Callable[[int, int], None] | None = None) -> HostedLabels:
    """Zero-shot image labels: a vision chat model is shown each image and asked for one of ``labels``.

    Args:
        point: a chat endpoint whose model reads images.
        images: PIL images.
        labels: the candidate labels.
        max_calls: refuse more images than this (each one is a paid call).
        on_item: called with (done, total) after each image.

    Returns:
        HostedLabels (None where the answer named no label); its measurement has images_per_s and cost_usd.
    """
    if not images:
        raise InputError("There is no image to label yet: upload one or pick a sample.")
    return _ask_labels(point, images, labels, lambda image: chat(
        point, f"Labels: {', '.join(labels)}\nWhich label fits this image best?\nLabel:", max_tokens=12,
        temperature=0.0, system=LABEL_IMAGE_SYSTEM, image_url=image_data_url(image)), max_calls, on_item, None,
        "images_per_s")


# --- text to image ---------------------------------------------------------------------------------
MODEL_NAME = re.compile(r"^\w[\w.-]*/\w[\w.-]*$")  # owner/name, as Hugging Face and Replicate spell models
REPLICATE_POLL_S = 1.0


@dataclass
class HostedImage:
    """A generated image from a hosted endpoint, as received and decoded.

    Attributes:
        image: upright RGB PIL image.
        data: the bytes the endpoint sent (PNG, JPEG or WebP), for download.
        mime: their media type.
        prompt: what was asked for.
        notes: what people should know (a size the model chose itself, extra images left out ...).
        measurement: latency, images/s, cost_usd, and the server's own compute time where it says.
    """

    image: object
    data: bytes
    mime: str
    prompt: str
    notes: list[str]
    measurement: Measurement


def image_kind(point: Endpoint) -> str:
    """Which of :data:`IMAGE_KINDS` the endpoint's provider speaks; InputError when none."""
    for kind in point.provider.kinds:
        if kind in IMAGE_KINDS:
            return kind
    raise InputError(f"{point.provider.title} does not generate images here; pick another provider.")


def _decode_image(data: bytes, point: Endpoint):
    """The endpoint's image bytes as an upright 8-bit RGB PIL image and their MIME type, decoded by
    :func:`core.images.decode` (the app's one safe decoder) at full size; HostedError when they are not an image
    or hold more than MAX_IMAGE_PIXELS."""
    from PIL import Image, UnidentifiedImageError

    from core import images

    where = point.provider.title
    not_image = f"{where} sent {len(data):,} bytes that are not a readable image"
    try:
        with Image.open(io.BytesIO(data)) as header:  # the header only: size and format, nothing decoded
            (width, height), mime = header.size, Image.MIME.get(header.format or "", "application/octet-stream")
    except Image.DecompressionBombError:
        raise HostedError("oversized", f"{where} sent an image of more than {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise HostedError("malformed", f"{not_image} ({type(err).__name__}; they start {data[:12]!r}).") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise HostedError("oversized", f"{where} sent a {width}x{height} image; the most this app decodes is "
                          f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels.")
    try:
        return images.decode(data, "the image", max_side=max(width, height)).image, mime
    except InputError as err:
        raise HostedError("malformed", f"{not_image}: {err}") from None


def _fetch(point: Endpoint, url: object) -> bytes:
    """GET an output file the endpoint pointed to (the key goes only to the endpoint's own host)."""
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"the answer names no http(s) image URL (got {str(url)[:60]!r})")
    return _read(_send(point, "GET", url), point)


def _openai_image(point: Endpoint, prompt: str, width: int, height: int, notes: list[str]) -> tuple[bytes, dict]:
    """OpenAI's images API (documented schema): ``data[0].b64_json`` (or ``data[0].url``)."""
    size = f"{width}x{height}"
    payload = {"model": point.model, "prompt": prompt, "n": 1, "size": size}
    if point.model.startswith(("gpt-image", "dall-e-3")):  # these make 1024 px and always answer base64
        payload["size"] = "1024x1024"
        notes.append(f"{point.model} makes images of 1024x1024 px at least; {size} was asked for.")
    else:
        payload["response_format"] = "b64_json"
    answer = _json(_post(point, "/images/generations", payload), point)
    first = (answer.get("data") or [None])[0]
    if not isinstance(first, dict) or not (first.get("b64_json") or first.get("url")):
        raise ValueError("no data[0].b64_json or data[0].url in the answer")
    if first.get("b64_json"):
        data = base64.b64decode(first["b64_json"], validate=True)
        if len(data) > MAX_RESPONSE_BYTES:
            raise HostedError("oversized", f"{point.provider.title} sent an image of more than "
                              f"{MAX_RESPONSE_BYTES / 2**20:.0f} MB; this app stopped reading it.")
        return data, {}
    return _fetch(point, first["url"]), {}


def _hf_image(point: Endpoint, prompt: str, width: int, height: int, seed: int, steps: int | None,
              negative_prompt: str) -> tuple[bytes, dict]:
    """Hugging Face Inference Providers' ``hf-inference`` text-to-image route: JSON in, image bytes out."""
    parameters = {"width": width, "height": height, "seed": seed, "num_inference_steps": steps,
                  "negative_prompt": negative_prompt or None}
    payload = {"inputs": prompt, "parameters": {k: v for k, v in parameters.items() if v is not None}}
    return _read(_post(point, f"/models/{point.model}", payload, headers={"Accept": "image/png"}), point), {}


def _replicate_image(point: Endpoint, prompt: str, seed: int, notes: list[str], sleep) -> tuple[bytes, dict]:
    """Replicate: create a prediction and wait for it (``Prefer: wait``, then polling ``urls.get`` until the
    endpoint's timeout), then GET the first output file (without the key: it lives on another host)."""
    deadline = time.monotonic() + point.timeout_s
    payload = {"input": {"prompt": prompt, "seed": seed, "num_outputs": 1, "output_format": "png"}}
    wait = max(1, min(60, int(point.timeout_s)))
    prediction = _json(_post(point, f"/models/{point.model}/predictions", payload, headers={"Prefer": f"wait={wait}"}), point)
    while prediction.get("status") in ("starting", "processing"):
        poll = (prediction.get("urls") or {}).get("get")
        if not poll or time.monotonic() + REPLICATE_POLL_S > deadline:
            raise HostedError("timeout", f"{point.provider.title} had not finished the image within "
                              f"{point.timeout_s:.0f} s (the timeout setting); its status was {prediction.get('status')!r}.")
        sleep(REPLICATE_POLL_S)
        prediction = _json(_send(point, "GET", poll), point)
    status = prediction.get("status")
    if status != "succeeded":
        detail = _scrub(prediction.get("error") or "no reason given", point.api_key)
        raise HostedError("failed", f"{point.provider.title}'s prediction ended {status!r}: {detail}.")
    output = prediction.get("output")
    outputs = output if isinstance(output, list) else [output]
    if len(outputs) > 1:
        notes.append(f"{point.provider.title} sent {len(outputs)} images; the first is shown and charged.")
    predict_s = (prediction.get("metrics") or {}).get("predict_time")
    figures = {"server_predict_s": float(predict_s)} if isinstance(predict_s, (int, float)) else {}
    return _fetch(point, outputs[0] if outputs else None), figures


def generate_image(point: Endpoint, prompt: str, width: int = 512, height: int = 512, seed: int = 0,
                   steps: int | None = None, negative_prompt: str = "", sleep=time.sleep) -> HostedImage:
    """Generate one image on a hosted endpoint: OpenAI-compatible images, Hugging Face, or Replicate.

    Args:
        point: an endpoint whose provider speaks one of :data:`IMAGE_KINDS`.
        prompt: what the image should show.
        width, height: pixels asked for (OpenAI's newer models and Replicate's choose their own; a note says so).
        seed: sent where the API takes one (Hugging Face, Replicate).
        steps: denoising steps, sent to Hugging Face only (None: the model's default).
        negative_prompt: what to avoid, sent to Hugging Face only.
        sleep: how to wait between Replicate polls and before the one retry after a 429.

    Returns:
        HostedImage; its measurement has images_per_s and cost_usd (the price per image), and server_predict_s
        where the endpoint reports its own compute time.

    Raises:
        InputError: empty prompt, a model name the provider cannot take. HostedError: every failure of the call.
    """
    prompt = (prompt or "").replace("\x00", "").strip()
    if not prompt:
        raise InputError("There is no prompt: describe the image you want first (e.g. “a red fox in the snow”).")
    kind = image_kind(point)
    if kind != IMAGES and not MODEL_NAME.match(point.model):
        raise InputError(f"{point.provider.title} names models owner/name, e.g. {point.provider.models.get('images')}.")
    _require_key(point)
    check_reachable(point)
    notes: list[str] = []
    if kind == REPLICATE_IMAGES:
        notes.append(f"{point.provider.title}'s model chooses its own size; it was not asked for {width}x{height}.")

    def call() -> tuple[bytes, dict]:
        if kind == HF_IMAGES:
            return _hf_image(point, prompt, width, height, seed, steps, negative_prompt)
        if kind == REPLICATE_IMAGES:
            return _replicate_image(point, prompt, seed, notes, sleep)
        return _openai_image(point, prompt, width, height, notes)

    start = time.perf_counter()
    data, figures = _with_one_retry(call, point, sleep)
    seconds = time.perf_counter() - start
    image, mime = _decode_image(data, point)
    extra = {"images_per_s": 1 / seconds if seconds > 0 else 0.0, "cost_usd": point.prices.per_image, **figures}
    return HostedImage(image, data, mime, prompt, notes, _measurement(point, seconds, **extra))


# --- speech to text ---------------------------------------------------------------------------------
def _language_code(name: str | None) -> str:
    """Whisper's code for a language the endpoint named (OpenAI's ``verbose_json`` says ``english``)."""
    if not name:
        return "unknown"
    from core.speech import language_names

    codes = {full.lower(): code for code, full in language_names().items()}
    return codes.get(name.lower(), name.lower())


def transcribe(point: Endpoint, clip, options=None, sleep=time.sleep):
    """Transcribe a clip on an OpenAI-compatible ``/audio/transcriptions`` endpoint (``/audio/translations`` when
    translating into English); the clip is sent as 16 kHz mono 16-bit WAV, as decoded for the local models.

    Args:
        point: an endpoint whose provider speaks :data:`TRANSCRIPTION`.
        clip: a :class:`core.audio.Audio`.
        options: a :class:`core.speech.TranscribeOptions` (language and translation are sent; beam size is the server's).
        sleep: how to wait before the one retry after a 429.

    Returns:
        A :class:`core.speech.Transcript` like a local one (segments with times when the endpoint gives them,
        else one segment), whose measurement has real_time_factor, audio_s_per_s and cost_usd (per audio minute).
    """
    from core import audio, speech

    options = options or speech.TranscribeOptions()
    if TRANSCRIPTION not in point.provider.kinds:
        raise InputError(f"{point.provider.title} does not transcribe here; pick another provider.")
    _require_key(point)
    check_reachable(point)
    wav = audio.encode(clip.samples, audio.SAMPLE_RATE, "wav", "pcm_s16le")
    verbose = "whisper" in point.model.lower()  # newer OpenAI models answer plain json only
    form = {"model": point.model, "response_format": "verbose_json" if verbose else "json", "temperature": "0"}
    if options.language and not options.translate:
        form["language"] = options.language
    path = "/audio/translations" if options.translate else "/audio/transcriptions"

    def call() -> dict:
        return _json(_post(point, path, files={"file": ("audio.wav", wav, "audio/wav")}, data=form), point)

    start = time.perf_counter()
    answer = _with_one_retry(call, point, sleep)
    seconds = time.perf_counter() - start
    text = answer.get("text")
    if not isinstance(text, str):
        raise HostedError("malformed", f"{point.provider.title} sent a transcription without text.")
    duration = clip.duration_s
    try:
        segments = [speech.Segment(float(s["start"]), float(s["end"]), str(s["text"])) for s in answer.get("segments") or []]
    except (KeyError, TypeError, ValueError):
        raise HostedError("malformed", f"{point.provider.title} sent segments this app cannot read.") from None
    notes = list(clip.notes)
    if not segments and text.strip():
        segments = [speech.Segment(0.0, duration, text)]
        notes.append(f"{point.provider.title} sent the text without segment times: it counts as one segment.")
    if not text.strip():
        notes.append("The endpoint recognised no speech in this audio, so the transcript is empty.")
    extra = {"real_time_factor": seconds / duration, "audio_s": duration,
             "audio_s_per_s": duration / seconds if seconds > 0 else 0.0,
             "cost_usd": point.prices.per_audio_minute * duration / 60}
    language = options.language if options.language and not options.translate else _language_code(answer.get("language"))
    return speech.Transcript(point.label, "hosted", segments, language, None, duration, notes,
                             _measurement(point, seconds, **extra), speech.windows(clip, segments))


def with_prices(point: Endpoint, prices: Prices) -> Endpoint:
    """The same endpoint charged at other prices."""
    return replace(point, prices=prices)
