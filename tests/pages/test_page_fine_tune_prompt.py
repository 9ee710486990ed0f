"""The Fine-tune page's "prompt with examples" arm through AppTest: the tiny BERT as "minilm-l6" and the tiny Llama
as the prompt arm's SmolLM2 (in memory, so it runs on PyTorch)."""
import json

import pytest

from core import registry, runs
from core.finetune import arms
from tests.support import tiny
from tests.support.apptest import app_at, fine_tune_page, problems, run_and_wait, table_with


@pytest.fixture
def page(fresh_cache):
    registry.install("minilm-l6", tiny.bert_encoder())
    registry.install(arms.PROMPT_MODEL, tiny.llama_lm(context=2048))
    with fine_tune_page() as at:
        yield at


def test_prompt_arm_is_opt_in_and_runs_beside_transfer_with_its_k_curve_verdict_and_record(page):
    assert page.checkbox(key="ft_use_prompt").value is False  # minutes of a language model on a CPU: opt in
    for arm in ("zero_shot", "fine_tune", "scratch"):
        page.checkbox(key=f"ft_use_{arm}").set_value(False)
    page.checkbox(key="ft_use_prompt").set_value(True).run()
    page.select_slider(key="ft_pr_k").set_value(1).run()
    assert page.radio(key="ft_pr_where").value == "This server"
    assert any("PyTorch" in c.value and "scored after the prompt" in c.value for c in page.caption)
    run_and_wait(page)
    assert not problems(page)
    results = page.session_state["ft_job"].results()
    prompt = results["prompt"]
    assert prompt.params["per_class"] == 1 and prompt.train_examples == 2
    assert "Prompting smollm2-135m with 2 labelled examples (1 per class)" in page.success[0].value
    table = table_with(page, "arm")
    assert list(table["arm"]) == [arms.TITLES["prompt"], arms.TITLES["transfer"]]
    assert table["prompt tokens / item"].iloc[0] > 0
    assert [r["examples_per_class"] for r in results["prompt-curve"]][:2] == [0, 1]
    charts = [json.loads(c.proto.spec) for c in page.get("vega_lite_chart")]
    curve = next(c for c in charts if "errorbar" in json.dumps(c))
    assert {"prompt with examples", "transfer learning"} <= set(curve["encoding"]["color"]["scale"]["domain"])
    stored = runs.fetch_runs(session_id=page.session_state["session_id"])
    assert set(stored["approach"]) == {"prompt with examples", "transfer learning"}


def test_homes_prompt_link_arrives_with_the_prompt_arm_ticked(fresh_cache):
    at = app_at("app_pages/fine_tune.py", 90)
    at.query_params["arm"] = "prompt"
    at.run()
    assert not problems(at)
    assert at.checkbox(key="ft_use_prompt").value is True


def test_prompt_arm_on_a_hosted_endpoint_shows_the_endpoint_form(page):
    page.checkbox(key="ft_use_prompt").set_value(True).run()
    page.radio(key="ft_pr_where").set_value("Hosted API").run()
    assert not problems(page)
    assert page.number_input(key="ft_pr_context").value == arms.PromptSettings().context_tokens
    assert page.text_input(key="ft_pr_api_openai-compatible_base_url") is not None
