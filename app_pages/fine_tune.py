"""Fine-tune page: should I train this, or just use it? Six arms (use as is, prompt with examples, three ways to
train, and calling an API) measured on the user's own labelled data."""
from itertools import count

import pandas as pd
import streamlit as st

from core import engines, providers, registry, runs
from core.catalog import get_spec
from core.charts import finetune as charts
from core.finetune import arms, export, training
from core.finetune import data as labelled_data
from core.finetune import features as feats
from core.finetune.verdict import verdict
from ui.common import friendly_errors, session_id
from ui.hosted import endpoint_form
from ui.queue import model_turn

EXAMPLES = {
    "Example: product-review sentiment (text)": ("example:sentiment", labelled_data.example_sentiment),
    "Example: handwritten digits (images)": ("example:digits", lambda: labelled_data.example_digits(per_class=50)),
}
UPLOAD = "Upload my data"
STATUS = {"waiting": ":material/hourglass_empty: waiting", "queued": ":material/schedule: queued",
          "running": ":material/play_circle: running", "done": ":material/check_circle: done",
          "stopped": ":material/stop_circle: stopped", "error": ":material/error: could not run"}
MEMO_SIZE = 3
SECTIONS = count(1)  # the page script runs afresh on every rerun, so numbering restarts at 1


def _section(title: str) -> None:
    """A numbered subheader; numbers follow the sections shown, so none is skipped."""
    st.subheader(f"{next(SECTIONS)} · {title}")


def _memo(key: str, make, store: str = "ft_memo"):
    """The value made for ``key`` in this session (the last few of each ``store`` kept), so reruns do not
    re-parse uploads or re-split the data."""
    memo = st.session_state.setdefault(store, {})
    if key not in memo:
        memo[key] = make()
        while len(memo) > MEMO_SIZE:
            memo.pop(next(iter(memo)))
    return memo[key]


def _encoder_picker(label: str, kind: str, key: str) -> str:
    options = feats.TEXT_ENCODERS if kind == "text" else feats.IMAGE_ENCODERS
    return st.selectbox(label, options, key=f"{key}_{kind}", format_func=lambda k: get_spec(k).title)


def _availability_warning(encoder: str) -> None:
    reason = feats.unavailable_reason(encoder)
    if reason:
        st.warning(reason, icon=":material/cloud_off:")


def _load_data():
    """The labelled data picked or uploaded, or None (messages shown)."""
    choice = st.radio("Data", [*EXAMPLES, UPLOAD], key="ft_source", horizontal=True)
    if choice in EXAMPLES:
        key, make = EXAMPLES[choice]
        return _memo(key, make)
    upload = st.file_uploader(
        "A CSV/TSV table (a text column and a label column), or a .zip with one folder of images per class",
        type=["csv", "tsv", "txt", "zip"], key="ft_upload",
    )
    if upload is None:
        st.info("Upload a file, or pick an example above.", icon=":material/upload_file:")
        return None
    raw = upload.getvalue()
    if upload.name.lower().endswith(".zip"):
        return _memo(f"zip:{upload.file_id}", lambda: labelled_data.read_image_zip(raw, upload.name))
    table = _memo(f"table:{upload.file_id}", lambda: labelled_data.read_table(raw, upload.name))
    text_guess, label_guess = labelled_data.guess_columns(table)
    columns = list(table.columns)
    left, right = st.columns(2)
    text_col = left.selectbox("Text column", columns, index=columns.index(text_guess), key=f"ft_text_col_{upload.file_id}")
    label_col = right.selectbox("Label column", columns, index=columns.index(label_guess), key=f"ft_label_col_{upload.file_id}")
    # The fingerprint names the columns too: features cached for one text column never serve another.
    fingerprint = runs.fingerprint(raw + f"\x00{text_col}\x00{label_col}".encode())
    return _memo(f"data:{upload.file_id}:{text_col}:{label_col}", lambda: labelled_data.table_to_data(
        table, text_col, label_col, f"upload: {upload.name}", fingerprint))


