"""Charts of the Image generation page."""
from __future__ import annotations

import altair as alt
import pandas as pd


def loss_curve_chart(record: dict) -> alt.Chart:
    """The training loss of the bundled digits generator, step by step.

    Args:
        record: from :func:`core.imagegen.digits_training_record`; its ``loss_curve`` is a list of
            [step, mean loss over the preceding steps].

    Returns:
        A line chart: x training step, y loss on a log scale, with tooltips.
    """
    data = pd.DataFrame(record.get("loss_curve", []), columns=["step", "loss"])
    seconds = record.get("train_seconds")
    title = "Training loss (MSE on the added noise)" + (f" · {seconds:,.0f} s in all" if seconds else "")
    return (
        alt.Chart(data, title=title)
        .mark_line(point=False)
        .encode(
            x=alt.X("step:Q", title="training step"),
            y=alt.Y("loss:Q", title="loss (log scale)", scale=alt.Scale(type="log")),
            tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("loss:Q", format=".4f")],
        )
    )
