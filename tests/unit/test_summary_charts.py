"""Cost model, summary tables and summary charts, on runs seeded into a private store."""
import math

import pandas as pd
import pytest

from core import costs, runs
from core.catalog import CATALOG
from core.charts import summary as charts


@pytest.fixture
def enriched(tmp_path, monkeypatch):
    """Four runs: two plain inferences (one from before memory added was measured), a zero-shot score on
    data known by its fingerprint only, and a training arm on a named upload."""
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(tmp_path / "runs.sqlite"))
    runs.record_run(page="text", task="sentiment", model="distilbert-sst2", source="hub", device="cpu",
                    load_s=3.0, wall_s=0.05, peak_mb=400.0, added_mb=260.0)
    runs.record_run(page="text", task="sentiment", model="distilbert-sst2", source="hub", device="cpu",
                    wall_s=0.15, peak_mb=420.0)
    runs.record_run(page="fine-tune", task="sentiment", model="minilm-l6", source="package", device="cpu",
                    wall_s=2.0, peak_mb=300.0, added_mb=20.0, metrics={"accuracy": 0.70},
                    data_fingerprint=runs.fingerprint("b"))
    runs.record_run(page="fine-tune", task="sentiment", model="minilm-l6", source="package", device="cuda",
                    kind="training", approach="transfer learning", load_s=1.0, wall_s=35.0, peak_mb=900.0, added_mb=150.0,
                    params={"train_examples": 200}, metrics={"accuracy": 0.86, "macro_f1": 0.85},
                    data_fingerprint=runs.fingerprint("a"), data_source="upload: reviews.csv")
    return costs.enrich(runs.fetch_runs(), costs.Rates(cpu_usd_per_h=0.36, gpu_usd_per_h=3.6))


def test_cost_is_seconds_over_an_hour_times_the_rate():
    rates = costs.Rates(cpu_usd_per_h=0.10, gpu_usd_per_h=1.20)
    assert costs.cost_usd(3600, "cpu", rates) == pytest.approx(0.10)
    assert costs.cost_usd(1800, "cuda:0", rates) == pytest.approx(0.60)
    assert costs.Rates().for_device("mps") == costs.Rates().gpu_usd_per_h
    assert not costs.is_gpu("cpu")


def test_enrich_adds_effort_and_impact(enriched):
    assert enriched["compute_s"].tolist() == pytest.approx([3.05, 0.15, 2.0, 36.0])
    assert enriched["cost_usd"].tolist() == pytest.approx([3.05e-4, 0.15e-4, 2.0e-4, 36.0e-3])
    assert enriched["impact_metric"].tolist()[2:] == ["accuracy", "macro_f1"]
    assert enriched["impact"].tolist()[2:] == [0.70, 0.85]
    assert enriched["impact"].isna().tolist()[:2] == [True, True]
    assert enriched["family"].tolist() == ["text"] * 4
    assert enriched["train_examples"].tolist()[3] == 200


def test_enrich_names_each_runs_data():
    """Source name and short fingerprint: the page's own inputs are never stored, so they are named as such."""
    frame = pd.DataFrame({"data_source": ["upload: reviews.csv", None, None],
                          "data_fingerprint": [runs.fingerprint("a"), runs.fingerprint("b"), None]})
    frame = frame.assign(wall_s=0.1, load_s=None, device="cpu", metrics=[{}] * 3, params=[{}] * 3, model="m", page="text")
    named = costs.enrich(frame)
    assert named["data_short"].tolist() == ["ca978112", "3e23e816", ""]
    assert named["data_name"].tolist() == ["upload: reviews.csv", costs.UNNAMED_DATA, costs.PAGE_INPUT]
    assert named["data"].tolist() == ["upload: reviews.csv · ca978112", "unnamed data · 3e23e816", costs.PAGE_INPUT]


def test_training_table_per_approach(enriched):
    table = costs.training_table(enriched).set_index("approach")
    assert table.index.tolist() == list(runs.APPROACHES)
    assert table.loc["use as is", "runs"] == 3
    assert (table.loc["use as is", "engines"], table.loc["from scratch", "engines"]) == ("torch", "")
    assert table.loc["use as is", "median training time (s)"] == 0.0
    assert table.loc["use as is", "best accuracy"] == 0.70
    assert table.loc["transfer learning", "median training time (s)"] == 35.0
    assert table.loc["transfer learning", "median training cost ($)"] == pytest.approx(0.036)
    assert table.loc["transfer learning", "data needed (examples)"] == 200
    assert table.loc["transfer learning", "memory added (MB)"] == 150.0
    assert table.loc["transfer learning", "process peak (MB)"] == 900.0
    assert table.loc["use as is", "memory added (MB)"] == 260.0  # the most one run added, its load included
    assert table.loc["use as is", "process peak (MB)"] == 420.0
    assert table.loc["transfer learning", "best macro-F1"] == 0.85
    assert table.loc["from scratch", "runs"] == 0
    assert math.isnan(table.loc["from scratch", "best accuracy"])


