"""A tiny fake corpus (Kaldi data dirs over synthetic WAVs) for recipe tests."""

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
