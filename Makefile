# Two commands: `make run` (install the app, start it) and `make test` (install the app and the test tools, run the tests).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
PORT   ?= 8501

.PHONY: run test bench browser postgresql clean

# requirements.txt is Community Cloud's file: torch and torchvision from PyTorch's CPU wheel index, which
# this project's machines cannot reach (pip would wait on it). Here the same pins come from PyPI: the index
# line and the +cpu labels are dropped (tests/test_requirements.py checks the versions installed here match).
$(STAMP): requirements.txt requirements-offline.txt
	$(PYTHON) -m venv $(VENV)
	sed -e '/^--extra-index-url/d' -e 's/+cpu$$//' requirements.txt > $(VENV)/requirements-local.txt
	$(BIN)/pip install -r $(VENV)/requirements-local.txt
	$(BIN)/pip install --no-deps --require-hashes -r requirements-offline.txt
	touch $@

# What only the tests need, above all llama.cpp's server, which compiles: never on `make run`'s path.
$(TEST_STAMP): $(STAMP) requirements-dev.txt requirements-ray.txt
	$(BIN)/pip install -r $(VENV)/requirements-local.txt -r requirements-dev.txt -r requirements-ray.txt
	touch $@

# Debian's Chromium and its driver, for the browser test (skipped when already there).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }

# Debian's PostgreSQL, for the run store's tests (a server they start in a temporary folder); skipped when
# initdb is already on PATH or under /usr/lib/postgresql/*/bin.
postgresql:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql; }

run: $(STAMP)
	$(BIN)/streamlit run app.py --server.port $(PORT)

test: $(TEST_STAMP) browser postgresql
	$(BIN)/python -m pytest

bench: $(TEST_STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV)
