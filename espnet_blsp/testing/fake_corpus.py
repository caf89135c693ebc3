"""A tiny fake corpus (Kaldi data dirs over synthetic WAVs) for recipe tests, and the bad
clips a real corpus holds (``add_bad_clips``)."""

import os
from pathlib import Path
from typing import Dict

import numpy as np

SENTENCES = [
    "The weather is warm today.", "Rain falls on the city.", "We walk to the train station.",
    "Coffee and bread for the family.", "Music in the garden at night.", "The river is cold.",
    "A student reads a book.", "The team wins the game.", "Please repeat the following words.",
    "The mountain is high and cold.", "Her mother works in the city.", "They play music at home.",
]


def make_fake_corpus(root: str, sets: Dict[str, int] = None, seed: int = 0) -> str:
    """Write ``root/<set>/{wav.scp,text,utt2spk}`` with short random-tone 16 kHz WAVs."""
    import soundfile

    sets = sets or {"train": 8, "dev": 4, "test": 4}
    rng = np.random.default_rng(seed)
    for name, n in sets.items():
        d = Path(root) / name
        (d / "wav").mkdir(parents=True, exist_ok=True)
        lines = {"wav.scp": [], "text": [], "utt2spk": []}
        for i in range(n):
            utt = f"spk{i % 2}-{name}-{i:03d}"
            sec = rng.uniform(0.8, 2.0)
            t = np.arange(int(16000 * sec)) / 16000
            wav = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.01 * rng.standard_normal(t.size)
            path = d / "wav" / f"{utt}.wav"
            soundfile.write(str(path), wav.astype(np.float32), 16000)
            lines["wav.scp"].append(f"{utt} {os.path.abspath(path)}")
            lines["text"].append(f"{utt} {SENTENCES[(i + len(name)) % len(SENTENCES)]}")
            lines["utt2spk"].append(f"{utt} spk{i % 2}")
        for fname, rows in lines.items():
            (d / fname).write_text("\n".join(sorted(rows)) + "\n")
    return root


# utterance -> the reason stage 2 excludes it with (espnet_blsp.bin.dump_feats)
BAD_CLIPS = {
    "spk0-bad-corrupt": "unreadable audio",  # a WAV header followed by noise bytes
    "spk0-bad-empty": "unreadable audio",    # 0 bytes
    "spk1-bad-long": "too long",             # 35 s
    "spk1-bad-short": "too short",           # 0.05 s
}


def add_bad_clips(data_dir: str, seed: int = 0) -> Dict[str, str]:
    """Add the four ``BAD_CLIPS`` to a Kaldi dir of ``make_fake_corpus``; returns
    utterance -> audio path."""
    import soundfile

    d = Path(data_dir)
    wav = d / "wav"
    wav.mkdir(parents=True, exist_ok=True)
    files = {u: wav / f"{u}.wav" for u in BAD_CLIPS}
    files["spk0-bad-corrupt"].write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + np.random.default_rng(seed).bytes(64))
    files["spk0-bad-empty"].write_bytes(b"")
    soundfile.write(str(files["spk1-bad-long"]), np.full(35 * 16000, 0.01, dtype=np.float32), 16000)
    soundfile.write(str(files["spk1-bad-short"]), np.zeros(800, dtype=np.float32), 16000)
    for name, value in (("wav.scp", lambda u: os.path.abspath(files[u])), ("text", lambda u: "the weather is warm"),
                        ("utt2spk", lambda u: u.split("-")[0])):
        rows = (d / name).read_text().splitlines() + [f"{u} {value(u)}" for u in BAD_CLIPS]
        (d / name).write_text("\n".join(sorted(rows)) + "\n")
    return {u: os.path.abspath(p) for u, p in files.items()}
