"""A runner loader that dies the way a native engine's crash does: the process receives SIGSEGV while loading.
Used by tests/system/test_runner.py through the real runner process (core/engines/runner.py)."""
import os
import signal


def load(*_args):
    os.kill(os.getpid(), signal.SIGSEGV)
