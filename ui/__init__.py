"""Streamlit helpers shared by the pages: sidebar, result cards, friendly errors, run recording."""
