"""core.measure: wall time and peak memory of a block."""
import numpy as np

from core import measure


def test_peak_memory_sees_a_short_lived_allocation():
    with measure.measured() as timing:
        block = np.ones(200 * 2**20 // 8)  # 200 MB, freed before the block ends
        del block
    assert timing.peak_mb >= measure.rss_mb() + 150
    assert timing.seconds > 0


def test_sampling_fallback_also_sees_the_peak(monkeypatch):
    monkeypatch.setattr(measure, "_reset_high_water", lambda: False)
    with measure.measured() as timing:
        block = np.ones(200 * 2**20 // 8)
        block += 1  # keep it alive for a few samples
        import time

        time.sleep(0.05)
        del block
    assert timing.peak_mb >= measure.rss_mb() + 150


def test_added_memory_is_the_peak_above_what_the_block_started_with():
    ballast = np.ones(300 * 2**20 // 8)  # held before and during the block: not added by it
    with measure.measured() as timing:
        block = np.ones(100 * 2**20 // 8)  # 100 MB, freed before the block ends
        del block
    added = measure.added_mb(timing.peak_mb)
    assert 80 <= added <= timing.peak_mb - 250  # the 300 MB ballast is in the peak, not in what was added
    assert timing.peak_mb.start_mb >= 250
    del ballast


def test_added_memory_is_unknown_for_a_plain_number():
    assert measure.added_mb(512.0) is None
    assert measure.added_mb(measure.PeakMB(512.0, 500.0)) == 12.0
    assert measure.added_mb(measure.PeakMB(480.0, 500.0)) == 0.0  # another session's reset can lower a peak


def test_a_peak_keeps_its_start_when_copied_or_pickled():
    import copy
    import pickle

    peak = measure.PeakMB(700.0, 650.0)
    for twin in (pickle.loads(pickle.dumps(peak)), copy.deepcopy(peak)):
        assert (float(twin), twin.start_mb) == (700.0, 650.0)


def loaded(load_s, size_mb=90.0):
    from core.catalog import get_spec
    from core.registry import Loaded, Resolution

    return Loaded(None, get_spec("minilm-sentiment"), Resolution("test", "in memory"), load_s, size_mb)


def test_measurement_adds_the_model_when_the_call_loaded_it():
    peak = measure.PeakMB(2192.0, 2142.0)  # the call itself added 50 MB to a 2,142 MB process
    cold = loaded(load_s=1.5).measurement(0.1, peak, device="cpu")
    warm = loaded(load_s=None).measurement(0.1, peak, device="cpu")
    assert (cold.peak_mb, cold.added_mb) == (2192.0, 140.0)
    assert (warm.peak_mb, warm.added_mb) == (2192.0, 50.0)
    assert loaded(load_s=None).measurement(0.1, peak, load_s=0.3, device="cpu").added_mb == 140.0
    assert loaded(load_s=None).measurement(0.1, 2192.0, device="cpu").added_mb is None  # no baseline known


def card(load_s, **memory):
    """The measurement card of one result (``added_mb=`` optional), rendered by AppTest."""
    from streamlit.testing.v1 import AppTest

    def page(load_s, memory):
        from core.measure import Measurement
        from ui.common import show_measurement

        show_measurement(Measurement("m", "org/m", "package", "cpu", load_s, 0.012, 2192.0, {"texts_per_s": 80.0},
                                     **memory))

    at = AppTest.from_function(page, args=(load_s, memory), default_timeout=30).run()
    assert not at.exception
    return {m.label: (m.value, m.help) for m in at.metric}


def test_card_says_cached_in_a_word_and_why_in_its_help():
    metrics = card(load_s=None)
    value, help_text = metrics["Load (first use)"]
    assert value == "cached"  # "already loaded" was cut to "already loa…" in a metric's width
    assert "already in memory" in help_text
    assert card(load_s=1.25)["Load (first use)"][0] == "1.25 s"


def test_card_labels_memory_added_apart_from_the_process_peak():
    metrics = card(load_s=None, added_mb=36.0)
    assert metrics["Memory added"][0] == "36 MB"
    assert metrics["Peak memory"][0] == "2,192 MB"
    assert "whole server process" in metrics["Peak memory"][1]
    assert "before it" in metrics["Memory added"][1]
    assert card(load_s=None)["Memory added"][0] == "—"
