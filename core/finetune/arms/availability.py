"""Whether the arms built on a pretrained encoder can run here, said in one line for the page."""
from __future__ import annotations

from core import registry
from core.catalog import get_spec
from core.finetune import features as feats
from core.finetune.arms.base import ENCODER_ARMS, short_title


def no_encoder_note(kind: str) -> str | None:
    """Why the encoder arms are off: no pretrained encoder for ``kind`` can load here (None when one can)."""
    options = feats.TEXT_ENCODERS if kind == "text" else feats.IMAGE_ENCODERS
    if not all(feats.unavailable_reason(key) for key in options):
        return None
    why = registry.availability(get_spec(feats.DEFAULT_ENCODER[kind])).reason
    names = [short_title(arm) for arm in ENCODER_ARMS]
    return (f"{', '.join(names[:-1])} and {names[-1]} are turned off: they need a pretrained {kind} encoder, "
            f"and none is available here. {why} {short_title('scratch')} needs none.")
