"""What runs cost and what they bought, from the run store's measurements.

Cost model (assumptions, editable on the Summary page): a run costs its compute seconds, load
plus wall time, divided by 3600 and multiplied by the hourly price of the host it ran on, in US
dollars. The defaults are rough on-demand prices of a small CPU host and of a one-GPU host;
idle time, storage and network are not counted.

Impact is a quality fraction in [0, 1]: ``metrics["macro_f1"]`` when a run has it, else
``metrics["accuracy"]``; runs with neither have no impact figure.

Memory is reported twice (see :mod:`core.measure`): what a run added, and the whole process's
peak during it, which includes every model other runs left loaded.

A run's data is named by its source and a short fingerprint; runs on a page's own input (typed
text, an uploaded clip), whose inputs are never stored, are named :data:`PAGE_INPUT`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.catalog import CATALOG
from core.runs import APPROACHES, DEFAULT_ENGINE, DEFAULT_NUMBER_FORMAT, UNTRAINED

if TYPE_CHECKING:
    import pandas

GPU_DEVICE_PREFIXES = ("cuda", "gpu", "mps")
IMPACT_METRICS = ("macro_f1", "accuracy")
PAGE_INPUT = "page input (not stored)"
UNNAMED_DATA = "unnamed data"
SHORT_FINGERPRINT = 8  # hex characters shown of a data fingerprint
SPEED_UP = "speed-up vs PyTorch (×)"
ALL_TASKS = "all tasks"  # a filter value that keeps every task
ALL_DATA = "all data"  # ... every data set


@dataclass(frozen=True)
class Rates:
    """Hourly host prices, in US dollars per hour (assumptions, not quotes).

    Attributes:
        cpu_usd_per_h: a small CPU host (2 vCPU class).
        gpu_usd_per_h: a host with one data-centre GPU.
    """

    cpu_usd_per_h: float = 0.10
    gpu_usd_per_h: float = 1.20

    def for_device(self, device: str) -> float:
        """The hourly price ($/h) of the host behind a device label such as ``cpu`` or ``cuda:0``."""
        return self.gpu_usd_per_h if is_gpu(device) else self.cpu_usd_per_h


def is_gpu(device: str) -> bool:
    """Whether a device label names an accelerator."""
    return device.strip().lower().startswith(GPU_DEVICE_PREFIXES)


def cost_usd(seconds: float, device: str, rates: Rates = Rates()) -> float:
    """Money for compute time.

    Args:
        seconds: compute seconds.
        device: device label the seconds ran on.
        rates: hourly prices.

    Returns:
        US dollars: ``seconds / 3600 * rate``.
    """
    return seconds / 3600.0 * rates.for_device(device)


def family_of(model: str, page: str) -> str:
    """The catalog family of a model key, else the page that ran it."""
    spec = CATALOG.get(model)
    return spec.family if spec is not None else page


def enrich(runs: "pandas.DataFrame", rates: Rates = Rates()) -> "pandas.DataFrame":
    """Add effort and impact columns to runs.

    Args:
        runs: a frame from :func:`core.runs.fetch_runs`.
        rates: hourly prices.

    Returns:
        A copy with ``compute_s`` (s, load + wall), ``cost_usd`` ($: what an API charged for a hosted
        call, else compute time priced by the host), ``effort_s`` and ``effort_usd`` (the same, except that a run
        of an approach that trains nothing adds the time, and price, of its held-out inference: an API's charge
        where one was recorded), ``impact`` (0-1, NaN when
        not measured), ``impact_metric`` (its metrics key, or None), ``family``,
        ``train_examples`` (NaN when not given), ``data_name`` (the data's source; else
        :data:`UNNAMED_DATA` when only a fingerprint was recorded, else :data:`PAGE_INPUT`),
        ``data_short`` (the fingerprint's first characters, empty when none) and ``data`` (name
        and short fingerprint, e.g. ``upload: a.csv · 3fa2c1d9``).
    """
    out = runs.copy()
    out["compute_s"] = out["wall_s"] + out["load_s"].fillna(0.0)
    # a hosted call costs what the provider charged; a local run costs its host's time
    out["cost_usd"] = [api if not math.isnan(api) else cost_usd(s, d, rates)
                       for api, s, d in zip(out.get("api_cost_usd", [math.nan] * len(out)), out["compute_s"], out["device"])]
    # an approach that trained nothing (use as is, prompt with examples, call an API) still spent its held-out
    # inference: that is its effort, with the load of its model
    approaches = out.get("approach", [None] * len(out))
    held_out_s = [(_number(m.get("latency_per_example_s")) or 0.0) * (_number(p.get("test_examples")) or 0.0)
                  for m, p in zip(out["metrics"], out["params"])]
    out["effort_s"] = [c + h if a in UNTRAINED else c if c > 0 else h
                       for a, c, h in zip(approaches, out["compute_s"], held_out_s)]
    out["effort_usd"] = [c if c > 0 and (a not in UNTRAINED or _number(api) is not None) else cost_usd(e, d, rates)
                         for a, c, api, e, d in zip(approaches, out["cost_usd"],
                                                    out.get("api_cost_usd", [math.nan] * len(out)), out["effort_s"],
                                                    out["device"])]
    names = [next((k for k in IMPACT_METRICS if _number(m.get(k)) is not None), None) for m in out["metrics"]]
    out["impact_metric"] = names
    out["impact"] = [math.nan if k is None else float(m[k]) for k, m in zip(names, out["metrics"])]
    out["family"] = [family_of(m, p) for m, p in zip(out["model"], out["page"])]
    out["train_examples"] = [_number(p.get("train_examples")) for p in out["params"]]
    out["train_examples"] = out["train_examples"].astype("float64")
    out["data_short"] = [f[:SHORT_FINGERPRINT] if isinstance(f, str) else "" for f in out["data_fingerprint"]]
    out["data_name"] = [
        source if isinstance(source, str) and source else UNNAMED_DATA if short else PAGE_INPUT
        for source, short in zip(out["data_source"], out["data_short"])
    ]
    out["data"] = [f"{name} · {short}" if short else name for name, short in zip(out["data_name"], out["data_short"])]
    return out


def select(enriched: "pandas.DataFrame", session: str | None, task: str = ALL_TASKS, data: str = ALL_DATA
           ) -> "pandas.DataFrame":
    """The runs Summary's filters keep (a new frame; the one given is left as it is).

    Args:
        enriched: runs from :func:`enrich`.
        session: one browser session's id, or None for everyone's runs.
        task, data: one task or data set, or :data:`ALL_TASKS` / :data:`ALL_DATA`.
    """
    keep = enriched["session_id"].eq(session) if session is not None else enriched["task"].notna()
    if task != ALL_TASKS:
        keep &= enriched["task"].eq(task)
    if data != ALL_DATA:
        keep &= enriched["data"].eq(data)
    return enriched[keep]


def written_out(table: "pandas.DataFrame", formats: dict[str, str]) -> "pandas.DataFrame":
    """A table with its figures as text (``formats``: column -> format pattern; a dash where there is none): a plain
    table draws in a fraction of a styled one's time."""
    out = table.copy()
    for column, pattern in formats.items():
        out[column] = ["—" if value != value else pattern.format(value) for value in out[column]]
    return out


