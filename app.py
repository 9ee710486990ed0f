"""Entry point: routes the seven pages and draws the shared sidebar. Run: streamlit run app.py"""
import streamlit as st

from core.config import get_settings
from core.registry import preload_in_background
from ui.downloads import download_progress
from ui.sidebar import show_memory, sidebar

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

preload_in_background(get_settings().preload)  # UBT_PRELOAD=key,key: once per server process
page = st.navigation(PAGES)
memory = sidebar()
with download_progress():  # a model download anywhere on the page shows a progress bar there
    page.run()
show_memory(memory)  # again after the page, so it includes what the page just loaded (skipped after st.stop)
