"""Image-text page (not built yet)."""
import streamlit as st

st.title("Image-text")
st.info("Coming next: Label any image with CLIP zero-shot (your own labels) and caption it with BLIP, with load time, latency and images/s measured. This page does not run any model yet.", icon=":material/construction:")
