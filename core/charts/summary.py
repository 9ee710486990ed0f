"""Charts of the Summary page, drawn from runs enriched by :func:`core.costs.enrich`."""
from __future__ import annotations

import altair as alt
import pandas as pd

from core.runs import APPROACHES

# One colour per approach, from "use as is" (cool) to "from scratch" (hot).
APPROACH_COLOURS = ("#4c78a8", "#54a24b", "#f58518", "#e45756")
EFFORTS = {
    "seconds": ("compute_s", "effort: compute time (s, log scale)"),
    "dollars": ("cost_usd", "effort: compute cost ($, log scale)"),
}
MAX_POINTS = 5000  # the most recent runs drawn; altair refuses larger inline data by default


def effort_impact_chart(enriched: pd.DataFrame, effort: str = "seconds") -> alt.Chart:
    """Effort against impact, one point per run that has a quality figure.

    Args:
        enriched: runs from :func:`core.costs.enrich`.
        effort: ``seconds`` (compute time) or ``dollars`` (compute cost), drawn on a log scale.

    Returns:
        A scatter: x effort, y impact (0-1), colour approach, shape kind, tooltips with model,
        task, times (s), memory (MB) and cost ($). Runs without impact or with zero effort are left out.

    Raises:
        ValueError: for an unknown ``effort``.
    """
    if effort not in EFFORTS:
        raise ValueError(f"effort must be one of {', '.join(EFFORTS)}, not {effort!r}")
    column, title = EFFORTS[effort]
    data = _recent(enriched[enriched["impact"].notna() & (enriched[column] > 0)])
    data = data[["time", "model", "task", "approach", "kind", "device", "impact", "impact_metric",
                 "compute_s", "load_s", "wall_s", "peak_mb", "cost_usd", "train_examples"]]
    return (
        alt.Chart(data, title="One point per run with a quality figure: up and left is better")
        .mark_point(size=90, filled=True, opacity=0.8)
        .encode(
            x=alt.X(f"{column}:Q", title=title, scale=alt.Scale(type="log")),
            y=alt.Y("impact:Q", title="impact: macro-F1, else accuracy", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "approach:N", title="approach",
                scale=alt.Scale(domain=list(APPROACHES), range=list(APPROACH_COLOURS)),
            ),
            shape=alt.Shape("kind:N", title="kind"),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("task:N"),
                alt.Tooltip("approach:N"),
                alt.Tooltip("device:N"),
                alt.Tooltip("impact_metric:N", title="impact metric"),
                alt.Tooltip("impact:Q", format=".3f"),
                alt.Tooltip("compute_s:Q", title="compute (s)", format=".3f"),
                alt.Tooltip("load_s:Q", title="load (s)", format=".3f"),
                alt.Tooltip("wall_s:Q", title="wall (s)", format=".3f"),
                alt.Tooltip("peak_mb:Q", title="peak memory (MB)", format=".0f"),
                alt.Tooltip("cost_usd:Q", title="cost ($)", format=".6f"),
                alt.Tooltip("train_examples:Q", title="training examples", format=".0f"),
                alt.Tooltip("time:N", title="time (UTC)"),
            ],
        )
    )


def latency_chart(enriched: pd.DataFrame) -> alt.Chart:
    """Latency of every inference run, one row per model.

    Args:
        enriched: runs from :func:`core.costs.enrich`.

    Returns:
        A strip plot: x latency (s, log scale), y model, colour family, tooltips with device,
        load time (s) and peak memory (MB). Training runs and zero latencies are left out.
    """
    data = _recent(enriched[(enriched["kind"] == "inference") & (enriched["wall_s"] > 0)])
    data = data[["time", "family", "model", "task", "device", "wall_s", "load_s", "peak_mb"]]
    return (
        alt.Chart(data, title="Latency per model (one point per run)")
        .mark_circle(size=60, opacity=0.7)
        .encode(
            x=alt.X("wall_s:Q", title="latency (s, log scale)", scale=alt.Scale(type="log")),
            y=alt.Y("model:N", title=None, sort=alt.EncodingSortField("wall_s", op="median")),
            color=alt.Color("family:N", title="family"),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("family:N"),
                alt.Tooltip("task:N"),
                alt.Tooltip("device:N"),
                alt.Tooltip("wall_s:Q", title="latency (s)", format=".3f"),
                alt.Tooltip("load_s:Q", title="load (s)", format=".3f"),
                alt.Tooltip("peak_mb:Q", title="peak memory (MB)", format=".0f"),
                alt.Tooltip("time:N", title="time (UTC)"),
            ],
        )
    )


def _recent(runs: pd.DataFrame) -> pd.DataFrame:
    """The newest MAX_POINTS runs, with their time as text for tooltips."""
    out = runs.sort_values("time_utc").tail(MAX_POINTS).copy()
    out["time"] = out["time_utc"].dt.strftime("%Y-%m-%d %H:%M:%S")
    return out
