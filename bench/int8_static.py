"""Static int8 (QDQ, per-channel) for the MiniLM encoder on ONNX Runtime, calibrated on the shipped texts (issue 26).

The dynamic int8 export failed its check (cosine 0.967). This tries static quantisation: weights int8 per output
channel, activations uint8 with ranges calibrated on assets/sentiment.csv, in ONNX's QDQ format. Only MatMuls with
a weight are quantised (attention's activation-by-activation products stay float32), and the feed-forward output
projections stay float32 too (their inputs, after GELU, have outliers that a uint8 range cannot hold). Fixed before
measuring: the app would offer it only where the sentiment head gives the same label on every shipped text, and only
on CPUs with VNNI or AMX int8 (elsewhere uint8 x int8 products are slow).

Usage: python -m bench.int8_static [--quick]
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.common import parse_args, report

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["UBT_BF16"] = "0"
CALIBRATION_BATCH, CALIBRATION_TOKENS = 16, 64


def quantize(folder: Path, tokenizer, texts: list[str]) -> Path:
    """The static QDQ int8 graph of ``folder``'s float32 export, calibrated on ``texts``."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([texts[s : s + CALIBRATION_BATCH]
                                 for s in range(0, len(texts) - CALIBRATION_BATCH + 1, CALIBRATION_BATCH)])

        def get_next(self):
            batch = next(self.batches, None)
            if batch is None:
                return None
            tokens = tokenizer(batch, padding="max_length", truncation=True, max_length=CALIBRATION_TOKENS,
                               return_tensors="np")
            return {"input_ids": tokens["input_ids"].astype(np.int64),
                    "attention_mask": tokens["attention_mask"].astype(np.int64)}

    prepared, out = folder / "prepared.onnx", folder / "int8_static.onnx"
    here = Path.cwd()
    os.chdir(folder)  # ONNX Runtime's pre-processing writes its temporary files (90 MB) into the working folder
    try:
        quant_pre_process(str(folder / "model.onnx"), str(prepared), skip_symbolic_shape=True)
    finally:
        os.chdir(here)
    graph = onnx.load(str(prepared)).graph
    weights = {tensor.name for tensor in graph.initializer}
    keep_float = [node.name for node in graph.node if node.op_type == "MatMul" and (
        not any(name in weights for name in node.input)
        or ("output/dense" in node.name and "attention" not in node.name))]
    quantize_static(str(prepared), str(out), Calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["MatMul", "Gemm"],
                    nodes_to_exclude=keep_float)
    return out


def main() -> None:
    from core import engines, registry
    from core.catalog import ASSETS
    from core.cpu import this_cpu
    from core.engines import onnx
    from core.heads import LinearHead
    from core.precision_probes import shipped_texts
    from core.text import encode_with

    args = parse_args(__doc__)
    threads, cpu = engines.threads(), this_cpu()
    vnni = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu.flags)
    encoder = registry.load("minilm-l6").model
    texts = list(shipped_texts())
    scratch = tempfile.TemporaryDirectory(prefix="ubt-int8-")  # removed when the bench ends
    folder = Path(scratch.name) / "export"
    onnx.load(encoder.tokenizer, encoder.model, encoder.max_length, folder, threads)  # the app's own export and check
    started = time.perf_counter()
    graph = quantize(folder, encoder.tokenizer, texts)
    quantize_s = time.perf_counter() - started
    fp32 = onnx.OnnxEncoder(encoder.tokenizer, onnx.session(folder / "model.onnx", threads), encoder.max_length)
    int8 = onnx.OnnxEncoder(encoder.tokenizer, onnx.session(graph, threads), encoder.max_length)
    a, b = encode_with(fp32, texts, 32), encode_with(int8, texts, 32)
    head = LinearHead.load(ASSETS / "sentiment_head")
    same = int((head.predict_proba(a).argmax(1) == head.predict_proba(b).argmax(1)).sum())
    cosine = onnx.lowest_cosine(a, b)
    from bench.common import paired

    rows = []
    for name, batch in (("1 text", texts[:1]), ("64 texts", texts[:64])):
        result = paired(lambda: int8.encode(batch), lambda: fp32.encode(batch), 5 if args.quick else 20, warmup=2)
        offered = same == len(texts) and vnni
        rows.append({
            "workload": f"MiniLM on ONNX Runtime, static int8 QDQ vs float32, {name}", "ours": result.ours_s,
            "reference": result.reference_s, "unit": "s", "ratio": result.ratio, "spread": result.spread,
            "labels_same": f"{same}/{len(texts)}", "cosine_min": round(cosine, 4),
            "target": "same label on every shipped text, on a VNNI/AMX CPU",
            "status": "offered" if offered else "not offered",
            "note": (f"quantised in {quantize_s:.0f} s; CPU: {cpu.describe()}"
                     + ("" if vnni else " (no VNNI: int8 products are slow here)")),
        })
    report("int8_static", rows)


if __name__ == "__main__":
    main()