def training_table(enriched: "pandas.DataFrame") -> "pandas.DataFrame":
    """The chapter's "training considerations", one row per approach, measured.

    Using a model as is (or prompting it, or calling an API) needs no training, so its time and cost are 0 by
    definition; its data is 0 too, except for the labelled examples a prompt holds. The cost is that of the whole
    training run (load + training time).

    Args:
        enriched: a frame from :func:`enrich`.

    Returns:
        Columns ``approach``, ``engines`` (what ran its runs, e.g. ``torch, onnxruntime``), ``number formats``
        (the formats they ran in, e.g. ``bf16, fp32``), ``runs``,
        ``median training time (s)``, ``median training cost ($)``, ``memory added (MB)`` (the most any
        run added), ``process peak (MB)``, ``data needed (examples)``, ``best accuracy``, ``best
        macro-F1``; every approach in order, NaN where nothing was measured.
    """
    import pandas as pd

    rows = []
    for approach in APPROACHES:
        group = enriched[enriched["approach"] == approach]
        trained = group[group["kind"] == "training"]
        untrained = approach in UNTRAINED
        rows.append({
            "approach": approach,
            "engines": ", ".join(sorted(group["engine"].dropna().unique())),
            "number formats": ", ".join(sorted(_formats(group).dropna().unique())),
            "runs": len(group),
            "median training time (s)": 0.0 if untrained else trained["wall_s"].median(),
            "median training cost ($)": 0.0 if untrained else trained["cost_usd"].median(),
            "memory added (MB)": group["added_mb"].max(),
            "process peak (MB)": group["peak_mb"].max(),
            # the prompt arm needs its examples, though it trains nothing
            "data needed (examples)": _data_needed(trained, untrained),
            "best accuracy": _best(group, "accuracy"),
            "best macro-F1": _best(group, "macro_f1"),
        })
    return pd.DataFrame(rows)


