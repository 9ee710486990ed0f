"""Hosted inference: our client against a plain InferenceClient call, and local against hosted, on one prompt.

The hosted endpoint is a real OpenAI-compatible server on 127.0.0.1: llama.cpp's server (llama-cpp-python[server],
installed by `make test`) serving the packaged SmolLM2 Q4_1 GGUF with 2 threads.
Rows:
- client overhead: ``core.providers.chat`` (streamed, measured, priced) against ``huggingface_hub.InferenceClient``
  streaming the same request from the same server, alternating; ratio = reference / ours, target >= 0.95;
- local vs hosted: the Text page's local generation (``core.engines.generate.EngineStream`` on PyTorch, same
  weights in fp32) and the hosted call on the same prompt, 32 new tokens, greedy: latency, time to first token, tokens/s (information rows);
- local vs hosted transcription, where faster-whisper-server is installed: the Speech page's local faster-whisper
  tiny.en and ``core.providers.transcribe`` against faster-whisper-server serving the same packaged weights, on the
  bundled 10 s sample: latency and audio seconds per second (information rows).

Usage: .venv/bin/python -m bench.hosted [--quick]
"""
from __future__ import annotations

import os

from bench.common import compared, paired, parse_args, report

PROMPT = "Explain in two sentences what a neural network is."
TOKENS = 32


def _rows(url: str, repeats: int) -> list[dict]:
    from huggingface_hub import InferenceClient

    from core import engines, providers, textgen
    from core.engines import generate

    point = providers.endpoint("openai-compatible", model="smollm2", base_url=url, env={})
    client = InferenceClient(base_url=url, api_key="none")
    messages = [{"role": "user", "content": PROMPT}]

    def ours() -> None:
        providers.chat(point, PROMPT, max_tokens=TOKENS, temperature=0.0)

    def plain() -> None:
        "".join(c.choices[0].delta.content or "" for c in client.chat_completion(
            messages, model="smollm2", stream=True, max_tokens=TOKENS, temperature=0.0, seed=0) if c.choices)

    rows = [compared("hosted chat, 32 tokens: core.providers vs plain InferenceClient stream", paired(ours, plain, repeats),
                     need=0.95, note="same server, same request; ours adds the reachability probe, measurement and cost")]
    hosted = providers.chat(point, PROMPT, max_tokens=TOKENS, temperature=0.0).measurement
    settings = textgen.GenerationSettings(max_new_tokens=TOKENS, temperature=0.0)
    list(generate.EngineStream(engines.load("smollm2-135m", engines.TORCH), PROMPT, settings))  # load and warm up outside the figures
    stream = generate.EngineStream(engines.load("smollm2-135m", engines.TORCH), PROMPT, settings)
    "".join(stream)
    local = stream.result.measurement
    for name, unit, here, there in (
        ("latency", "s", local.latency_s, hosted.latency_s),
        ("time to first token", "s", local.extra.get("time_to_first_token_s"), hosted.extra["time_to_first_token_s"]),
        ("tokens/s", "tokens/s", local.extra.get("tokens_per_s"), hosted.extra["tokens_per_s"]),
    ):
        rows.append({"workload": f"local (PyTorch fp32) vs hosted (llama.cpp server, Q4_1), {TOKENS} tokens: {name}",
                     "ours": here, "reference": there, "unit": unit, "target": "", "status": "",
                     "note": "ours = this server's local run; reference = the hosted call (information, no target)"})
    return rows


def _speech_rows(repeats: int) -> list[dict]:
    from core import audio, providers, registry, speech
    from tests.support.openai_servers import whisper_server

    data, _ = speech.sample_clip()
    clip = audio.decode(data, "sample.flac")
    options = speech.TranscribeOptions(beam_size=5)
    speech.transcribe(registry.load("faster-whisper-tiny-en"), clip, options)  # load and warm up outside the figures
    with whisper_server() as url:
        point = providers.endpoint("openai-compatible", model="whisper-1", base_url=url, task="transcription", env={})
        providers.transcribe(point, clip, options)  # the server loads its model on the first call
        local = [speech.transcribe(registry.load("faster-whisper-tiny-en"), clip, options).measurement for _ in range(repeats)]
        hosted = [providers.transcribe(point, clip, options).measurement for _ in range(repeats)]
    rows = []
    for name, unit, pick in (("latency", "s", lambda m: m.latency_s),
                             ("audio seconds per second", "audio s/s", lambda m: m.extra["audio_s"] / m.latency_s)):
        rows.append({"workload": f"transcription, 10 s sample, local faster-whisper vs faster-whisper-server: {name}",
                     "ours": sorted(map(pick, local))[len(local) // 2],
                     "reference": sorted(map(pick, hosted))[len(hosted) // 2], "unit": unit, "target": "", "status": "",
                     "note": "ours = this server's local run; reference = the hosted call, same weights (medians)"})
    return rows


def main() -> None:
    args = parse_args(__doc__)
    os.environ.pop("HF_HUB_OFFLINE", None)  # InferenceClient refuses even loopback calls in offline mode
    from tests.support.openai_servers import llama_server, packaged_gguf

    if packaged_gguf() is None:
        report("hosted", [{"workload": "hosted", "status": "", "note": "the packaged SmolLM2 GGUF is not installed"}])
        return
    from tests.support.openai_servers import packaged_whisper, whisper_server_installed

    with llama_server(threads=2) as url:
        rows = _rows(url, 3 if args.quick else 10)
    if whisper_server_installed() and packaged_whisper() is not None:
        rows += _speech_rows(3 if args.quick else 10)
    report("hosted", rows)


if __name__ == "__main__":
    main()
