"""Home page (placeholder until the guide lands)."""
import streamlit as st

st.title("Use before you train")
