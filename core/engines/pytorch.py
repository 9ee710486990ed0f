"""The plain PyTorch (transformers) engine behind the engines' common runner surface: the compared reference."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from core.engines import TORCH
from core.engines.generate import log_softmax, sample_loop


class TorchLM:
    """A :class:`core.textgen.CausalLM` as an engine runner (see :class:`core.engines.generate.EngineLM`)."""

    engine = TORCH

    def __init__(self, lm) -> None:
        from core.device import choose_device

        self.lm, self.context = lm, lm.context
        eos = lm.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.label = f"{choose_device().label()} · PyTorch"

    def prompt_ids(self, prompt: str) -> list[int]:
        # verbose=False: a prompt longer than the tokenizer's maximum is cut by the loop, keeping its end, so
        # transformers' "sequence length is longer" warning would only be log noise.
        tokenizer = self.lm.tokenizer
        if self.lm.chat:
            return list(tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                      return_dict=True, tokenizer_kwargs={"verbose": False})["input_ids"])
        return list(tokenizer(prompt, verbose=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.lm.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _forward(self, ids, cache=None):
        import torch

        device = self.lm.model.device
        with torch.inference_mode():
            return self.lm.model(input_ids=torch.tensor([list(ids)], device=device), cache=cache, use_cache=True)

    def generate_ids(self, ids: Sequence[int], settings) -> Iterator[int]:
        state = {}  # the KV cache belongs to this call, so calls may overlap

        def run(tokens, cache=None) -> np.ndarray:
            state["out"] = self._forward(tokens, cache)
            return state["out"].logits[0, -1].float().cpu().numpy()

        return sample_loop(lambda: run(ids), lambda token: run([token], state["out"].cache), ids, settings)

    def forced_argmax(self, ids: Sequence[int], start: int) -> list[int]:
        logits = self._forward(ids).logits[0]
        return logits[start - 1 : len(ids) - 1].argmax(dim=-1).tolist()

    def chat_ids(self, messages: list[dict]) -> list[int] | None:
        tokenizer = self.lm.tokenizer
        if getattr(tokenizer, "chat_template", None) is None:
            return None
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                                  tokenizer_kwargs={"verbose": False})["input_ids"])

    def token_ids(self, texts: Sequence[str], add_special: bool = False) -> list[list[int]]:
        tokenizer = self.lm.tokenizer
        return [list(tokenizer(text, add_special_tokens=add_special, verbose=False)["input_ids"]) for text in texts]

    def score_continuations(self, ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[float]:
        """The prompt runs once; each continuation runs on a copy of its KV cache."""
        import copy

        out = self._forward(ids)
        first = log_softmax(out.logits[0, -1].float().cpu().numpy())
        scores = []
        for continuation in continuations:
            total = first[continuation[0]]
            if len(continuation) > 1:
                logits = self._forward(continuation[:-1], copy.deepcopy(out.cache)).logits[0].float().cpu().numpy()
                total += sum(log_softmax(row)[token] for row, token in zip(logits, continuation[1:]))
            scores.append(float(total))
        return scores


def wrap(lm) -> TorchLM:
    """The runner for a loaded :class:`core.textgen.CausalLM`."""
    return TorchLM(lm)
