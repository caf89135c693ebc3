"""Kaldi-style ``<utt_id> <value>`` files and data directories."""

import os
import tempfile
from pathlib import Path
from typing import Dict, List

# Files holding one line per utterance, checked against each other when present.
PER_UTT_FILES = ("text", "utt2spk", "text.prompt", "response", "instruction", "translation", "label", "question")


def read_kv(path) -> Dict[str, str]:
    """Read ``<key> <value>`` lines in order; errors name the file and the line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    out: Dict[str, str] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not UTF-8 ({e})") from None
            if not line.strip():
                continue
            key, _, value = line.partition(" ")
            if key in out:
                raise ValueError(f"{path}:{lineno}: duplicate utterance id {key}")
            out[key] = value.strip()
    return out


def write_kv(path, table: Dict[str, str]) -> None:
    """Write sorted ``<key> <value>`` lines atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for k in sorted(table):
            f.write(f"{k} {table[k]}\n" if table[k] != "" else f"{k}\n")
    os.replace(tmp, path)


def validate_data_dir(d) -> List[str]:
    """Problems of a data dir: missing files, mismatched ids, empty transcripts."""
    d = Path(d)
    problems: List[str] = []
    if not (d / "wav.scp").exists():
        return [f"{d}/wav.scp is missing"]
    if not (d / "text").exists():
        return [f"{d}/text is missing"]
    ids = set(read_kv(d / "segments")) if (d / "segments").exists() else set(read_kv(d / "wav.scp"))
    for name in PER_UTT_FILES:
        if not (d / name).exists():
            continue
        keys = set(read_kv(d / name))
        if keys != ids:
            extra, lost = sorted(keys - ids)[:5], sorted(ids - keys)[:5]
            problems.append(f"{d}/{name}: utterance ids differ from the audio list (extra {extra}, missing {lost})")
    for k, v in read_kv(d / "text").items():
        if not v.strip():
            problems.append(f"{d}/text: empty transcript for {k}")
    return problems


def check_data_dir(d) -> None:
    problems = validate_data_dir(d)
    if problems:
        raise ValueError("invalid data dir:\n  " + "\n  ".join(problems[:20]))
