"""Fine-tune's held-out share and Home's guide answers rerun only their own section (``st.fragment``), not the
page and the sidebar: a click's server cost is that section's (bench/clicks.py measures it).

Against a real server (tests/support/serve_tiny.py, no models needed) with tests/support/st_session.py, which asks for a
fragment's run when the changed widget is inside one, as the browser does.
"""
from __future__ import annotations

import pytest

from tests.support.serve_tiny import tiny_server
from tests.support.st_session import Session

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with tiny_server(tmp_path_factory.mktemp("section-fragments"), tiny=False) as running:
        yield running
        log = running.log()
    assert "Traceback" not in log, log[-4000:]


def _headings(run) -> list[str]:
    return [h.body for h in run.of_type("heading")]


def _texts(run) -> list[str]:
    return [m.body for m in run.of_type("markdown")]


def _drawn_ids(run) -> set[str]:
    return {getattr(e, e.WhichOneof("type")).id for e in run.elements
            if hasattr(getattr(e, e.WhichOneof("type")), "id")}


def _only_the_section_ran(run) -> None:
    assert run.status == "FINISHED_FRAGMENT_RUN_SUCCESSFULLY" and run.fragment_id, run.status
    assert run.ok, (run.exceptions, run.alerts("ERROR"))
    assert not any(h.startswith(("Fine-tune", "Use before you train")) for h in _headings(run)), "the page title ran"
    assert not any(t.startswith(("**Device:**", "**Memory:**")) for t in _texts(run)), "the sidebar ran"


def test_held_out_share_reruns_only_the_split(server):
    with Session(server.url, "fine-tune", timeout_s=300) as session:
        page = session.run()
        assert page.ok, (page.status, page.exceptions)
        assert page.of_type("dataframe") and page.of_type("vega_lite_chart")  # the preview: table and class balance
        before = next(t for t in _texts(page) if t.startswith("Every arm is scored"))
        change = session.run({"ft_test_size": [0.3]})
        again = session.run()
    _only_the_section_ran(change)
    assert session.widget_id("ft_run") not in _drawn_ids(change), "the arms section ran"
    assert not change.of_type("dataframe") and not change.of_type("vega_lite_chart"), "the preview ran"
    after = next(t for t in _texts(change) if t.startswith("Every arm is scored"))
    assert "(25%" in before and "(30%" in after  # the split follows the share
    assert again.status == "FINISHED_SUCCESSFULLY" and not again.exceptions
    assert any("(30%" in t for t in _texts(again)) and session.widget_id("ft_run") in _drawn_ids(again)


def test_guide_answer_reruns_only_the_guide(server):
    with Session(server.url, "") as session:
        page = session.run()
        assert page.ok and "Use before you train" in _headings(page)
        answer = session.run({"guide_model": ["No"]})
    _only_the_section_ran(answer)
    assert any(a.startswith("**Train, starting from what exists") for a in answer.alerts("SUCCESS"))
    assert [link.label for link in answer.of_type("page_link")] == ["Open Fine-tune"]
