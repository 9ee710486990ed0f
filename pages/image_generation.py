"""Image generation page (not built yet)."""
import streamlit as st

st.title("Image generation")
st.info("Coming next: Generate images from a prompt with a CPU-friendly diffusion model, and with a small generator this project trains itself. This page does not run any model yet.", icon=":material/construction:")
