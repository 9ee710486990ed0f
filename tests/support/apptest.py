"""Pages through Streamlit's AppTest: open one the way a browser does (app.py runs first, so st.navigation registers
the pages), and read Summary's tables back."""
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
JOB_WAIT_S = 120  # an upper bound for a background job on a busy machine, not a speed assertion


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


def problems(at) -> list:
    """Exceptions and error boxes the page shows."""
    return [e.value for e in at.exception] + [e.value for e in at.error]


def table_with(at, column: str):
    """The first dataframe on the page with this column."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def run_and_wait(at) -> None:
    """Click Fine-tune's Run, wait for its background job to end, and draw the page again."""
    at.button(key="ft_run").click().run()
    job = at.session_state["ft_job"]
    assert job.join(JOB_WAIT_S), "the training job did not end"
    at.run()


@contextmanager
def fine_tune_page():
    """The Fine-tune page, run once (install its models first), with an empty feature cache; a job it started is
    stopped on the way out."""
    from core.finetune import features

    features.FEATURES.clear()
    at = app_at("app_pages/fine_tune.py", 90)
    try:
        yield at.run()
    finally:
        job = at.session_state["ft_job"] if "ft_job" in at.session_state else None
        if job is not None:
            job.stop()
            job.join(JOB_WAIT_S)
        features.FEATURES.clear()
