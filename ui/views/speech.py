"""Drawing transcripts, here or hosted (one :class:`core.speech.Transcript` type), and the two-backend comparison."""
from __future__ import annotations

import streamlit as st

from core import registry, speech
from core.catalog import ModelSpec
from ui.common import show_measurement
from ui.hosted import LOCAL, comparison
from ui.run_on import View


def load_checked(spec: ModelSpec, options: speech.TranscribeOptions) -> registry.Loaded:
    """The model, loaded only once the options are known to suit it (InputError, with nothing loaded, otherwise)."""
    speech.check_options(spec, options)
    return registry.load(spec.key)


def show_transcript(t: speech.Transcript, reference: str | None, key: str, name: str = "") -> None:
    """Notes, warnings, language, transcript, coverage, segment table and downloads of one transcript;
    ``name`` tells its controls apart from another transcript's on the page."""
    for note in t.notes:
        st.info(note, icon=":material/info:")
    for warning in t.warnings:
        st.warning(warning, icon=":material/warning:")
    cols = st.columns(3)
    probability = "" if t.language_probability is None else f"p = {t.language_probability:.2f}"
    said = "named by the API" if t.backend == "hosted" else "not detected"
    cols[0].metric("Language", t.language, probability or said, delta_color="off", delta_arrow="off")
    cols[1].metric("Segments", len(t.segments))
    if reference is not None:
        cols[2].metric("WER vs known text", f"{speech.word_error_rate(reference, t.text):.1%}", help="Word error rate against the sample's known transcript.")
    st.session_state[f"{key}_text"] = t.text  # a keyed text area keeps its old value unless told
    st.text_area(f"Transcript{name}", height=110, key=f"{key}_text", disabled=not t.text)
    windows = " · ".join(f"{w.label} {w.status}" for w in t.windows)
    st.caption(f"Segments cover {t.coverage:.0%} of the speech (non-silent audio). Windows: {windows}.")
    if t.segments:
        st.dataframe(
            [{"start (s)": round(s.start, 2), "end (s)": round(s.end, 2), "text": s.text.strip()} for s in t.segments],
            hide_index=True, width="stretch",
        )
    downloads = st.container(horizontal=True)
    stem = f"transcript-{t.backend}" if name else "transcript"
    downloads.download_button(f"Download .txt{name}", t.text + "\n", file_name=f"{stem}.txt", mime="text/plain", key=f"{key}_txt")
    downloads.download_button(f"Download .srt{name}", speech.to_srt(t.segments), file_name=f"{stem}.srt", mime="application/x-subrip", key=f"{key}_srt")


def transcript_view(reference: str | None):
    """The Run-on draw function for transcripts checked against ``reference`` (None: no known text)."""
    def draw(t: speech.Transcript, view: View) -> None:
        name = "" if not view.narrow and view.side == LOCAL else (" (this server)" if view.side == LOCAL else " (hosted)")
        show_transcript(t, reference, view.key, name)
        show_measurement(t.measurement, view.narrow)

    return draw


def compare_hosted(price_per_minute: float):
    """The Run-on compare function: both runs' audio seconds per second, and the hosted price."""
    def compare(here: speech.Transcript, there: speech.Transcript) -> None:
        comparison(here.measurement, there.measurement, "audio s", speech.audio_rate(here.measurement),
                   speech.audio_rate(there.measurement))
        st.caption(f"Hosted price: ${price_per_minute:,.4f} per audio minute (edit it under Prices). The local run costs "
                   "this server's time and memory instead.")

    return compare


def show_comparison(both: speech.Comparison, reference: str | None) -> None:
    """Which backend was faster and by how much, how far their transcripts differ, then both transcripts."""
    a, b = both.transcripts
    fast, slow, ratio = (b, a, both.speed_ratio) if both.speed_ratio >= 1 else (a, b, 1 / both.speed_ratio)
    st.success(
        f"{fast.backend} ran {ratio:.1f}× faster than {slow.backend} (real-time factor "
        f"{fast.real_time_factor:.3f} vs {slow.real_time_factor:.3f}); the two transcripts differ "
        f"by a word error rate of {both.disagreement:.1%}.",
        icon=":material/compare_arrows:",
    )
    for column, t in zip(st.columns(2), both.transcripts):
        with column:
            st.subheader(t.backend)
            show_transcript(t, reference, f"speech_compare_{t.backend}", f" ({t.backend})")
    for t in both.transcripts:
        show_measurement(t.measurement)
