"""Export a trained head (safetensors + JSON + README in a zip) and import one back, safely.

Nothing from a user file is ever unpickled: weights are read with safetensors, the config with
``json``, and both are checked (names, dtypes, shapes, labels, encoder) before use.
"""
from __future__ import annotations

import io
import json
import zipfile
from typing import Sequence

import numpy as np

from core.catalog import get_spec
from core.errors import InputError
from core.finetune import features as feats
from core.heads import CONFIG_FILE, WEIGHTS_FILE, LinearHead

FORMAT = "use-before-you-train/linear-head@1"
README_FILE = "README.md"
MAX_FILE_BYTES = 64 * 2**20
MAX_LABELS = 1000


def _hub_id(encoder: str) -> str:
    try:
        return get_spec(encoder).hub_id or encoder
    except KeyError:
        return encoder


def preprocessing(encoder: str) -> dict:
    """How the head's input features are made from raw items, for people and for the snippet."""
    if feats.encoder_kind(encoder) == "text":
        return {"input": "text", "pooling": "mean over non-padding tokens of the last hidden state",
                "normalise": "L2", "truncation": "the tokenizer's maximum length, 256 tokens at most"}
    return {"input": "image", "features": "CLIP encode_image with the model's own preprocessing", "normalise": "L2"}


def config(head: LinearHead) -> dict:
    """The JSON config written next to the weights (readable by ``LinearHead.load`` too)."""
    return {
        "format": FORMAT, "labels": list(head.labels), "encoder": head.encoder, "encoder_hub_id": _hub_id(head.encoder),
        "kind": feats.encoder_kind(head.encoder), "preprocessing": preprocessing(head.encoder), "record": head.record,
    }


SNIPPET_TEXTS = ["I love it.", "It broke after a day."]  # when no items of the user's are given
SNIPPET_TEXT_CHARS = 80


def snippet_texts(items: list, labels: list[str], most: int = 3) -> list[str]:
    """A few of the user's own texts for the snippet: the first of each class (at most ``most``), each cut to
    :data:`SNIPPET_TEXT_CHARS` characters; empty for images."""
    chosen: dict[str, str] = {}
    for item, label in zip(items, labels):
        if isinstance(item, str) and label not in chosen and len(chosen) < most:
            chosen[label] = " ".join(item.split())[:SNIPPET_TEXT_CHARS]
    return list(chosen.values())


def snippet(head: LinearHead, texts: list[str] | None = None) -> str:
    """A short Python program that loads the exported files and classifies new items.

    Args:
        head: the exported head.
        texts: example texts it classifies (e.g. :func:`snippet_texts` of the user's data); None: two stock sentences.
    """
    hub_id = _hub_id(head.encoder)
    load = (
        "import json\n\nimport numpy as np\nfrom safetensors.numpy import load_file\n\n"
        f'weights = load_file("{WEIGHTS_FILE}")\n'
        f'config = json.load(open("{CONFIG_FILE}", encoding="utf-8"))\n\n\n'
        "def predict(features):  # features: (n, dim), L2-normalised\n"
        '    logits = features @ weights["weight"].T + weights["bias"]\n'
        '    if logits.shape[1] == 1:  # binary logistic regression\n'
        "        logits = np.concatenate([-logits, logits], axis=1) / 2\n"
        '    return [config["labels"][i] for i in logits.argmax(axis=1)]\n\n\n'
    )
    if feats.encoder_kind(head.encoder) == "text":
        return load + (
            "import torch\nfrom transformers import AutoModel, AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{hub_id}")\n'
            f'encoder = AutoModel.from_pretrained("{hub_id}").eval()\n'
            f"texts = {json.dumps(texts or SNIPPET_TEXTS, ensure_ascii=False)}\n"
            "with torch.inference_mode():\n"
            '    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")\n'
            '    batch.pop("token_type_ids", None)\n'
            "    hidden = encoder(**batch).last_hidden_state\n"
            '    mask = batch["attention_mask"].unsqueeze(-1).float()\n'
            "    features = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()\n"
            "print(predict(features))\n"
        )
    return load + (
        "import open_clip\nimport torch\nfrom PIL import Image\n\n"
        f'model, _, preprocess = open_clip.create_model_and_transforms("hf-hub:{hub_id}")\n'
        'images = [Image.open("example.jpg").convert("RGB")]\n'
        "with torch.inference_mode():\n"
        "    pixels = torch.stack([preprocess(image) for image in images])\n"
        "    features = model.encode_image(pixels, normalize=True).numpy()\n"
        "print(predict(features))\n"
    )


def readme(head: LinearHead) -> str:
    """README.md for the zip: what the files are, how well the head did, and the snippet."""
    record = head.record
    scored = ""
    if "held_out_accuracy" in record:
        scored = (f"On the held-out split it scored {record['held_out_accuracy']:.1%} accuracy "
                  f"after training on {record.get('train_examples', '?')} examples.\n\n")
    return (
        f"# A linear head on `{_hub_id(head.encoder)}`\n\n"
        f"Exported by \"Use before you train\". Classes: {', '.join(head.labels)}.\n\n"
        f"- `{WEIGHTS_FILE}`: `weight` ({head.weight.shape[0]} × {head.weight.shape[1]}) and `bias`, float32.\n"
        f"- `{CONFIG_FILE}`: labels (row order of `weight`), encoder, preprocessing, training record.\n\n"
        f"{scored}## Use it\n\n```python\n{snippet(head)}```\n"
    )


