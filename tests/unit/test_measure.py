"""core.measure: wall time and peak memory of a block. Peak readings run in a fresh process, so they do not depend
on what the test process already holds."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from core import measure


ROOT = Path(__file__).resolve().parents[2]


def fresh(body: str) -> dict:
    """Run ``body`` in a fresh Python process (so what this test process already holds changes nothing) and
    return the dict it prints as JSON last."""
    code = "import json, threading, time\nimport numpy as np\nfrom core import measure\n" + textwrap.dedent(body)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_memory_sees_a_short_lived_allocation():
    seen = fresh("""
        with measure.measured() as timing:
            block = np.ones(200 * 2**20 // 8)  # 200 MB, freed before the block ends
            del block
        print(json.dumps({"peak": timing.peak_mb, "after": measure.rss_mb(), "seconds": timing.seconds}))
    """)
    assert seen["peak"] >= seen["after"] + 150
    assert seen["seconds"] > 0


def test_sampling_fallback_also_sees_the_peak():
    seen = fresh("""
        measure._reset_high_water = lambda: False  # a kernel without a resettable mark
        with measure.measured() as timing:
            block = np.ones(200 * 2**20 // 8)
            block += 1
            time.sleep(0.05)  # alive for a few samples
            del block
        print(json.dumps({"peak": timing.peak_mb, "after": measure.rss_mb()}))
    """)
    assert seen["peak"] >= seen["after"] + 150


def test_added_memory_is_the_peak_above_what_the_block_started_with():
    seen = fresh("""
        ballast = np.ones(300 * 2**20 // 8)  # held before and during the block: not added by it
        with measure.measured() as timing:
            block = np.ones(100 * 2**20 // 8)  # 100 MB, freed before the block ends
            del block
        print(json.dumps({"peak": timing.peak_mb, "start": timing.peak_mb.start_mb, "added": measure.added_mb(timing.peak_mb)}))
    """)
    assert 80 <= seen["added"] <= seen["peak"] - 250  # the 300 MB ballast is in the peak, not in what was added
    assert seen["start"] >= 250


def test_a_200_mb_call_is_seen_in_a_server_holding_over_1_gb_while_other_sessions_measure():
    """As in a long-running server: 1.2 GB of models held, an earlier peak higher still, and other sessions'
    calls starting and ending (each resetting nothing while another measures) all through this call."""
    seen = fresh("""
        held = np.ones(1200 * 2**20 // 8)  # the models a server holds
        spike = np.ones(600 * 2**20 // 8); del spike  # an earlier, higher peak
        stop = threading.Event()

        def other_sessions():
            while not stop.is_set():
                with measure.measured():
                    small = np.ones(2**20 // 8); del small

        others = [threading.Thread(target=other_sessions) for _ in range(2)]
        for thread in others:
            thread.start()
        time.sleep(0.05)
        readings = []
        for _ in range(5):
            with measure.measured() as timing:
                block = np.ones(200 * 2**20 // 8)  # this call's 200 MB, freed before it ends
                time.sleep(0.02)
                del block
            readings.append(measure.added_mb(timing.peak_mb))
        stop.set()
        for thread in others:
            thread.join()
        print(json.dumps({"added": readings, "held": measure.rss_mb()}))
    """)
    assert seen["held"] >= 1000
    assert min(seen["added"]) >= 150, seen["added"]  # never lowered by another session's reset


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
