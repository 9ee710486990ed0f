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
message is scrubbed of it before it leaves this package. Nothing here writes a key anywhere.

Modules: :mod:`~core.providers.endpoints` (providers, prices, endpoints), :mod:`~core.providers.http` (requests,
retries, errors, measurements), ``chat`` (chat and text classification), :mod:`~core.providers.fewshot` (few-shot classification, scored by
log-probabilities where the endpoint returns them), :mod:`~core.providers.vision` (captions,
image labels), :mod:`~core.providers.images` (text-to-image) and :mod:`~core.providers.speech` (transcription).
Their public names are re-exported here, so ``providers.X`` is the way to call them. ``providers.chat`` is the
chat function; the module of that name is ``sys.modules["core.providers.chat"]``. The limits
(``MAX_RESPONSE_BYTES``, ``MAX_IMAGE_PIXELS`` ...) are read where they are defined: set them there
(``providers.http.MAX_RESPONSE_BYTES``), not on this package.
"""
from __future__ import annotations

from core.providers.endpoints import (CHAT, HF_IMAGES, IMAGE_KINDS, IMAGES, PROVIDERS, REPLICATE_IMAGES,
                                      TRANSCRIPTION, Endpoint, Prices, Provider, configured, endpoint, with_prices)
from core.providers.http import MAX_RESPONSE_BYTES, MAX_RETRY_WAIT_S, REACH_TIMEOUT_S, HostedError, check_reachable
from core.providers.chat import (CHARS_PER_TOKEN, CLASSIFY_SYSTEM, MESSAGE_OVERHEAD_TOKENS, ChatStream, HostedLabels,
                                 chat, classify, classify_prompt, classify_texts, estimate_tokens,
                                 match_label)
from core.providers.fewshot import TOP_LOGPROBS, FewShotAnswer, classify_few_shot, few_shot_messages, first_token_label
from core.providers.vision import (CAPTION_PROMPT, LABEL_IMAGE_SYSTEM, MAX_SENT_SIDE, caption, image_data_url,
                                   label_images)
from core.providers.images import (MAX_IMAGE_PIXELS, MODEL_NAME, REPLICATE_POLL_S, generate_image,
                                   image_kind)
from core.providers.speech import transcribe

__all__ = [
    "CHAT", "HF_IMAGES", "IMAGE_KINDS", "IMAGES", "PROVIDERS", "REPLICATE_IMAGES", "TRANSCRIPTION", "Endpoint",
    "Prices", "Provider", "configured", "endpoint", "with_prices",
    "MAX_RESPONSE_BYTES", "MAX_RETRY_WAIT_S", "REACH_TIMEOUT_S", "HostedError", "check_reachable",
    "CHARS_PER_TOKEN", "CLASSIFY_SYSTEM", "MESSAGE_OVERHEAD_TOKENS", "ChatStream", "HostedLabels",
    "chat", "classify", "classify_prompt", "classify_texts", "estimate_tokens", "match_label",
    "TOP_LOGPROBS", "FewShotAnswer", "classify_few_shot", "few_shot_messages", "first_token_label",
    "CAPTION_PROMPT", "LABEL_IMAGE_SYSTEM", "MAX_SENT_SIDE", "caption", "image_data_url",
    "label_images",
    "MAX_IMAGE_PIXELS", "MODEL_NAME", "REPLICATE_POLL_S", "generate_image", "image_kind",
    "transcribe",
]
