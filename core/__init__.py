"""Core of "Use before you train": models, measurements and data, importable without Streamlit."""