def export_zip(head: LinearHead) -> bytes:
    """The head as a zip: head.safetensors, head.json and README.md."""
    from safetensors.numpy import save

    weights = save({"weight": np.asarray(head.weight, np.float32), "bias": np.asarray(head.bias, np.float32)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(WEIGHTS_FILE, weights)
        archive.writestr(CONFIG_FILE, json.dumps(config(head), indent=2, ensure_ascii=False) + "\n")
        archive.writestr(README_FILE, readme(head))
    return buffer.getvalue()


# --- import ---------------------------------------------------------------------------------------
def _from_zip(raw: bytes) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise InputError("The uploaded .zip is not a readable zip file.") from None
    found: dict[str, bytes] = {}
    with archive:
        for info in archive.infolist():
            name = info.filename.rsplit("/", 1)[-1]
            if name not in (WEIGHTS_FILE, CONFIG_FILE) or info.is_dir():
                continue
            if name in found:
                raise InputError(f"The zip holds more than one {name}; keep one head per zip.")
            if info.file_size > MAX_FILE_BYTES:
                raise InputError(f"{name} in the zip is {info.file_size / 2**20:.0f} MB; a head is far smaller.")
            found[name] = archive.read(info)
    return found


def _files(uploads: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for name, raw in uploads:
        base = name.rsplit("/", 1)[-1]
        if base.lower().endswith(".zip"):
            files.update(_from_zip(raw))
        elif base.lower().endswith(".safetensors"):
            files[WEIGHTS_FILE] = raw
        elif base.lower().endswith(".json"):
            files[CONFIG_FILE] = raw
        else:
            raise InputError(f"{base}: upload the exported .zip, or its {WEIGHTS_FILE} and {CONFIG_FILE}.")
    missing = [name for name in (WEIGHTS_FILE, CONFIG_FILE) if name not in files]
    if missing:
        raise InputError(f"Missing {' and '.join(missing)}: upload the exported .zip, or both files.")
    return files


def _config(raw: bytes) -> dict:
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{CONFIG_FILE} is not valid JSON ({err}).") from None
    if not isinstance(parsed, dict):
        raise InputError(f"{CONFIG_FILE} must hold a JSON object with labels and encoder.")
    labels, encoder = parsed.get("labels"), parsed.get("encoder")
    if not isinstance(labels, list) or not all(isinstance(label, str) and label.strip() for label in labels):
        raise InputError(f"{CONFIG_FILE}: labels must be a list of non-empty strings.")
    if not 2 <= len(labels) <= MAX_LABELS or len(set(labels)) != len(labels):
        raise InputError(f"{CONFIG_FILE}: labels must be 2 to {MAX_LABELS} distinct names (got {len(labels)}).")
    if not isinstance(encoder, str):
        raise InputError(f"{CONFIG_FILE}: encoder must be the name of an encoder, e.g. \"minilm-l6\".")
    feats.encoder_kind(encoder)  # raises InputError for an encoder this page does not know
    record = parsed.get("record", {})
    return {"labels": labels, "encoder": encoder, "record": record if isinstance(record, dict) else {}}


def _weights(raw: bytes) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    try:
        tensors = load(raw)
    except Exception as err:  # safetensors raises its own error types for any malformed header
        raise InputError(f"{WEIGHTS_FILE} is not a readable safetensors file ({err}).") from None
    if set(tensors) != {"weight", "bias"}:
        raise InputError(f"{WEIGHTS_FILE} must hold exactly 'weight' and 'bias' (found {', '.join(sorted(tensors)) or 'nothing'}).")
    for name, tensor in tensors.items():
        if not np.issubdtype(tensor.dtype, np.floating) or not np.isfinite(tensor).all():
            raise InputError(f"{WEIGHTS_FILE}: '{name}' must hold finite floating-point numbers.")
    return tensors


def load_head(uploads: Sequence[tuple[str, bytes]]) -> LinearHead:
    """Read an exported head from its zip, or from its two files, checking everything.

    Args:
        uploads: (file name, bytes) pairs: one .zip, or a .safetensors and a .json.

    Returns:
        The LinearHead.

    Raises:
        InputError: missing or unreadable files, non-JSON config, wrong tensor names, dtypes or
            shapes, labels that do not match the weights, an unknown encoder.
    """
    files = _files(uploads)
    settings = _config(files[CONFIG_FILE])
    tensors = _weights(files[WEIGHTS_FILE])
    weight, bias = tensors["weight"].astype(np.float32), tensors["bias"].astype(np.float32)
    labels = settings["labels"]
    if weight.ndim != 2 or bias.ndim != 1 or weight.shape[0] != bias.shape[0]:
        raise InputError(f"{WEIGHTS_FILE}: weight must be (classes, features) and bias (classes,); "
                         f"got {tuple(weight.shape)} and {tuple(bias.shape)}.")
    if weight.shape[0] not in (len(labels), 1) or (weight.shape[0] == 1 and len(labels) != 2):
        raise InputError(f"The weights have {weight.shape[0]} row(s) but {CONFIG_FILE} names {len(labels)} labels; "
                         "they do not belong together.")
    return LinearHead(weight, bias, labels, settings["encoder"], settings["record"])


def predict(head: LinearHead, items: Sequence) -> list[tuple[str, float]]:
    """Classify new texts or images with an imported head (features computed fresh, not cached).

    Returns:
        (label, probability) per item.

    Raises:
        InputError: when the encoder's features do not have the head's width.
    """
    if not items:
        raise InputError("There is nothing to classify: type some text or upload images first.")
    values, _ = feats.encode(head.encoder, items)
    if values.shape[1] != head.weight.shape[1]:
        raise InputError(f"The head expects {head.weight.shape[1]} features but {head.encoder} gives "
                         f"{values.shape[1]} here: it was trained on another version of the encoder.")
    probs = head.predict_proba(values)
    return [(head.labels[int(row.argmax())], float(row.max())) for row in probs]
