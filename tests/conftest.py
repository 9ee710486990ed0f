"""Test set-up: no network, a private data folder, and fixtures for tiny models."""
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_DATA = tempfile.mkdtemp(prefix="ubt-test-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["UBT_OFFLINE"] = "1"
# One torch thread: tiny models run faster on one, and the suite shares a small machine.
os.environ.setdefault("UBT_THREADS", "1")
# float32 on every CPU, so no result depends on the machine (an AMX CPU would otherwise probe bf16 at each first
# load); tests/unit/test_precision.py tests the decision itself, on recorded CPUs and with the override.
os.environ.setdefault("UBT_BF16", "0")
# No background preload in tests (each AppTest runs app.py): a test loads what it uses.
os.environ.setdefault("UBT_PRELOAD", "")
os.environ.setdefault("UBT_DATA_DIR", _DATA)
os.environ.setdefault("UBT_RUNS_DB", str(Path(_DATA) / "runs.sqlite"))
os.environ.pop("UBT_RUNS_URL", None)  # the suite's runs go to its own stores, never to a database set for the app
# Converted GGUF weights are worth keeping between test runs on one machine.
os.environ.setdefault("UBT_CONVERTED_DIR", str(Path.home() / ".cache" / "use-before-you-train-tests"))

import pytest  # noqa: E402

from core import registry  # noqa: E402


@pytest.fixture
def fresh_cache():
    """An empty shared model cache before and after the test."""
    registry.CACHE.clear()
    yield registry.CACHE
    registry.CACHE.clear()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL on 127.0.0.1 for the whole session (tests/support/postgres_server.py); skipped, with the reason,
    where it cannot start."""
    from tests.support.postgres_server import Unavailable, start

    try:
        server = start()
    except Unavailable as exc:
        pytest.skip(f"no PostgreSQL here: {exc}")
    yield server
    server.close()


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server on 127.0.0.1 with the packaged SmolLM2, wanting the planted key."""
    from tests.support.openai_servers import KEY, llama_server

    with llama_server(api_key=KEY, log_path=tmp_path_factory.mktemp("llama") / "server.log") as url:
        yield url
