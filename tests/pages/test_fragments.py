"""A click reruns only the section it belongs to (``st.fragment``), and nothing else on the page is lost.

Against a real server (tests/support/serve_tiny.py, tiny DistilBERT) with tests/support/st_session.py, which asks for a
fragment's run when the clicked widget is inside one, as the browser does; and through AppTest, which
always reruns the whole page, for the state of the other tab.
"""
from __future__ import annotations

import pytest

from core import registry
from tests.support import tiny
from tests.support.apptest import app_at
from tests.support.serve_tiny import tiny_server
from tests.support.st_session import Session

PROMPT = "Once upon a time, in a city made of glass,"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with tiny_server(tmp_path_factory.mktemp("fragments")) as running:
        yield running
        log = running.log()
    assert "Traceback" not in log, log[-4000:]


def _headings(run) -> list[str]:
    return [h.body for h in run.of_type("heading")]


def _captions(run) -> list[str]:
    return [m.body for m in run.of_type("markdown")]


@pytest.mark.browser
def test_classify_reruns_only_the_sentiment_section(server):
    with Session(server.url, "text") as session:
        page = session.run()
        assert page.ok and any(h.startswith("Text") for h in _headings(page))
        assert any(c.startswith("**text**") for c in _captions(page)), "no model list in the sidebar"
        session.run({"generation_prompt": PROMPT})
        first = session.run({"sentiment_text": "I love it."}, click="sentiment_run")  # loads the model
        click = session.run({"sentiment_text": "I love this movie."}, click="sentiment_run")
        again = session.run()  # a whole-page run afterwards draws everything, the result included
    for run in (first, click):
        assert run.status == "FINISHED_FRAGMENT_RUN_SUCCESSFULLY" and run.fragment_id, run.status
        assert run.ok and "Label" in run.metrics(), (run.exceptions, run.alerts("ERROR"))
        drawn = {getattr(e, e.WhichOneof("type")).id for e in run.elements if hasattr(getattr(e, e.WhichOneof("type")), "id")}
        assert not _headings(run), "the page title was redrawn: the whole page ran"
        assert not any(c.startswith("**text**") for c in _captions(run)), "the sidebar's model list was redrawn"
        assert session.widget_id("sentiment_run") in drawn
        assert session.widget_id("generation_prompt") not in drawn, "the generation tab was redrawn"
        # the section redraws the sidebar's figures, so they count what its click loaded
        assert any(c.startswith("**Memory:**") for c in _captions(run)), "the sidebar's memory figures are stale"
    assert again.status == "FINISHED_SUCCESSFULLY" and not again.exceptions
    assert "Label" in again.metrics()
    assert any(c.startswith("**Device:**") for c in _captions(again))
    assert any(c.startswith("**text**") for c in _captions(again))


@pytest.fixture
def page(fresh_cache):
    registry.install("distilbert-sst2", tiny.distilbert_classifier())
    registry.install("smollm2-135m", tiny.llama_lm())
    return app_at("app_pages/text.py", 60).run()


def test_classify_shows_the_result_and_keeps_the_generation_tab(page):
    page.text_area(key="generation_prompt").input(PROMPT)
    page.slider(key="generation_max_new_tokens").set_value(12).run()
    page.selectbox(key="sentiment_model").select(registry.CACHE.snapshot()[0].spec)
    page.text_area(key="sentiment_text").input("I love this movie.")
    page.button(key="sentiment_run").click().run()
    assert not page.exception and not page.error
    assert page.metric[0].label == "Label" and page.metric[0].value in {"Positive", "Negative"}
    assert page.text_area(key="generation_prompt").value == PROMPT
    assert page.slider(key="generation_max_new_tokens").value == 12
    page.toggle(key="sentiment_many").set_value(False).run()  # any later run keeps the result on the page
    assert page.metric[0].label == "Label"


@pytest.mark.browser
def test_label_images_reruns_only_the_labels_tab_not_the_images_above(server):
    with Session(server.url, "image-text") as session:
        page = session.run()
        assert page.ok and any(h.startswith("Image") for h in _headings(page))
        click = session.run(click="it_label_run")
    assert click.status == "FINISHED_FRAGMENT_RUN_SUCCESSFULLY" and click.fragment_id, click.status
    assert click.ok, (click.exceptions, click.alerts("ERROR"))
    assert not _headings(click), "the page title and the Images heading were redrawn: the whole page ran"
    assert any(c.startswith("**Memory:**") for c in _captions(click)), "the sidebar's memory figures are stale"
    drawn = {getattr(e, e.WhichOneof("type")).id for e in click.elements if hasattr(getattr(e, e.WhichOneof("type")), "id")}
    assert session.widget_id("it_label_run") in drawn and session.widget_id("it_caption_run") not in drawn