def _show_notes(notes: list[str]) -> None:
    for note in notes:
        st.info(note, icon=":material/info:")


def _forget_results_of_other_data(data) -> None:
    """Drop this session's training job when the data on the page is not the data it trained on."""
    job = st.session_state.get("ft_job")
    current = data.fingerprint if data is not None else None
    if job is None or st.session_state.get("ft_job_fingerprint") == current:
        return
    job.stop()  # a job still running on the earlier data stops at its next check
    for key in ("ft_job", "ft_job_source", "ft_job_fingerprint", "ft_drawn"):
        st.session_state.pop(key, None)


@st.cache_data(max_entries=32, show_spinner=False)
def _class_balance_spec(counts: tuple[tuple[str, int], ...]) -> dict:
    """The class-balance chart as a Vega-Lite spec, built and validated once per class count (for all sessions)."""
    return charts.class_balance_chart(dict(counts)).to_dict()


def _preview(data) -> None:
    left, right = st.columns([3, 2])
    with left:
        if data.kind == "text":
            st.dataframe(pd.DataFrame({"label": data.labels[:50], "text": data.items[:50]}), hide_index=True, height=240,
                         width="stretch")  # the short label first, so a long text never hides it
        else:
            shown = labelled_data.preview_indices(data.labels)  # some of each class
            st.image([data.items[i] for i in shown], caption=[data.labels[i] for i in shown], width=64)
        st.caption(f"{len(data.labels):,} {data.kind}s · {len(data.classes())} classes · {data.source}")
    with right:
        st.vega_lite_chart(_class_balance_spec(tuple(data.class_counts().items())), width="stretch")
    _show_notes(data.notes)


ARM_HELP = {
    "zero-shot": "No training: each item is compared with a sentence made from each class name (CLIP for images).",
    "prompt": "No training: k labelled examples per class from the training split go in a small language model's "
              "prompt (in-context learning), and each class name is scored after it. Runs here, or on a hosted API.",
    "transfer": "The pretrained encoder stays frozen; a logistic-regression head learns from its features.",
    "fine-tune": "The encoder's top layers are unfrozen and trained with a linear head (AdamW), within a time budget.",
    "scratch": "No pretrained weights: TF-IDF + logistic regression for texts, a small CNN for images.",
    "api": "No training, no local model: a hosted chat model is asked for one of your class names, item by item. "
           "Each call is paid: its cost is shown next to the training arms' time.",
}


def _arm_checkbox(arm: str, key: str, off: bool = False) -> bool:
    """The arm's checkbox, ticked by default; when ``off``, an unticked disabled one under its own key
    (a widget's key keeps its value whatever ``value=`` says, and the arm is ticked again when it can run)."""
    if off:
        return st.checkbox(arms.short_title(arm), value=False, disabled=True, key=f"{key}_off", help=ARM_HELP[arm])
    # calls cost money, and prompting a language model takes minutes on a CPU: opt in (or arrive from Home's
    # "could a prompt fix it?" link, ?arm=prompt)
    ticked = arm not in ("api", "prompt") or st.query_params.get("arm") == arm
    return st.checkbox(arms.short_title(arm), value=ticked, key=key, help=ARM_HELP[arm])


def _zero_shot_settings(kind: str) -> arms.ZeroShotSettings:
    encoder = _encoder_picker("Encoder", kind, "ft_zs_encoder")
    template = st.text_input("Label sentence ({label} is replaced)", arms.DEFAULT_TEMPLATE[kind],
                             key=f"ft_zs_template_{kind}")
    return arms.ZeroShotSettings(encoder, template)


def _transfer_settings(kind: str) -> arms.TransferSettings:
    encoder = _encoder_picker("Encoder (frozen)", kind, "ft_tr_encoder")
    left, right = st.columns(2)
    c = left.select_slider("Regularisation C (smaller = stronger)", [0.1, 0.3, 1.0, 3.0, 10.0], 1.0, key="ft_tr_c")
    per_class = right.number_input("Examples per class (0 = all)", 0, 10_000, 0, key="ft_tr_per_class")
    return arms.TransferSettings(encoder, c, int(per_class) or None)


