"""Charts of the Summary page, drawn from runs enriched by :func:`core.costs.enrich`."""
from __future__ import annotations

import altair as alt
import pandas as pd

from core.engines import CTRANSLATE2, LLAMACPP, ONNXRUNTIME, TORCH
from core.runs import APPROACHES, HOSTED_ENGINE, SKLEARN_ENGINE

# One colour per approach, from "call an API" (purple) and "use as is" (cool) to "from scratch" (hot); "prompt with
# examples" (teal) sits between using as is and transfer learning.
APPROACH_COLOURS = ("#b279a2", "#4c78a8", "#72b7b2", "#54a24b", "#f58518", "#e45756")
# One colour per engine, PyTorch in the approaches' "use as is" blue and a hosted call in their "call an API" purple.
ENGINE_COLOURS = {TORCH: "#4c78a8", ONNXRUNTIME: "#f58518", CTRANSLATE2: "#54a24b", LLAMACPP: "#e45756",
                  HOSTED_ENGINE: "#b279a2", SKLEARN_ENGINE: "#72b7b2"}
EFFORTS = {  # an approach that trained nothing counts its held-out inference (core.costs.enrich)
    "seconds": ("effort_s", "effort: training time, or held-out inference time where nothing was trained (s, log scale)"),
    "dollars": ("effort_usd", "effort: cost of training, or of held-out inference where nothing was trained ($, log scale)"),
}
MAX_POINTS = 5000  # the most recent runs drawn; altair refuses larger inline data by default
MODEL_LABEL_LIMIT_PX = 400  # room for the longest catalog key beside the axis (altair's default cuts at 180)


def _load_text(load_s: pd.Series) -> list[str]:
    """Load seconds for a tooltip; a run whose model was already in memory says so instead of "null"."""
    return [f"{v:.3f}" if pd.notna(v) else "none (already in memory)" for v in load_s]


def _drawable(enriched: pd.DataFrame, column: str) -> pd.Series:
    """Runs the effort-against-impact chart can draw: a quality figure and an effort above 0 (a log axis)."""
    return enriched["impact"].notna() & (enriched[column] > 0)


def left_out(enriched: pd.DataFrame, effort: str = "seconds") -> pd.DataFrame:
    """Runs with a quality figure that the effort-against-impact chart cannot draw: no effort measured (0 on a
    log axis), e.g. a free endpoint in dollars."""
    column, _ = EFFORTS[effort]
    return enriched[enriched["impact"].notna() & ~_drawable(enriched, column)]


def effort_impact_chart(enriched: pd.DataFrame, effort: str = "seconds") -> alt.Chart:
    """Effort against impact, one point per run that has a quality figure.

    Args:
        enriched: runs from :func:`core.costs.enrich`.
        effort: ``seconds`` (compute time) or ``dollars`` (compute cost), drawn on a log scale.

    Returns:
        A scatter: x effort, y impact (0-1), colour approach, shape engine (the same model on a faster
        engine sits further left), tooltips with model, engine, kind, task, data (source name and short
        fingerprint), times (s), memory added and process peak (MB), and cost ($) when effort is in
        dollars (so that a chart in seconds does not depend on prices). Runs without impact or with zero
        effort are left out.

    Raises:
        ValueError: for an unknown ``effort``.
    """
    if effort not in EFFORTS:
        raise ValueError(f"effort must be one of {', '.join(EFFORTS)}, not {effort!r}")
    column, title = EFFORTS[effort]
    data = _recent(enriched[_drawable(enriched, column)])
    data = data.assign(load=_load_text(data["load_s"]), number_format=_number_formats(data))
    data = data[["time", "model", "task", "approach", "kind", "engine", "number_format", "device", "impact", "impact_metric", "data_name",
                 "data_short", "effort_s", "compute_s", "load", "wall_s", "added_mb", "peak_mb", "train_examples"]
                + (["effort_usd"] if effort == "dollars" else [])]
    return (
        alt.Chart(data, title="One point per run with a quality figure: up and left is better")
        .mark_point(size=90, filled=True, opacity=0.8)
        .encode(
            x=alt.X(f"{column}:Q", title=title, scale=alt.Scale(type="log", padding=12)),
            y=alt.Y("impact:Q", title="impact: macro-F1, else accuracy", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "approach:N", title="approach",
                scale=alt.Scale(domain=list(APPROACHES), range=list(APPROACH_COLOURS)),
            ),
            shape=alt.Shape("engine:N", title="engine"),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("engine:N"),
                alt.Tooltip("number_format:N", title="number format"),
                alt.Tooltip("task:N"),
                alt.Tooltip("approach:N"),
                alt.Tooltip("kind:N"),
                *_data_tooltips(),
                alt.Tooltip("device:N"),
                alt.Tooltip("impact_metric:N", title="impact metric"),
                alt.Tooltip("impact:Q", format=".3f"),
                alt.Tooltip("effort_s:Q", title="effort (s)", format=".3f"),
                alt.Tooltip("compute_s:Q", title="training + load (s)", format=".3f"),
                alt.Tooltip("load:N", title="load (s)"),
                alt.Tooltip("wall_s:Q", title="wall (s)", format=".3f"),
                *_memory_tooltips(),
                *([alt.Tooltip("effort_usd:Q", title="cost ($)", format=".6f")] if effort == "dollars" else []),
                alt.Tooltip("train_examples:Q", title="training examples", format=".0f"),
                alt.Tooltip("time:N", title="time (UTC)"),
            ],
        )
    )


