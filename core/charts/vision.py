"""Charts of the Image-text page: zero-shot label probabilities for one image or several."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd


def label_probabilities_chart(labels: list[str], probabilities: np.ndarray, title: str = "") -> alt.Chart:
    """Horizontal bars, one per label, most likely on top.

    Args:
        labels: candidate labels.
        probabilities: one probability per label (summing to 1).
        title: chart title, e.g. the image's name.

    Returns:
        A bar chart: y label (sorted by probability), x probability 0-100 %, the best label highlighted.
    """
    values = np.asarray(probabilities, dtype=float).reshape(-1)
    if len(values) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(values)} probabilities")
    data = pd.DataFrame({"label": labels, "probability": values, "best": values == values.max()})
    return (
        alt.Chart(data, title=title or alt.Undefined)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", title="probability", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            y=alt.Y("label:N", title=None, sort="-x"),
            color=alt.Color("best:N", legend=None, scale=alt.Scale(domain=[True, False], range=["#4c78a8", "#b0c4de"])),
            tooltip=[alt.Tooltip("label:N"), alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(height=alt.Step(22))
    )


def probability_heatmap(image_names: list[str], labels: list[str], probabilities: np.ndarray) -> alt.LayerChart:
    """Images down, labels across, each cell the probability of that label for that image.

    Args:
        image_names: one name per image (rows); repeats are numbered so rows stay apart.
        labels: candidate labels (columns).
        probabilities: shape (len(image_names), len(labels)).

    Returns:
        A heatmap with the percentage written in each cell.
    """
    probs = np.asarray(probabilities, dtype=float)
    if probs.shape != (len(image_names), len(labels)):
        raise ValueError(f"probabilities have shape {probs.shape}, expected {(len(image_names), len(labels))}")
    rows = [f"{i + 1}. {name}" for i, name in enumerate(image_names)]
    data = pd.DataFrame(
        [{"image": row, "label": label, "probability": probs[i, j]} for i, row in enumerate(rows) for j, label in enumerate(labels)]
    )
    base = alt.Chart(data).encode(
        x=alt.X("label:N", title=None, sort=labels, axis=alt.Axis(labelAngle=-30)),
        y=alt.Y("image:N", title=None, sort=rows),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("probability:Q", scale=alt.Scale(domain=[0, 1], scheme="blues"), legend=alt.Legend(format="%")),
        tooltip=[alt.Tooltip("image:N"), alt.Tooltip("label:N"), alt.Tooltip("probability:Q", format=".1%")],
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("probability:Q", format=".0%"),
        color=alt.condition(alt.datum.probability > 0.5, alt.value("white"), alt.value("black")),
    )
    return (cells + text).properties(height=alt.Step(28), title="Probability of each label, per image")