def _fine_tune_settings(kind: str) -> arms.FineTuneSettings:
    encoder = _encoder_picker("Encoder", kind, "ft_ft_encoder")
    columns = st.columns(4)
    layers = columns[0].slider("Top layers unfrozen", 0, 12, 2, key="ft_ft_layers")
    epochs = columns[1].slider("Epochs", 1, 10, 3, key="ft_ft_epochs")
    budget = columns[2].slider("Time budget (s)", 10, 900, 120, 10, key="ft_ft_budget")
    rate = columns[3].select_slider("Learning rate (encoder)", [1e-5, 3e-5, 5e-5, 1e-4, 3e-4], 5e-5, key="ft_ft_lr",
                                    format_func=lambda v: f"{v:.0e}")
    return arms.FineTuneSettings(encoder, layers, epochs, float(budget), learning_rate=rate)


def _scratch_settings(kind: str) -> arms.ScratchSettings:
    if kind == "text":
        st.caption("TF-IDF of character n-grams + logistic regression: trains in about a second.")
        return arms.ScratchSettings()
    columns = st.columns(3)
    epochs = columns[0].slider("Epochs (at most)", 1, 500, arms.ScratchSettings.epochs, key="ft_sc_epochs",
                               help="Training ends sooner when the validation loss, on training images set aside, "
                                    "stops falling (early stopping), or at the time budget.")
    budget = columns[1].slider("Time budget (s)", 10, 600, 60, 10, key="ft_sc_budget")
    size = columns[2].selectbox("Image size", ["auto", 8, 16, 32, 64], key="ft_sc_size")
    return arms.ScratchSettings(epochs, float(budget), image_size=None if size == "auto" else int(size))


def _api_settings(kind: str) -> arms.ApiSettings | None:
    st.caption("Any OpenAI-compatible chat endpoint: a hosted provider, or your own server (vLLM, llama.cpp, Ollama).")
    point = endpoint_form(providers.CHAT, "chat", "ft_api")
    limit = st.number_input("Most calls (one per held-out item)", 1, 2000, 200, key="ft_api_max_calls")
    return arms.ApiSettings(point, int(limit)) if point is not None else None


def _prompt_settings(kind: str) -> arms.PromptSettings | None:
    left, right = st.columns(2)
    per_class = left.select_slider("Examples per class in the prompt (k)", [0, 1, 2, 4, 8, 16], 4, key="ft_pr_k",
                                   help="Taken from the training split, in a fixed seeded order; never held-out items. "
                                        "Fewer are used when they do not fit the model's context (the result says so).")
    where = right.radio("Run on", ["This server", "Hosted API"], key="ft_pr_where", horizontal=True)
    if where == "This server":
        spec = get_spec(arms.PROMPT_MODEL)
        resolution = registry.availability(spec).resolution
        if resolution is None:
            st.warning(registry.availability(spec).reason, icon=":material/cloud_off:")
            return None
        options = [engines.AUTO] + engines.generation_engines(resolution)
        wanted = st.selectbox("Engine", options, key="ft_pr_engine",
                              format_func=lambda e: "Auto" if e == engines.AUTO else engines.ENGINES[e].title)
        choice = engines.choose_generation_engine(resolution, wanted)
        st.caption(f"{spec.title} on {engines.ENGINES[choice.engine].title}, as the Text page runs it"
                   + (f" ({choice.note})" if choice.note else "") + ". Each class name is scored after the prompt "
                   "(the sum of its tokens' log-probabilities).")
        return arms.PromptSettings(int(per_class), engine=wanted)
    point = endpoint_form(providers.CHAT, "chat", "ft_pr_api")
    c1, c2 = st.columns(2)
    context = c1.number_input("The model's context (tokens)", 512, 1_000_000, arms.PromptSettings().context_tokens, 512,
                              key="ft_pr_context", help="The prompt is cut to fit it (fewer examples).")
    limit = c2.number_input("Most calls (one per held-out item)", 1, 2000, 200, key="ft_pr_max_calls")
    if point is None:
        return None
    return arms.PromptSettings(int(per_class), endpoint=point, context_tokens=int(context), max_calls=int(limit))


