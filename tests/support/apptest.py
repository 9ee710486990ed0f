"""Pages through Streamlit's AppTest: open one the way a browser does (app.py runs first, so st.navigation registers
the pages), and read Summary's tables back."""
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def app_at(page_script: str, timeout: float = 90) -> AppTest:
    """An AppTest of app.py switched to ``page_script`` (e.g. "app_pages/text.py"); call ``.run()`` next."""
    at = AppTest.from_file(APP, default_timeout=timeout).run()
    return at.switch_page(page_script)


def summary_page(session: str = "me") -> AppTest:
    """The Summary page on its own, run as browser session ``session``."""
    at = AppTest.from_file(str(Path(APP).parent / "app_pages" / "summary.py"), default_timeout=30)
    at.session_state["session_id"] = session
    return at.run()


def table(at: AppTest, title: str):
    """The table that follows a subheader, its figures read back as numbers ("1,234" -> 1234.0, "—" -> NaN)."""
    elements = list(at.main)
    heading = next(i for i, e in enumerate(elements) if e.type == "subheader" and e.value == title)
    shown = next(e for e in elements[heading:] if e.type == "table").value
    for column in shown.columns:
        text = shown[column].astype(str)
        figures = pd.to_numeric(text.str.replace(",", ""), errors="coerce")
        if (figures.notna() | text.eq("—")).all():
            shown[column] = figures
    return shown
