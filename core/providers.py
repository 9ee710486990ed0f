"""Hosted inference ("you call it"): endpoints as data, and calls that return the same results and
Measurements as local runs, plus their cost in dollars.

OpenAI-compatible calls (chat from vLLM, TGI, llama.cpp's server, Ollama, OpenAI, and Hugging Face's own
router) are plain HTTP posts: ``huggingface_hub.InferenceClient`` would serve them, but it refuses every
request while ``HF_HUB_OFFLINE`` is set, even to a server on 127.0.0.1.

Keys: a key comes from this browser session (typed on the page), the app's secrets, or an environment
variable, in that order; it is held only in an :class:`Endpoint`, whose ``repr`` hides it, and every error
message is scrubbed of it before it leaves this module. Nothing here writes a key anywhere.
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from core.errors import InputError
from core.measure import Measurement

CHAT, TRANSCRIPTION, IMAGES = "openai-chat", "openai-transcription", "openai-images"
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
        kinds: the call kinds it serves (``openai-chat``, ``openai-transcription``, ``openai-images``); this
            version calls ``openai-chat`` only.
        base_url: its API root; None when the user supplies one (any OpenAI-compatible server).
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
    models: Mapping[str, str] = field(default_factory=dict)
    prices: Prices = Prices()
    key_required: bool = True


# Example prices read from the providers' public price pages on the date given; edit them on the page.
PROVIDERS: dict[str, Provider] = {p.key: p for p in (
    Provider(
        "openai-compatible", "OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama ...)", (CHAT, TRANSCRIPTION, IMAGES),
        None, ("OPENAI_API_KEY",), url_env="OPENAI_BASE_URL", models={"chat": "local-model"},
        prices=Prices(as_of="your own server: enter its cost"), key_required=False,
    ),
    Provider(
        "openai", "OpenAI", (CHAT, TRANSCRIPTION, IMAGES), "https://api.openai.com/v1", ("OPENAI_API_KEY",),
        models={"chat": "gpt-4o-mini", "transcription": "whisper-1", "images": "gpt-image-1"},
        prices=Prices(input_per_m=0.15, output_per_m=0.60, per_image=0.04, per_audio_minute=0.006, as_of="2026-11 example"),
    ),
    Provider(
        "hf", "Hugging Face Inference Providers", (CHAT,), "https://router.huggingface.co/v1", ("HF_TOKEN",),
        models={"chat": "HuggingFaceTB/SmolLM3-3B"},
        prices=Prices(input_per_m=0.10, output_per_m=0.30, as_of="2026-11 example"),
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
        base_url: API root; empty means the provider's own, else its ``url_env`` setting.
        session_key: a key typed in this browser session; it wins over secrets and environment.
        task: which example model to use when ``model`` is empty.
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
    url = base_url.strip() or provider.base_url or (_lookup((provider.url_env,), secrets, env)[0] if provider.url_env else None)
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


def _post(point: Endpoint, path: str, payload: dict, stream: bool = False):
    """POST JSON to an OpenAI-compatible endpoint; a non-2xx answer raises HostedError.

    Plain HTTP (``requests``, which Streamlit already needs), not ``InferenceClient``: that client refuses every
    request, even to 127.0.0.1, while ``HF_HUB_OFFLINE`` is set, which is exactly when a local server is used.
    """
    import requests

    headers = {"Authorization": f"Bearer {point.api_key}"} if point.api_key else {}
    response = requests.post(f"{point.base_url}{path}", json=payload, headers=headers, stream=stream,
                             timeout=(REACH_TIMEOUT_S, point.timeout_s))
    if response.status_code >= 400:
        raise _status_error(response.status_code, response.text[:2000], point, response.headers.get("retry-after"))
    return response


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
                       load_s=None, latency_s=seconds, peak_mb=0.0, extra=extra)


# --- chat ------------------------------------------------------------------------------------------
@dataclass
class HostedText:
    """A hosted chat answer: the text, token counts, notes (e.g. a cut stream) and the measurement."""

    text: str
    input_tokens: int
    output_tokens: int
    notes: list[str]
    measurement: Measurement


class ChatStream:
    """Stream a chat completion piece by piece; afterwards ``result`` holds the whole answer and its figures.

    Figures: latency (request to last piece), time to first token, output tokens/s after the first token,
    and cost from the endpoint's prices (token counts from the server's usage report, else counted pieces).
    A stream cut in the middle keeps what arrived, with a note; other failures raise HostedError.
    """

    def __init__(self, point: Endpoint, prompt: str, max_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = 0, system: str | None = None, sleep=time.sleep) -> None:
        self.point, self.prompt, self.sleep = point, prompt, sleep
        self.messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        self.options = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
        self.result: HostedText | None = None

    def _open(self):
        payload = {"model": self.point.model, "messages": self.messages, "stream": True,
                   "stream_options": {"include_usage": True}, **self.options}
        return _post(self.point, "/chat/completions", payload, stream=True)

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
            notes.append("The server reported no token usage: tokens are counted as streamed pieces, and the cost "
                         "leaves out the prompt.")
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
    if not labels:
        raise InputError("Give at least two label names to classify into.")
    if len(texts) > max_calls:
        raise InputError(f"{len(texts)} texts would be {len(texts)} paid calls; the limit is {max_calls}.")
    start = time.perf_counter()
    found, notes, prompt_tokens, output_tokens = [], [], 0, 0
    for done, text in enumerate(texts, 1):
        if stop is not None and stop():
            notes.append(f"Stopped after {done - 1} of {len(texts)} calls; the rest count as unanswered.")
            break
        answer = chat(point, classify_prompt(text, labels), max_tokens=8, temperature=0.0, system=CLASSIFY_SYSTEM)
        prompt_tokens += answer.input_tokens
        output_tokens += answer.output_tokens
        found.append(match_label(answer.text, labels))
        if on_item is not None:
            on_item(done, len(texts))
    seconds = time.perf_counter() - start
    answered = len(found)
    unmatched = sum(label is None for label in found)
    if unmatched:
        notes.append(f"{unmatched} of {answered} answers named no label; they count as wrong.")
    found += [None] * (len(texts) - answered)
    cost = point.prices.chat_usd(prompt_tokens, output_tokens)
    extra = {"items_per_s": answered / seconds if seconds > 0 else 0.0, "cost_usd": cost,
             "cost_per_1000_usd": cost / max(answered, 1) * 1000}
    return HostedLabels(found, prompt_tokens, output_tokens, notes, _measurement(point, seconds, **extra))


def with_prices(point: Endpoint, prices: Prices) -> Endpoint:
    """The same endpoint charged at other prices."""
    return replace(point, prices=prices)