ARM_SETTINGS = {"zero-shot": _zero_shot_settings, "prompt": _prompt_settings, "transfer": _transfer_settings,
                "fine-tune": _fine_tune_settings, "scratch": _scratch_settings, "api": _api_settings}
ARM_KEYS = {arm: "ft_use_" + arm.replace("-", "_") for arm in arms.ARMS}


def _arm_settings(kind: str) -> dict:
    """A checkbox per arm, then the chosen arms' settings, one full-width tab each (long model names fit);
    returns {arm: settings} for the chosen ones.

    When no pretrained encoder can load here, the arms that need one are unticked and disabled, with one note.
    """
    no_encoder = arms.no_encoder_note(kind)
    if no_encoder:
        st.info(no_encoder, icon=":material/cloud_off:")
    ticked = []
    columns = st.columns(3, gap="small")  # two rows of three: six long names do not fit on one line
    for position, arm in enumerate(arms.ARMS):
        with columns[position % 3]:
            if _arm_checkbox(arm, ARM_KEYS[arm], (no_encoder is not None and arm in arms.ENCODER_ARMS)
                             or (arm in ("api", "prompt") and kind != "text")):
                ticked.append(arm)
    if not ticked:
        return {}
    with st.expander("Settings of the chosen arms"):
        tabs = st.tabs([arms.short_title(arm) for arm in ticked])
        chosen = {}
        for arm, tab in zip(ticked, tabs):
            with tab:
                settings = ARM_SETTINGS[arm](kind)
                if settings is not None:  # an incomplete endpoint says why in its tab
                    chosen[arm] = settings
    return chosen


def _live() -> None:
    """Each step of this session's job: queue place, progress, live curve, errors; Stop while it runs."""
    job = st.session_state.get("ft_job")
    if job is None:
        return
    for state in job.snapshot():
        with st.container(border=True):
            st.markdown(f"**{state.title}** — {STATUS[state.status]}")
            if state.status == "queued":
                st.info(f"Place {state.place or 1} in line: one heavy training runs at a time on this server, for "
                        "everyone. It starts by itself; you can keep using the app.", icon=":material/schedule:")
            elif state.status == "running":
                st.progress(min(max(state.fraction, 0.0), 1.0), text=state.message or "Working ...")
            elif state.status == "error":
                st.error(state.error, icon=":material/error:")
            elif state.status in ("done", "stopped") and isinstance(state.result, arms.ArmResult):
                st.caption(f"{state.message} · held-out accuracy {state.result.accuracy:.1%} · "
                           f"training {state.result.train_s:.2f} s")
            if state.heavy and len(state.curve) > 1:
                st.altair_chart(charts.curve_chart(state.curve, "Live: training loss and held-out accuracy"),
                                width="stretch")
    if not job.finished:
        st.button("Stop", key="ft_stop", on_click=job.stop, icon=":material/stop_circle:")
    elif st.session_state.get("ft_drawn") != job.id:  # finished during a fragment rerun: draw the results
        st.session_state["ft_drawn"] = job.id
        st.rerun()


