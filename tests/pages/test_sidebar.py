"""The shared sidebar: drawn once per run, its model list one element, its figures redrawn after the page;
and the server setting that made every click pay for a full garbage collection."""
import tomllib
from pathlib import Path

from core.catalog import specs
from tests.support.apptest import app_at
from ui import sidebar

ROOT = Path(__file__).resolve().parents[2]


def _sidebar_captions(at) -> list[str]:
    return [c.value for c in at.sidebar.caption]


def test_model_list_is_one_element_naming_every_catalog_model_once():
    at = app_at("app_pages/home.py").run()
    assert not at.exception
    lists = [c for c in _sidebar_captions(at) if c.startswith("**text**")]
    assert len(lists) == 1, _sidebar_captions(at)
    for spec in specs():
        assert lists[0].count(f" {spec.title} — ") == 1, spec.title
    assert len([c for c in _sidebar_captions(at) if c.startswith("**Device:**")]) == 1
    assert len([c for c in _sidebar_captions(at) if c.startswith("**Memory:**")]) == 1


def test_availability_text_marks_what_is_here_and_what_is_not():
    rows = (sidebar.Available("text", "A", "a", "PyPI package"), sidebar.Available("speech", "B", "b", sidebar.NOT_HERE))
    text = sidebar._availability_text(rows)
    assert text == ("**text**  \n:material/check_circle: A — PyPI package\n\n"
                    "**speech**  \n:material/block: B — not here")


def test_refresh_outside_the_app_draws_nothing():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string("from ui.sidebar import refresh_sidebar\nrefresh_sidebar()\n").run()
    assert not at.exception and not at.sidebar.caption


def test_streamlit_does_not_collect_all_garbage_after_every_run():
    # With torch and a model loaded a full collection walks ~500k objects: about 0.3 s of CPU per click.
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