def test_inference_table_per_model(enriched):
    table = costs.inference_table(enriched, costs.Rates(cpu_usd_per_h=0.36), calls=1000)
    assert table.columns.tolist() == ["family", "model", "engine", "number format", "device", "runs", "median load time (s)",
                                      "median latency (s)", costs.SPEED_UP, "memory added (MB)", "process peak (MB)",
                                      "$ per 1,000 calls"]
    row = table.set_index("model").loc["distilbert-sst2"]
    assert (row["runs"], row["median load time (s)"]) == (2, 3.0)
    assert (row["memory added (MB)"], row["process peak (MB)"]) == (260.0, 420.0)  # the old run has no figure
    assert row["median latency (s)"] == pytest.approx(0.10)
    assert row["$ per 1,000 calls"] == pytest.approx(0.01)
    assert "cuda" not in table["device"].tolist()  # the training run is not an inference


def test_a_hosted_call_costs_what_the_api_charged_and_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(tmp_path / "runs.sqlite"))
    for cost in (0.002, 0.004):
        runs.record_run(page="text", task="generation", model="openai-compatible/m", source="hosted",
                        device="hosted: server", approach="call an API", wall_s=0.5, peak_mb=0.0, api_cost_usd=cost)
    runs.record_run(page="fine-tune", task="sentiment", model="openai-compatible/m", source="hosted",
                    device="hosted: server", approach="call an API", wall_s=9.0, api_cost_usd=0.03,
                    metrics={"accuracy": 0.9})
    enriched = costs.enrich(runs.fetch_runs(), costs.Rates(cpu_usd_per_h=3600.0))
    assert enriched["cost_usd"].tolist() == pytest.approx([0.002, 0.004, 0.03])  # not time x the CPU rate
    table = costs.training_table(enriched).set_index("approach")
    assert table.loc["call an API", "median training time (s)"] == 0.0
    assert table.loc["call an API", "best accuracy"] == 0.9
    row = costs.inference_table(enriched, calls=1000).set_index("family").loc["text"]
    assert row["$ per 1,000 calls"] == pytest.approx(1000 * 0.003)  # the median charge, x 1,000
    spec = charts.effort_impact_chart(enriched, "dollars").to_dict()
    assert "call an API" in spec["encoding"]["color"]["scale"]["domain"]


def test_inference_table_of_no_runs(enriched):
    assert costs.inference_table(enriched.iloc[0:0]).empty


@pytest.mark.parametrize(("effort", "field"), [("seconds", "effort_s"), ("dollars", "effort_usd")])
def test_effort_impact_chart(enriched, effort, field):
    spec = charts.effort_impact_chart(enriched, effort).to_dict()
    enc = spec["encoding"]
    assert spec["mark"]["type"] == "point"
    assert (enc["x"]["field"], enc["x"]["type"], enc["x"]["scale"]["type"]) == (field, "quantitative", "log")
    assert (enc["y"]["field"], enc["y"]["scale"]["domain"]) == ("impact", [0, 1])
    assert enc["color"]["field"] == "approach"
    assert enc["color"]["scale"]["domain"] == list(runs.APPROACHES)
    assert enc["shape"]["field"] == "engine"
    tooltips = {t["field"]: t.get("title") for t in enc["tooltip"]}
    assert {"model", "engine", "kind", "task", "load", "wall_s", "compute_s", "effort_s", "peak_mb"} <= set(tooltips)
    assert ("effort_usd" in tooltips) == (effort == "dollars")  # a chart in seconds does not depend on prices
    assert (tooltips["data_name"], tooltips["data_short"]) == ("data", "data fingerprint")
    assert (tooltips["added_mb"], tooltips["peak_mb"]) == ("memory added (MB)", "process peak (MB)")
    (rows,) = spec["datasets"].values()
    assert [r["model"] for r in rows] == ["minilm-l6", "minilm-l6"]  # only runs with a quality figure
    assert [(r["data_name"], r["data_short"]) for r in rows] == [(costs.UNNAMED_DATA, "3e23e816"),
                                                                 ("upload: reviews.csv", "ca978112")]
    assert "(s, log scale)" in enc["x"]["title"] or "($, log scale)" in enc["x"]["title"]


