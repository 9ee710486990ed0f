"""The per-click benchmark's helpers and the reliability report's real-model section, on made-up inputs."""
import cProfile
import json

from bench import clicks
from scripts import reliability_report


def test_result_card_durations_are_read_in_seconds():
    assert clicks._seconds("12 ms") == 0.012
    assert clicks._seconds("1,234 ms") == 1.234
    assert clicks._seconds("1.50 s") == 1.5
    assert clicks._seconds("already loaded") is None


def _work() -> int:
    return sum(i * i for i in range(20_000))


def test_profile_rows_name_the_script_run_and_divide_by_the_clicks(tmp_path):
    files = []  # this test's own functions are in the repository, so they count as the project's
    for n in range(2):
        profiler = cProfile.Profile()
        profiler.runcall(_work)
        files.append(tmp_path / f"{n}.prof")
        profiler.dump_stats(files[-1])
    rows = clicks._profile_rows(clicks.ACTIONS[0], files, clicks=2)
    assert rows[0]["workload"].endswith("whole script run")
    named = [r for r in rows if "_work" in r["workload"] and "hottest" not in r["workload"]]
    assert len(named) == 1 and named[0]["calls"] == 1 and named[0]["ours"] > 0


def test_real_model_section_tabulates_the_last_bench_run(tmp_path):
    path = tmp_path / "results.json"
    assert reliability_report.real_model_section(path)[2].startswith("Not measured yet")
    people = [{"workload": "32 session(s) × 8 classify (MiniLM head)", "ours": 18.8, "reference": 31.2, "unit": "requests/s",
               "p50_s": 1.6, "p95_s": 2.4, "errors": 0, "loads": "minilm-sentiment: 1", "cpu_ms_per_request": 48.3,
               "target": ">= 15 req/s, p95 <= 3 s", "status": "met"}]
    click = [{"workload": "text: Classify", "ours": 37.0, "reference": 24.8, "minimal_ms": 4.7, "model_ms": 16.5,
              "target": "<= 75 ms", "status": "met"}, {"workload": "profile · text: Classify · whole script run", "ours": 90.0}]
    path.write_text(json.dumps({"meta": {"mode": "full", "when": "today", "families_run": "clicks,many_people"},
                                "results": {"many_people": people, "clicks": click}}))
    text = "\n".join(reliability_report.real_model_section(path))
    assert "| 32 session(s) × 8 classify (MiniLM head) | 18.8 requests/s | 31.2 | 1.60 s / 2.40 s | 0 |" in text
    assert "| text: Classify | 37 | 24.8 | 4.7 ms | 16.5 ms | <= 75 ms | met |" in text
    assert "whole script run" not in text
    assert reliability_report._real_model_summary(path).startswith("32 session(s) × 8 classify (MiniLM head): 18.8 requests/s")
