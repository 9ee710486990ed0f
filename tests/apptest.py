"""Open a page of the app the way a browser does: app.py runs first, so st.navigation registers the pages."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def app_at(page_script: str, timeout: float = 90) -> AppTest:
    """An AppTest of app.py switched to ``page_script`` (e.g. "app_pages/text.py"); call ``.run()`` next."""
    at = AppTest.from_file(APP, default_timeout=timeout).run()
    return at.switch_page(page_script)