def _results(job) -> None:
    everything = job.results()
    results = {arm: everything[arm] for arm in arms.ARMS if isinstance(everything.get(arm), arms.ArmResult)}
    if not results:
        return
    _section("Results on the held-out split")
    st.caption(f"Data: {st.session_state.get('ft_job_source', '')}")
    st.success(verdict(results), icon=":material/balance:")
    st.dataframe(
        arms.results_table(results), hide_index=True, width="stretch",
        column_config={  # the arm stays in view while the other 13 columns scroll under it
            "arm": st.column_config.TextColumn(pinned=True),
            "accuracy": st.column_config.NumberColumn(format="percent", width="small"),
            "macro-F1": st.column_config.NumberColumn(format="%.3f", width="small"),
            "training (s)": st.column_config.NumberColumn(format="%.2f", width="small"),
            "latency / example (ms)": st.column_config.NumberColumn(format="%.2f", width="small"),
            "peak memory (MB)": st.column_config.NumberColumn(format="%.0f", width="small"),
            "trainable params": st.column_config.NumberColumn(format="localized", width="small"),
            "$ per 1,000 items": st.column_config.NumberColumn(
                format="$%.4f", width="small", help="An API's charge for 1,000 more items; for local arms, their "
                "inference time priced by a small CPU host (see Summary)."),
        },
    )
    for tab, result in zip(st.tabs([arms.TITLES[arm] for arm in results]), results.values()):
        with tab:
            left, right = st.columns(2)
            left.altair_chart(charts.confusion_chart(result.confusion, result.labels, "Confusion matrix (held out)"))
            if len(result.curve) > 1:
                right.altair_chart(charts.curve_chart(result.curve), width="stretch")
            for note in result.notes:
                right.caption(note)
            right.caption(f"Model `{result.model}` · weights: {result.source} · device: {result.device}")
    curves = everything.get("label-efficiency", []) + everything.get("prompt-curve", [])
    if curves:
        st.altair_chart(charts.label_efficiency_chart(curves), width="stretch")
        st.caption(" ".join(text for name, text in CURVE_CAPTIONS.items() if everything.get(name)))


CURVE_CAPTIONS = {
    "label-efficiency": "The head is refitted on 1, 2, 4, ... labelled examples per class (features from the cache); "
                        "zero-shot uses no labels, so its line is flat.",
    "prompt-curve": "The prompt arm puts k = 0, 1, 2, 4, 8 examples per class in the prompt (as many as the smallest "
                    "class has and as fit the context), each k scored once: it is deterministic.",
}


def _export_and_import(job, data) -> None:
    _section("Export a trained head, or use one")
    trained = job.results().get("transfer") if job is not None else None
    heads = {}
    if isinstance(trained, arms.ArmResult) and trained.head is not None:
        heads["The head trained above"] = trained.head
        st.download_button("Download the head (.zip: safetensors + JSON + README)", export.export_zip(trained.head),
                           file_name="head.zip", mime="application/zip", key="ft_download", icon=":material/download:")
        texts = export.snippet_texts(data.items, data.labels) if data is not None else None
        st.code(export.snippet(trained.head, texts), language="python")
    uploads = st.file_uploader("Upload an exported head: the .zip, or head.safetensors + head.json",
                               type=["zip", "safetensors", "json"], accept_multiple_files=True, key="ft_head_upload")
    if uploads:
        with friendly_errors("Reading the head"):
            imported = export.load_head([(u.name, u.getvalue()) for u in uploads])
            heads["The uploaded head"] = imported
            st.caption(f"Uploaded head: {len(imported.labels)} classes ({', '.join(imported.labels[:8])}) on "
                       f"`{imported.encoder}`; held-out accuracy when trained: "
                       f"{imported.record.get('held_out_accuracy', 'not recorded')}.")
    if not heads:
        st.caption("Run the transfer arm, or upload a head, to classify new items with it.")
        return
    name = st.radio("Classify with", list(heads), key="ft_head_choice", horizontal=True)
    head = heads[name]
    if feats.encoder_kind(head.encoder) == "text":
        raw = st.text_area("Texts to classify, one per line", key="ft_predict_text", height=100)
        items = [line.strip() for line in raw.splitlines() if line.strip()]
    else:
        from core.images import open_image

        files = st.file_uploader("Images to classify", type=["png", "jpg", "jpeg", "webp", "bmp", "gif"],
                                 accept_multiple_files=True, key="ft_predict_images")
        items = []
        with friendly_errors("Reading the images"):
            items = [open_image(f.getvalue(), f.name) for f in files or []]
    if st.button("Classify", key="ft_predict_run"):
        with friendly_errors("Classifying"), model_turn("classify"), st.spinner("Computing features ..."):
            predictions = export.predict(head, items)
            st.dataframe(pd.DataFrame([{"item": i + 1, "label": label, "probability": round(p, 3)}
                                       for i, (label, p) in enumerate(predictions)]), hide_index=True)


