"""Charts: pure functions that take local data frames and return altair charts (no Streamlit).

One module per page (``summary``, ...); test them through ``chart.to_dict()``.
"""
