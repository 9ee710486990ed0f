"""The arms of "should I train this, or just use it?", run on one held-out split.

1. ``zero-shot`` (use as is, :mod:`.zero_shot`): texts by cosine similarity of sentence embeddings to a
   sentence made from each label; images by CLIP zero-shot with the class names.
1b. ``prompt`` (prompt with examples, :mod:`.prompt`): k labelled training examples per class in a generation
   model's prompt (in-context learning), each class name scored after it; locally or on a hosted endpoint.
2. ``transfer`` (transfer learning, :mod:`.transfer`): frozen encoder features (cached) + a
   logistic-regression head.
3. ``fine-tune`` (:mod:`.fine_tune`): the top k transformer layers unfrozen, with a linear head, trained
   with AdamW for a few epochs within a time budget (text; images when CLIP's image tower is available).
4. ``scratch`` (from scratch, :mod:`.from_scratch`): no pretrained weights; TF-IDF + logistic regression
   for texts, a small CNN on the raw pixels for images.
5. ``api`` (call an API, :mod:`.api`): a hosted chat model asked for one of the class names.

Every arm returns an :class:`ArmResult` (:mod:`.base`) with the same measured figures, and whether it got
each held-out item right (for :func:`core.finetune.verdict.verdict`'s paired test). Arms 3 and 4 share one
training loop (:func:`.loop.train`): it reports :class:`core.progress.Progress` through ``on_progress`` and
ends when ``should_stop`` says so, at the time budget, the epoch cap, or when the validation loss on
training items set aside stops falling (early stopping). The text TF-IDF arm fits in one go, so none of
that applies. Label efficiency (and the prompt arm's examples-per-class curve) is in :mod:`.efficiency`, the page's results table in :mod:`.table`.
"""
from core.finetune.arms.api import ApiSettings, run_api
from core.finetune.arms.availability import no_encoder_note
from core.finetune.arms.base import (APPROACHES, ARMS, DEFAULT_TEMPLATE, ENCODER_ARMS, HEAVY, NAMES, SCRATCH_MODELS,
                                     SETTINGS, SHORT_TITLES, STOPPED_BY, TASKS, TITLES, ArmResult, FineTuneSettings,
                                     ScratchSettings, TransferSettings, ZeroShotSettings, score, short_title)
from core.finetune.arms.efficiency import (DRAWS, LABEL_CURVE, LABEL_CURVE_TITLE, PROMPT_STEPS, examples_per_class_steps,
                                          label_curve_settings, label_efficiency, prompt_curve)
from core.finetune.arms.fine_tune import run_fine_tune
from core.finetune.arms.from_scratch import images_to_array, run_from_scratch, small_cnn
from core.finetune.arms.loop import (MIN_PATIENCE_STEPS, MIN_VALIDATION_ITEMS, adamw, training_device, training_threads,
                                     validation_slice)
from core.finetune.arms.prompt import PROMPT_MODEL, PromptSettings, pick_examples, run_prompt
from core.finetune.arms.run import RUNNERS, run_arm
from core.finetune.arms.table import results_table, stopped_by_text
from core.finetune.arms.transfer import fit_head, run_transfer
from core.finetune.arms.zero_shot import label_prompts, run_zero_shot, zero_shot_predict

__all__ = [
    "APPROACHES", "ARMS", "DEFAULT_TEMPLATE", "DRAWS", "ENCODER_ARMS", "HEAVY", "LABEL_CURVE", "LABEL_CURVE_TITLE",
    "MIN_PATIENCE_STEPS",
    "MIN_VALIDATION_ITEMS", "NAMES", "PROMPT_MODEL", "PROMPT_STEPS", "RUNNERS", "SCRATCH_MODELS", "SETTINGS",
    "SHORT_TITLES", "STOPPED_BY", "TASKS", "TITLES", "ApiSettings", "ArmResult", "FineTuneSettings", "PromptSettings",
    "ScratchSettings", "TransferSettings", "ZeroShotSettings", "adamw", "examples_per_class_steps", "fit_head",
    "images_to_array", "label_curve_settings", "label_efficiency", "label_prompts", "no_encoder_note", "pick_examples", "prompt_curve",
    "results_table", "run_api", "run_arm", "run_fine_tune", "run_from_scratch", "run_prompt", "run_transfer",
    "run_zero_shot", "score", "short_title", "small_cnn", "stopped_by_text", "training_device", "training_threads",
    "validation_slice", "zero_shot_predict",
]
