"""Fine-tune page (not built yet)."""
import streamlit as st

st.title("Fine-tune")
st.info("Coming next: Upload labelled data and compare using a model as is, a head on frozen features, fine-tuning and training from scratch on the same held-out split. This page does not run any model yet.", icon=":material/construction:")
