"""Make the Speech page's sample clip: a known English sentence spoken by espeak-ng, as 16 kHz FLAC.

Writes assets/audio/sample.flac (the clip), sample.txt (its transcript) and sample.json (how it was
made). The files are committed, so the app never needs espeak-ng; only this script does
(``apt-get install -y espeak-ng``). Run: ``.venv/bin/python scripts/make_sample_audio.py``
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import audio  # noqa: E402

OUT = ROOT / "assets" / "audio"
TEXT = (
    "Before you train a new model, try one that already exists. "
    "A pretrained model can often answer your question today, on your own computer."
)
VOICE = "en-us"
WORDS_PER_MINUTE = 140


def main() -> None:
    """Synthesise, resample to 16 kHz mono, and write the clip, its transcript and its record."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("espeak-ng is not installed: apt-get install -y espeak-ng")
    command = [espeak, "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "--stdout", TEXT]
    wav = subprocess.run(command, capture_output=True, check=True).stdout
    clip = audio.decode(wav, "espeak-ng output")
    flac = audio.encode(clip.samples, audio.SAMPLE_RATE, "flac", "flac")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sample.flac").write_bytes(flac)
    (OUT / "sample.txt").write_text(TEXT + "\n", encoding="utf-8")
    version = subprocess.run([espeak, "--version"], capture_output=True, text=True, check=True).stdout.split("  Data at")[0].strip()
    record = {
        "made_by": "scripts/make_sample_audio.py",
        "synthesiser": version,
        "command": ["espeak-ng", *command[1:-1], "<sample.txt>"],
        "voice": VOICE,
        "words_per_minute": WORDS_PER_MINUTE,
        "espeak_sample_rate": clip.source_rate,
        "stored_as": f"FLAC, {audio.SAMPLE_RATE} Hz mono, 16-bit",
        "seconds": round(clip.duration_s, 2),
        "bytes": len(flac),
        "sha256": hashlib.sha256(flac).hexdigest(),
    }
    (OUT / "sample.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