@st.fragment
def _split_section(data):
    """The held-out share and seed, and the split they make: a change reruns only this section.

    Returns:
        (train, test) as ``labelled_data.split`` makes them, or None when the data cannot be split so.
    """
    left, right = st.columns(2)
    test_size = left.slider("Held-out share", 0.1, 0.5, 0.25, 0.05, key="ft_test_size")
    seed = int(right.number_input("Split seed", 0, 10_000, 0, key="ft_seed"))
    split = None
    with friendly_errors("Splitting the data"):
        split = _memo(f"{data.fingerprint}:{test_size}:{seed}", lambda: labelled_data.split(data, test_size, seed),
                      store="ft_splits")
        st.caption(f"Every arm is scored on the same {len(split[1]):,} held-out examples ({test_size:.0%}, stratified "
                   f"by class, seed {seed}); no arm trains on them. {len(split[0]):,} examples remain for training.")
    failed = split is None
    if st.session_state.setdefault("ft_split_failed", failed) != failed:  # the arms below appear or go: whole page
        st.session_state["ft_split_failed"] = failed
        st.rerun()
    return split


# --- page -------------------------------------------------------------------------------------------
st.title("Fine-tune: should I train this, or just use it?")
st.caption(
    "Six ways to get a classifier for your labelled data, scored on the same held-out examples and measured on "
    "this server: use a pretrained model as is, prompt a language model with a few of your examples, train a small "
    "head on its frozen features, fine-tune its top layers, train from scratch, or call a hosted model's API. Training runs in the background: you can keep "
    "using the app."
)

# 1 · data (notes on what was skipped or refused are shown with any error that follows them)
_section("Data")
data = None
with friendly_errors("Reading the data"):
    try:
        data = _load_data()
    except labelled_data.DataError as err:
        st.warning(str(err), icon=":material/edit_note:")
        _show_notes(err.notes)
_forget_results_of_other_data(data)
split = None
if data is not None:
    _preview(data)
    split = _split_section(data)

# 2 · arms
job = st.session_state.get("ft_job")
running = job is not None and not job.finished
if data is not None and split is not None:
    _section("Arms")
    chosen = _arm_settings(data.kind)
    for encoder in sorted({s.encoder for s in chosen.values() if getattr(s, "encoder", None)}):
        _availability_warning(encoder)
    label_curve = st.checkbox("Label-efficiency curve (accuracy against examples per class; for the prompt arm, "
                              "k = 0, 1, 2, 4, 8 in the prompt)", value=True, key="ft_label_curve")
    if st.button("Run the chosen arms", type="primary", key="ft_run", disabled=running or not chosen,
                 help="Wait for the running job to finish, or stop it." if running else None):
        with friendly_errors("Starting the training"):
            job = training.start_training(data, *split, chosen, session_id(), label_curve and "transfer" in chosen,
                                      prompt_curve=label_curve and "prompt" in chosen)
            st.session_state["ft_job"], st.session_state["ft_job_source"] = job, data.source
            st.session_state["ft_job_fingerprint"] = data.fingerprint
            running = True

# 3 · live progress (polls every second while the job runs)
if job is not None:
    _section("Progress")
    st.caption(f"Training on: {job.backend}")  # this server, or the Ray cluster at UBT_RAY_ADDRESS
    _show_notes(job.notes)  # e.g. the cluster could not be reached, so this server trains
    if job.finished:
        st.session_state["ft_drawn"] = job.id
    st.fragment(_live, run_every=1.0 if running else None)()
    if job.finished:
        _results(job)

_export_and_import(job, data)
