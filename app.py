"""Entry point: routes the seven pages and draws the shared sidebar. Run: streamlit run app.py"""

import streamlit as st

from core.config import get_settings, set_openmp_wait
from core.engines import preload
from core.registry import preload_in_background
from ui.sidebar import refresh_sidebar, sidebar

# Before torch or llama.cpp loads (none of the imports above loads them): idle OpenMP threads stop spinning
# within ~0.5 ms. Each script run is a new thread with its own OpenMP team, and spinning teams multiplied a
# Classify click's server CPU on 2 cores (bench/results.md, clicks).
set_openmp_wait()

st.set_page_config(page_title="Use before you train", page_icon=":material/model_training:", layout="wide")

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/text.py", title="Text", icon=":material/article:", url_path="text"),
    st.Page("app_pages/image_text.py", title="Image-text", icon=":material/image_search:", url_path="image-text"),
    st.Page("app_pages/speech.py", title="Speech", icon=":material/mic:", url_path="speech"),
    st.Page("app_pages/image_generation.py", title="Image generation", icon=":material/palette:", url_path="image-generation"),
    st.Page("app_pages/fine_tune.py", title="Fine-tune", icon=":material/tune:", url_path="fine-tune"),
    st.Page("app_pages/summary.py", title="Summary", icon=":material/monitoring:", url_path="summary"),
]

# UBT_PRELOAD (default auto: the default sentiment model), once per server process, not blocking the first page
preload_in_background(get_settings().preload, preload)
page = st.navigation(PAGES)
sidebar()
page.run()
refresh_sidebar()  # device and memory again after the page, so they include what it loaded (skipped after st.stop)
