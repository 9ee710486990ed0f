"""llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server``) with the app's weight-repack choice for
this CPU (:func:`core.cpu.llamacpp_repack`: off where AMX is, whose repack segfaults on the first decode).

Run: ``python -m tests.support.llama_server_main --model <gguf> --host 127.0.0.1 --port <port>`` (the server's own flags).
"""
import runpy

from core.cpu import llamacpp_repack, this_cpu
from core.engines.llamacpp import extra_buffers

if __name__ == "__main__":
    with extra_buffers(llamacpp_repack(this_cpu())[0]):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