def inference_table(enriched: "pandas.DataFrame", rates: Rates = Rates(), calls: int = 1000) -> "pandas.DataFrame":
    """The chapter's "inference considerations", one row per family, model, engine and device, measured.

    Args:
        enriched: a frame from :func:`enrich`.
        rates: hourly prices.
        calls: how many calls the cost column prices.

    Returns:
        Columns ``family``, ``model``, ``engine``, ``number format`` (fp32, bf16, int8 ...), ``device``, ``runs``,
        ``median load time (s)`` (over cold starts), ``median latency (s)``, ``speed-up vs PyTorch (×)`` (the same
        model's median latency on PyTorch in float32 on the same kind of host, CPU or GPU, divided by this row's, per token for runs that
        measured tokens/s, so generations of different lengths compare; NaN without a PyTorch row), ``memory added
        (MB)`` (the most any run added, its load included), ``process peak (MB)`` and ``$ per <calls>
        calls`` (median latency priced by the device's host).
    """
    import pandas as pd

    inference = enriched[enriched["kind"] == "inference"]
    # generations of different lengths compare per token: a run that streamed tokens/s is timed by 1 / tokens/s
    inference = inference.assign(per_unit_s=[1.0 / rate if rate else wall for rate, wall in zip(
        (_number(m.get("tokens_per_s")) for m in inference["metrics"]), inference["wall_s"])])
    inference = inference.assign(number_format=_formats(inference))
    columns = ["family", "model", "engine", "number format", "device", "runs", "median load time (s)", "median latency (s)",
               SPEED_UP, "memory added (MB)", "process peak (MB)", f"$ per {calls:,} calls"]
    if inference.empty:
        return pd.DataFrame(columns=columns)
    table = (
        inference.groupby(["family", "model", "engine", "number_format", "device"], sort=True)
        .agg(runs=("wall_s", "size"), load=("load_s", "median"), latency=("wall_s", "median"),
             per_unit=("per_unit_s", "median"), added=("added_mb", "max"), peak=("peak_mb", "max"),
             api=("api_cost_usd", "median"))
        .reset_index()
    )
    # engines label their device in their own words ("cpu · int8 · 2 thread(s)"): compare on the kind of host
    hosts = [is_gpu(device) for device in table["device"]]
    reference = (table["engine"] == DEFAULT_ENGINE) & table["number_format"].isin([DEFAULT_NUMBER_FORMAT, "fp16"])
    baseline = table[reference].groupby(["model", pd.Series(hosts, index=table.index)])
    baseline = baseline["per_unit"].median().to_dict()
    table.insert(table.columns.get_loc("latency") + 1, "speed_up", [
        baseline.get((model, host), math.nan) / per_unit if per_unit > 0 else math.nan
        for model, host, per_unit in zip(table["model"], hosts, table.pop("per_unit"))
    ])
    table["cost"] = [api * calls if not math.isnan(api) else cost_usd(s * calls, d, rates)
                     for api, s, d in zip(table.pop("api"), table["latency"], table["device"])]
    table.columns = columns
    return table


def _formats(frame: "pandas.DataFrame") -> "pandas.Series":
    """Each run's number format; runs read from a frame without the column (older callers) are float32."""
    import pandas as pd

    if "number_format" not in frame:
        return pd.Series([DEFAULT_NUMBER_FORMAT] * len(frame), index=frame.index, dtype=object)
    return frame["number_format"].fillna(DEFAULT_NUMBER_FORMAT)


def _data_needed(trained: "pandas.DataFrame", untrained: bool) -> float:
    """The median labelled examples of an approach's runs; 0 for one that trains nothing and recorded none."""
    needed = trained["train_examples"].median()
    return 0.0 if untrained and (math.isnan(needed) or needed == 0) else needed


def _best(group: "pandas.DataFrame", metric: str) -> float:
    values = [_number(m.get(metric)) for m in group["metrics"]]
    measured = [v for v in values if v is not None]
    return max(measured) if measured else math.nan


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)
