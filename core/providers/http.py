"""Plain HTTP for hosted calls: requests, the one retry after a 429, failures as :class:`HostedError` (every
message scrubbed of the key), bounded reads, server-sent events, and the measurement of a call.
"""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from core.measure import Measurement
from core.providers.endpoints import Endpoint

REACH_TIMEOUT_S = 2.0  # "endpoint unreachable" is said within this
MAX_RESPONSE_BYTES = 20 * 2**20  # a larger answer is refused as oversized
MAX_RETRY_WAIT_S = 20.0  # a 429 asking for a longer wait is not retried


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


# --- failures ----------------------------------------------------------------------------------------
def scrub(text: str, secret: str | None) -> str:
    text = " ".join(str(text).split())[:300]
    return text.replace(secret, "•••") if secret else text


def _status_error(status: int, body: str, point: Endpoint, retry_after: str | None = None) -> HostedError:
    where = point.provider.title
    detail = scrub(body, point.api_key)
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


def classify_error(exc: BaseException, point: Endpoint) -> HostedError:
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
        return HostedError("unreachable", f"Cannot reach {point.base_url or point.provider.title}: {scrub(exc, point.api_key)}.")
    if isinstance(exc, (ValueError, KeyError, TypeError, json.JSONDecodeError)):
        return HostedError("malformed", f"{point.provider.title} sent an answer this app cannot read: {scrub(exc, point.api_key)}.")
    return HostedError("failed", f"{point.provider.title} call failed: {type(exc).__name__}: {scrub(exc, point.api_key)}.")


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


def require_key(point: Endpoint) -> None:
    if point.api_key is None and point.provider.key_required:
        names = " or ".join(point.provider.key_env)
        raise HostedError("no-key", f"No key for {point.provider.title}: type one on this page (this session only), or set "
                          f"{names} in the app's secrets or environment.")


def with_one_retry(call, point: Endpoint, sleep=time.sleep):
    """Run ``call()``; on a 429 that says how long to wait (at most MAX_RETRY_WAIT_S), wait and try once more."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - classified below
        error = classify_error(exc, point)
        if error.kind != "rate-limited" or error.retry_after_s is None or error.retry_after_s > MAX_RETRY_WAIT_S:
            raise error from None
        sleep(error.retry_after_s)
    try:
        return call()
    except Exception as exc:  # noqa: BLE001
        raise classify_error(exc, point) from None


def send(point: Endpoint, method: str, url: str, headers: dict | None = None, **kwargs):
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


def post(point: Endpoint, path: str, payload: dict | None = None, **kwargs):
    """POST to the endpoint (JSON ``payload``, or ``files``/``data`` for multipart); a non-2xx answer raises HostedError."""
    return send(point, "POST", f"{point.base_url}{path}", json=payload, **kwargs)


def read_body(response, point: Endpoint, limit: int | None = None) -> bytes:
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


def read_json(response, point: Endpoint) -> dict:
    """A response's body as a JSON object (base64 images inside may make it a third larger than the image)."""
    answer = json.loads(read_body(response, point, MAX_RESPONSE_BYTES * 4 // 3 + 4096))
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    return answer


def stream_events(response) -> Iterator[dict]:
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


def hosted_measurement(point: Endpoint, seconds: float, **extra: float) -> Measurement:
    return Measurement(model=point.label, model_id=point.model, source="hosted", device=f"hosted: {point.provider.title}",
                       load_s=None, latency_s=seconds, peak_mb=0.0, extra=extra, engine="hosted",
                       number_format="unknown")