def _number_formats(data: pd.DataFrame) -> list[str]:
    """Each run's number format (fp32, bf16, int8 ...); float32 for frames without the column."""
    if "number_format" not in data:
        return ["fp32"] * len(data)
    return data["number_format"].fillna("fp32").tolist()


def latency_chart(enriched: pd.DataFrame) -> alt.Chart:
    """Latency of every inference run, one row per model, coloured by engine: on a model's row, a faster
    engine's points sit further left.

    Args:
        enriched: runs from :func:`core.costs.enrich`.

    Returns:
        A strip plot: x latency (s, log scale), y model (labels never cut), colour engine,
        tooltips with family, data (source name and short fingerprint), device, load time (s), memory
        added and process peak (MB). Training runs and zero latencies are left out.
    """
    data = _recent(enriched[(enriched["kind"] == "inference") & (enriched["wall_s"] > 0)])
    data = data.assign(number_format=_number_formats(data))
    data = data[["time", "family", "model", "engine", "number_format", "task", "data_name", "data_short", "device",
                 "wall_s", "load_s", "added_mb", "peak_mb"]]
    data = data.assign(load=_load_text(data["load_s"]))
    return (
        alt.Chart(data, title="Latency per model and engine (one point per run)")
        .mark_circle(size=60, opacity=0.7)
        .encode(
            x=alt.X("wall_s:Q", title="latency (s, log scale)", scale=alt.Scale(type="log", padding=12)),
            y=alt.Y("model:N", title=None, sort=alt.EncodingSortField("wall_s", op="median"),
                    axis=alt.Axis(labelLimit=MODEL_LABEL_LIMIT_PX)),
            color=alt.Color("engine:N", title="engine", scale=alt.Scale(  # fixed colours; only the engines shown
                domain=[e for e in ENGINE_COLOURS if e in set(data["engine"])],
                range=[c for e, c in ENGINE_COLOURS.items() if e in set(data["engine"])])),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("engine:N"),
                alt.Tooltip("number_format:N", title="number format"),
                alt.Tooltip("family:N"),
                alt.Tooltip("task:N"),
                *_data_tooltips(),
                alt.Tooltip("device:N"),
                alt.Tooltip("wall_s:Q", title="latency (s)", format=".3f"),
                alt.Tooltip("load:N", title="load (s)"),
                *_memory_tooltips(),
                alt.Tooltip("time:N", title="time (UTC)"),
            ],
        )
    )


def _data_tooltips() -> list[alt.Tooltip]:
    return [alt.Tooltip("data_name:N", title="data"), alt.Tooltip("data_short:N", title="data fingerprint")]


def _memory_tooltips() -> list[alt.Tooltip]:
    return [alt.Tooltip("added_mb:Q", title="memory added (MB)", format=".0f"),
            alt.Tooltip("peak_mb:Q", title="process peak (MB)", format=".0f")]


def _recent(runs: pd.DataFrame) -> pd.DataFrame:
    """The newest MAX_POINTS runs, with their time as text for tooltips."""
    out = runs.sort_values("time_utc").tail(MAX_POINTS).copy()
    out["time"] = out["time_utc"].dt.strftime("%Y-%m-%d %H:%M:%S")
    return out