def test_effort_must_be_known(enriched):
    with pytest.raises(ValueError, match="seconds, dollars"):
        charts.effort_impact_chart(enriched, "minutes")


def test_latency_chart(enriched):
    spec = charts.latency_chart(enriched).to_dict()
    enc = spec["encoding"]
    assert spec["mark"]["type"] == "circle"
    assert (enc["x"]["field"], enc["x"]["scale"]["type"]) == ("wall_s", "log")
    assert enc["y"]["field"] == "model" and enc["color"]["field"] == "engine"
    shown = [e for e in ["torch", "onnxruntime", "ctranslate2", "llama.cpp", "hosted"] if e in set(enriched["engine"])]
    assert enc["color"]["scale"]["domain"] == shown  # the legend lists only engines that ran, in a fixed order
    assert enc["color"]["scale"]["range"] == [charts.ENGINE_COLOURS[e] for e in shown]
    tooltips = {t["field"]: t.get("title") for t in enc["tooltip"]}
    assert {"engine", "family"} <= set(tooltips)
    assert (tooltips["data_name"], tooltips["data_short"]) == ("data", "data fingerprint")
    assert (tooltips["added_mb"], tooltips["peak_mb"]) == ("memory added (MB)", "process peak (MB)")
    (rows,) = spec["datasets"].values()
    assert len(rows) == 3 and {r["model"] for r in rows} == {"distilbert-sst2", "minilm-l6"}
    assert rows[0]["data_name"] == costs.PAGE_INPUT


def test_latency_chart_has_room_for_every_model_name(enriched):
    """Vega cuts axis labels at 180 px by default: "minilm-sentiment@int8" read "minilm-sentimen…"."""
    axis = charts.latency_chart(enriched).to_dict()["encoding"]["y"]["axis"]
    longest = max(len(f"{key}@int8") for key in CATALOG)
    assert axis["labelLimit"] >= 12 * longest  # a generous 12 px a character


def test_charts_of_no_runs(enriched):
    empty = enriched.iloc[0:0]
    for chart in (charts.effort_impact_chart(empty), charts.latency_chart(empty)):
        (rows,) = chart.to_dict()["datasets"].values()
        assert rows == []


def test_charts_keep_the_most_recent_points(enriched, monkeypatch):
    monkeypatch.setattr(charts, "MAX_POINTS", 2)
    many = pd.concat([enriched] * 3, ignore_index=True)
    (rows,) = charts.latency_chart(many).to_dict()["datasets"].values()
    assert len(rows) == 2


def test_approaches_that_trained_nothing_are_drawn_at_their_held_out_inference(tmp_path, monkeypatch):
    """'call an API' and 'use as is' train nothing (0 s): each is drawn at the time its held-out split took, so
    every run with a quality figure is a point; one with no effort at all is named in what was left out."""
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(tmp_path / "runs.sqlite"))
    for approach, per_item in (("call an API", 0.25), ("use as is", 0.01), ("transfer learning", 0.01)):
        runs.record_run(page="fine-tune", task="text-classification", model="minilm-l6", source="package", device="cpu",
                        kind="training", approach=approach, wall_s=4.0 if approach == "transfer learning" else 0.0,
                        params={"test_examples": 40}, metrics={"accuracy": 0.8, "latency_per_example_s": per_item})
    runs.record_run(page="fine-tune", task="text-classification", model="old", source="package", device="cpu",
                    kind="training", approach="use as is", wall_s=0.0, metrics={"accuracy": 0.5})  # no latency kept
    enriched = costs.enrich(runs.fetch_runs(), costs.Rates(cpu_usd_per_h=0.36))
    for effort in ("seconds", "dollars"):
        (rows,) = charts.effort_impact_chart(enriched, effort).to_dict()["datasets"].values()
        assert sorted(r["approach"] for r in rows) == ["call an API", "transfer learning", "use as is"]
        assert list(charts.left_out(enriched, effort)["model"]) == ["old"]
    by_approach = {r["approach"]: r for r in rows}
    assert by_approach["call an API"]["effort_s"] == pytest.approx(10.0)  # 40 held-out items x 0.25 s
    assert by_approach["transfer learning"]["effort_s"] == pytest.approx(4.0)  # its training time
    assert by_approach["use as is"]["load"] == "none (already in memory)"  # not "null"
