"""One-time preparation of model files (a conversion, an export), done once per machine and race-free.

Several Streamlit sessions, and several server processes, may ask for the same prepared folder at the
same moment. :func:`prepare_once` lets exactly one of them build it; the others wait, are told so, and
then use what the first one built. Reuse it for every such step (GGUF to safetensors, ONNX export,
CTranslate2 conversion):

    folder = prepare_once(cache / "smollm2-135m", lambda tmp: convert_into(tmp), on_progress=lambda p: print(p.message))

How it works:
- an exclusive ``fcntl.flock`` on ``<target>.lock`` (a sibling file, kept: it is empty and harmless) is
  held while checking and building; flock excludes other processes and other threads alike, and the
  kernel releases it when a holder dies;
- ``build`` fills a fresh temporary sibling folder, which is renamed onto ``target`` only when ``build``
  returns: ``target`` exists only complete, so its existence is the "done" mark;
- on any failure the temporary folder is deleted and the error propagates; the next call builds again;
- temporary folders left by a holder that was killed are deleted by the next holder of the lock.
"""
from __future__ import annotations

import fcntl
import hashlib
import shutil
import uuid
from pathlib import Path
from typing import Callable

from core.progress import OnProgress, Progress, ignore

PARTIAL_SUFFIX = ".partial"


def lock_path(target: Path) -> Path:
    """The lock file that guards ``target``'s preparation."""
    return target.with_name(target.name + ".lock")


def _partials(target: Path) -> list[Path]:
    """Temporary folders of ``target`` (ours are named ``.<name>.<random>.partial``)."""
    return [p for p in target.parent.glob(f".{target.name}.*{PARTIAL_SUFFIX}") if p.is_dir()]


def prepare_once(target: Path, build: Callable[[Path], None], on_progress: OnProgress = ignore,
                 what: str = "conversion") -> Path:
    """Return ``target``, building it first if no one has yet, once per machine.

    Args:
        target: the folder to produce (its parent is created if needed).
        build: fills the empty temporary folder it is given with what ``target`` must hold.
        on_progress: told one line (a :meth:`~core.progress.Progress.note`) while this call waits for another
            holder of the lock.
        what: the word for the step in that line (``conversion``, ``export`` ...).

    Returns:
        ``target``, complete.

    Raises:
        Whatever ``build`` raises; nothing is left behind but the (empty) lock file.
    """
    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(target), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_progress(Progress.note(f"Waiting for another session's {what} of {target.name} to finish ..."))
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if target.exists():  # the holder we waited for built it
                return target
            for stale in _partials(target):  # left by a holder that was killed mid-build
                shutil.rmtree(stale, ignore_errors=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")
            tmp.mkdir()  # with the usual permissions (mkdtemp's would be owner-only)
            try:
                build(tmp)
                tmp.rename(target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return target
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fingerprint(location: str) -> str:
    """What identifies weights at ``location``: the path, and the size and time of each file in it when it is a folder
    or file here (so weights replaced in place are exported again), else the name alone (a Hub id)."""
    path = Path(location)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    return location + "".join(f"|{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def weights_digest(model) -> str:
    """A short hash of a torch model's tensors: what identifies weights that exist only in memory (tests' tiny models)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
