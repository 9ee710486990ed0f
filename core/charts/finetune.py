"""Charts of the Fine-tune page: class balance, live training curves, confusion matrices, label efficiency."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from core.charts.summary import APPROACH_COLOURS
from core.runs import APPROACHES


def class_balance_chart(counts: dict[str, int]) -> alt.Chart:
    """Examples per class, one horizontal bar each.

    Args:
        counts: {class name: number of examples}.

    Returns:
        A bar chart, classes sorted by count.
    """
    data = pd.DataFrame({"class": list(counts), "examples": [int(v) for v in counts.values()]})
    return (
        alt.Chart(data, title="Examples per class")
        .mark_bar()
        .encode(
            x=alt.X("examples:Q", title="examples"),
            y=alt.Y("class:N", title=None, sort="-x", axis=alt.Axis(labelOverlap=False, labelLimit=140)),
            tooltip=["class:N", "examples:Q"],
        )
        .properties(height=alt.Step(24))
    )


def curve_chart(curve: list[dict], title: str = "Training curve") -> alt.Chart:
    """Training loss per step and validation loss per epoch (lines), held-out accuracy per epoch (points),
    on two y axes.

    Args:
        curve: points ``{step, epoch, loss, accuracy}``, and ``val_loss`` where early stopping validated;
            any value may be None (an ArmResult's curve, or a running step's, made from the figures in each
            ``core.progress.Progress.metrics``).
        title: chart title.

    Returns:
        A layered chart; an empty curve gives empty layers.
    """
    data = pd.DataFrame(curve, columns=["step", "epoch", "loss", "accuracy", "val_loss"])
    data["series"] = "training"
    validation = data[data["val_loss"].notna()].assign(loss=lambda d: d["val_loss"], accuracy=None, series="validation")
    data = pd.concat([data, validation], ignore_index=True) if len(validation) else data
    base = alt.Chart(data.drop(columns="val_loss"), title=title).encode(
        x=alt.X("step:Q", title="optimiser step", axis=alt.Axis(tickMinStep=1, format="d")),
    )
    series = ["training", "validation"]
    loss = base.transform_filter("isValid(datum.loss)").mark_line().encode(
        y=alt.Y("loss:Q", title="loss", axis=alt.Axis(titleColor=APPROACH_COLOURS[3])),
        color=alt.Color("series:N", title="loss", legend=alt.Legend(orient="right"),
                        scale=alt.Scale(domain=series, range=[APPROACH_COLOURS[3], APPROACH_COLOURS[4]])),
        tooltip=[alt.Tooltip("series:N", title="loss on"), alt.Tooltip("step:Q"), alt.Tooltip("epoch:Q", format=".2f"),
                 alt.Tooltip("loss:Q", format=".4f")],
    )
    accuracy = base.transform_filter("isValid(datum.accuracy)").mark_line(
        color=APPROACH_COLOURS[0], point=True, strokeDash=[4, 2],
    ).encode(
        y=alt.Y("accuracy:Q", title="held-out accuracy", scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%", titleColor=APPROACH_COLOURS[0])),
        tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("accuracy:Q", format=".1%")],
    )
    return alt.layer(loss, accuracy).resolve_scale(y="independent").properties(height=220)


def confusion_chart(confusion: np.ndarray, labels: list[str], title: str) -> alt.Chart:
    """A heatmap of held-out counts: rows the actual class, columns the predicted class.

    Args:
        confusion: counts, shape (classes, classes).
        labels: class names in the matrix's order.
        title: chart title (the arm).

    Returns:
        Rectangles coloured by count, with the count written in each cell.
    """
    matrix = np.asarray(confusion)
    data = pd.DataFrame(
        [{"actual": labels[i], "predicted": labels[j], "examples": int(matrix[i, j])}
         for i in range(len(labels)) for j in range(len(labels))]
    )
    size = max(240, min(120 + 28 * len(labels), 480))  # the whole chart, axes included (Streamlit fits it)
    base = alt.Chart(data, title=title).encode(
        x=alt.X("predicted:N", sort=labels, title="predicted class",
                axis=alt.Axis(labelAngle=-35, labelLimit=90, labelOverlap=False)),
        y=alt.Y("actual:N", sort=labels, title="actual class", axis=alt.Axis(labelLimit=90, labelOverlap=False)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("examples:Q", scale=alt.Scale(scheme="blues"), legend=None),
        tooltip=["actual:N", "predicted:N", "examples:Q"],
    )
    text = base.mark_text(fontSize=11).encode(
        text="examples:Q",
        color=alt.condition(alt.datum.examples > float(matrix.max()) / 2, alt.value("white"), alt.value("black")),
    )
    return (cells + text).properties(width=size, height=size)


def label_efficiency_chart(rows: list[dict]) -> alt.Chart:
    """Held-out accuracy against labelled examples per class, one line per approach: the mean over the random draws
    of the examples, with a band from the lowest to the highest draw; the prompt arm (one deterministic run per k,
    k = 0 included) with its 95% interval as error bars.

    Args:
        rows: ``{examples_per_class, train_examples, approach, accuracy}`` from ``arms.label_efficiency``, one per
            draw (a ``seed`` key tells draws apart; it is not needed), and from ``arms.prompt_curve``, whose rows
            also hold ``accuracy_low`` and ``accuracy_high``.

    Returns:
        A layered chart: min-max band, the mean line with points, and the intervals where rows have them. The x axis
        is log 2, or symmetric-log when k = 0 is drawn (a log axis has no 0).
    """
    raw = pd.DataFrame(rows, columns=["examples_per_class", "train_examples", "approach", "accuracy", "accuracy_low",
                                      "accuracy_high"])
    data = (raw.groupby(["examples_per_class", "approach"], as_index=False)
            .agg(train_examples=("train_examples", "first"), accuracy=("accuracy", "mean"),
                 lowest=("accuracy", "min"), highest=("accuracy", "max"), draws=("accuracy", "size"),
                 interval_low=("accuracy_low", "first"), interval_high=("accuracy_high", "first")))
    present = [a for a in APPROACHES if a in set(data["approach"])]
    colours = [APPROACH_COLOURS[APPROACHES.index(a)] for a in present]
    intervals = data["interval_low"].notna().any()
    drawn = data["interval_low"].isna()  # the head's rows: several draws each
    draws = int(data.loc[drawn, "draws"].max()) if drawn.any() else 0
    title = ("How many labelled examples does each approach need?" if intervals
             else "How many labels does the head need?")
    notes = []
    if draws > 1:
        notes.append(f"line: mean of {draws} random draws of the labelled examples; band: lowest to highest draw")
    if intervals:
        notes.append("bars: 95% interval of the prompt's held-out accuracy")
    if notes:
        title = alt.Title(title, subtitle="; ".join(notes))
    band = alt.Chart().mark_area(opacity=0.18).encode(y="lowest:Q", y2="highest:Q")
    line = alt.Chart().mark_line(point=True).encode(
        y=alt.Y("accuracy:Q", title="held-out accuracy", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        tooltip=["approach:N", "examples_per_class:Q", "train_examples:Q",
                 alt.Tooltip("accuracy:Q", title="mean accuracy", format=".1%"),
                 alt.Tooltip("lowest:Q", format=".1%"), alt.Tooltip("highest:Q", format=".1%"), "draws:Q"],
    )
    layers = [band, line]
    if intervals:
        layers.append(alt.Chart().transform_filter("isValid(datum.interval_low)").mark_errorbar(ticks=True).encode(
            y=alt.Y("interval_low:Q", title="held-out accuracy"), y2="interval_high:Q",
            tooltip=["approach:N", "examples_per_class:Q", alt.Tooltip("accuracy:Q", format=".1%"),
                     alt.Tooltip("interval_low:Q", title="95% interval from", format=".1%"),
                     alt.Tooltip("interval_high:Q", title="to", format=".1%")]))
    ticks = sorted({int(k) for k in data["examples_per_class"]})
    scale = (alt.Scale(type="symlog", constant=1) if 0 in ticks else alt.Scale(type="log", base=2))
    return (
        alt.layer(*layers, data=data, title=title)
        .encode(
            x=alt.X("examples_per_class:Q", scale=scale, title="labelled examples per class (log scale"
                    + ("; 0: the class names alone)" if 0 in ticks else ")"),
                    axis=alt.Axis(values=ticks, format="d")),
            color=alt.Color("approach:N", scale=alt.Scale(domain=present, range=colours),
                            legend=alt.Legend(symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3)),
        )
        .properties(height=260)
    )
