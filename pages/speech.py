"""Speech page (not built yet)."""
import streamlit as st

st.title("Speech")
st.info("Coming next: Transcribe an upload or a microphone recording with Whisper, comparing openai-whisper and faster-whisper on the same clip. This page does not run any model yet.", icon=":material/construction:")
