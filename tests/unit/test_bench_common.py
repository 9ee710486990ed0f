"""The benchmark plumbing's arithmetic: verdicts, pair summaries and our-own-overhead accounting (no timings asserted)."""
import time
import types

from bench.common import MET, NOISE, NOT_MET, compared, own_overhead_s, summarise, verdict


def test_verdict_tells_met_from_within_noise_from_not_met():
    assert verdict(1.02, 1.0) == MET
    assert verdict(0.98, 1.0, spread=(0.95, 1.01)) == NOISE
    assert verdict(0.98, 1.0, spread=(0.95, 0.99)) == NOT_MET
    assert verdict(1.7, 2.0, at_most=True) == MET
    assert verdict(2.1, 2.0, spread=(1.9, 2.2), at_most=True) == NOISE
    assert verdict(None, 1.0) == ""


def test_summary_takes_the_median_pair_ratio_and_its_quartiles():
    pairs = [(1.0, 2.0), (1.0, 1.0), (2.0, 1.0), (1.0, 1.5), (1.0, 1.2)]  # ratios 2, 1, 0.5, 1.5, 1.2
    result = summarise(pairs, peak_mb=10.0)
    assert result.ratio == 1.2
    assert (result.low, result.high) == (1.0, 1.5)
    assert result.ours_s == 1.0 and result.reference_s == 1.2
    row = compared("w", result, unit="ms", scale=1000, need=1.5)
    assert row["ours"] == 1000 and row["status"] == NOISE and row["spread"] == "1.000–1.500"


def test_own_overhead_counts_only_the_time_outside_the_wrapped_call(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    def advance(seconds):
        clock[0] += seconds

    library = types.SimpleNamespace(work=lambda: advance(5.0))

    def ours():
        advance(0.5)
        library.work()
        advance(0.25)

    assert own_overhead_s(ours, library, "work", runs=3) == 0.75  # not the 5 s inside the library
    clock[0] = 0.0
    library.work()
    assert clock[0] == 5.0 and library.work.__name__ == "<lambda>"  # unwrapped afterwards
