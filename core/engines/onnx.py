"""ONNX Runtime for BERT-style sentence encoders (MiniLM, DistilBERT's base): exported once, checked, cached.

The exported graph holds the whole sentence-embedding path: the encoder, mean pooling over real tokens and
L2 normalisation, so one ``session.run`` answers a batch. Export happens once per model and machine
(:func:`core.prepare.prepare_once`); right after it, the ONNX graph and the PyTorch model encode the same
probe texts, and the export is used only when every embedding agrees (cosine >= :data:`MIN_COSINE`). The
verdict is stored next to the graph, so a disagreeing export is not retried at every load: the caller runs
PyTorch and shows the note.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.prepare import fingerprint, prepare_once
from core.progress import OnProgress, Progress, ignore

log = logging.getLogger("ubt.engines")
MIN_COSINE = 0.9999
GRAPH, RECORD = "model.onnx", "export.json"
OPSET = 17
# Probe texts for the agreement check: one short, one long, and the two together (padding, batch of 2).
PROBES = (
    "Fine.",
    "The plot was thin and the pacing slow, yet the two lead actors gave warm, funny and honest performances.",
)


@dataclass
class OnnxEncoder:
    """A sentence encoder running on ONNX Runtime: texts -> mean-pooled, L2-normalised embeddings.

    Attributes:
        tokenizer: the model's tokenizer (the same as the PyTorch path's).
        session: the ONNX Runtime inference session (``run`` is thread-safe).
        max_length: longest token sequence read.
        record: the export record: cosine agreement with PyTorch, seconds, versions.
    """

    tokenizer: Any
    session: Any
    max_length: int
    record: dict = field(default_factory=dict)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts``, shape (len(texts), dim), float32."""
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        feed = {"input_ids": batch["input_ids"].astype(np.int64), "attention_mask": batch["attention_mask"].astype(np.int64)}
        return self.session.run(None, feed)[0]


def export_folder(root: Path, key: str, location: str) -> Path:
    """Where ``key``'s export from weights at ``location`` is cached: one folder per model, weights and torch version."""
    import torch

    digest = hashlib.sha256(f"{fingerprint(location)}|{torch.__version__}|opset{OPSET}".encode()).hexdigest()[:12]
    return root / "onnx" / f"{key}-{digest}"


def _pooled_module(model):
    """``model`` (a transformers encoder) wrapped to return mean-pooled, L2-normalised embeddings."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return Pooled().eval()


def torch_embeddings(tokenizer, model, texts: list[str], max_length: int) -> np.ndarray:
    """The PyTorch path's embeddings of ``texts`` (the reference of the agreement check)."""
    import torch

    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        return _pooled_module(model)(batch["input_ids"], batch["attention_mask"]).float().numpy()


def session(path: Path, threads: int):
    """An ONNX Runtime CPU session on ``path`` with ``threads`` intra-op threads.

    Worker threads spin between the operators of one run (a sleeping thread takes longer to wake than a small
    operator takes: one sentence 7.8 ms instead of 10 ms here) and stop spinning when the run ends, so they take
    no cores from PyTorch running beside them.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def lowest_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Lowest cosine similarity between matching rows of two embedding matrices."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float((a * b).sum(axis=1).min())


def _export(tokenizer, model, max_length: int, folder: Path, threads: int) -> None:
    """Export into ``folder`` and write the agreement record (called by prepare_once)."""
    import copy

    import torch

    if next(model.parameters()).dtype != torch.float32:  # a model this CPU runs in bf16: export its float32 form
        model = copy.deepcopy(model).float()
    start = time.perf_counter()
    sample = tokenizer(list(PROBES), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated; it needs no onnxscript
        torch.onnx.export(
            _pooled_module(model), (sample["input_ids"], sample["attention_mask"]), str(folder / GRAPH),
            dynamo=False, input_names=["input_ids", "attention_mask"], output_names=["embeddings"], opset_version=OPSET,
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "embeddings": {0: "batch"}},
        )
    seconds = time.perf_counter() - start
    probes = [[PROBES[0]], [PROBES[1]], list(PROBES)]
    runner = OnnxEncoder(tokenizer, session(folder / GRAPH, threads), max_length)
    cosine = min(lowest_cosine(runner.encode(p), torch_embeddings(tokenizer, model, p, max_length)) for p in probes)
    record = {"cosine": cosine, "agrees": cosine >= MIN_COSINE, "min_cosine": MIN_COSINE, "export_s": round(seconds, 2),
              "torch": torch.__version__, "opset": OPSET}
    (folder / RECORD).write_text(json.dumps(record, indent=1) + "\n")


def load(tokenizer, model, max_length: int, folder: Path, threads: int,
         on_progress: OnProgress = ignore) -> tuple[OnnxEncoder | None, str]:
    """Export ``model`` once into ``folder`` (or reuse the export there) and open it, if it agrees with PyTorch.

    Args:
        tokenizer, model: the PyTorch encoder (a transformers BERT-style model on the CPU) and its tokenizer.
        max_length: longest token sequence read.
        folder: the export's cache folder (see :func:`export_folder`).
        threads: ONNX Runtime intra-op threads.
        on_progress: told a line of text while exporting or waiting for another export.

    Returns:
        The ONNX encoder and "" when the export agrees; otherwise None and a note saying why PyTorch runs instead.
    """
    try:
        if not folder.exists():
            on_progress(Progress.note("Exporting the encoder to ONNX (once per machine) ..."))
        prepare_once(folder, lambda tmp: _export(tokenizer, model, max_length, tmp, threads), on_progress, what="ONNX export")
        record = json.loads((folder / RECORD).read_text())
        if not record["agrees"]:
            return None, (f"The ONNX export disagrees with PyTorch (lowest cosine {record['cosine']:.6f} < {MIN_COSINE}), "
                          "so PyTorch runs instead.")
        return OnnxEncoder(tokenizer, session(folder / GRAPH, threads), max_length, record), ""
    except Exception as err:  # no onnx package, an unsupported model, a full disk: PyTorch still works
        log.warning("ONNX export of %s failed", folder.name, exc_info=True)
        return None, f"ONNX Runtime could not be used ({type(err).__name__}: {str(err)[:200]}), so PyTorch runs instead."
