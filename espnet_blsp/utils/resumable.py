"""Resumable, append-only Kaldi-style outputs.

A stage killed halfway leaves at most one partial trailing line; :func:`recover_lines`
truncates it, so the re-run neither duplicates nor loses utterances.
"""

import os
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple


def complete_lines(path: Path) -> List[str]:
    """The complete lines of an append-only file; a partial last line (a run killed while
    writing it) is cut from the file. A missing file has none."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(raw))
    return raw.decode("utf-8").splitlines()


def recover_lines(path: Path) -> Dict[str, str]:
    """Read ``<utt> <value>`` lines written so far, dropping a partial last line."""
    done: Dict[str, str] = {}
    for lineno, line in enumerate(complete_lines(path), 1):
        if not line.strip():
            continue
        key, _, value = line.partition(" ")
        if key in done:
            raise ValueError(f"{path}:{lineno}: duplicate utterance id {key}")
        done[key] = value
    return done


class LineAppender:
    """Append ``<utt> <value>`` lines and make each batch durable (flush + fsync)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, items: Iterable[Tuple[str, str]]) -> None:
        for key, value in items:
            value = " ".join(str(value).split())  # one line per utterance
            self._f.write(f"{key} {value}\n" if value else f"{key}\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def threads_per_job(nj: int) -> int:
    """CPU threads for each of ``nj`` jobs sharing this machine (at least 1): more threads
    than cores in total stall every job. ``OMP_NUM_THREADS``, where set, caps it (the
    caller has shared the cores out already, e.g. parallel test workers)."""
    threads = max(1, (os.cpu_count() or 1) // nj)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(threads, int(cap)) if cap.isdigit() and int(cap) > 0 else threads


def split_for_job(keys: Sequence[str], nj: int, job: int) -> List[str]:
    """Contiguous split of sorted ``keys`` into ``nj`` parts; ``job`` is 1-based."""
    if not 1 <= job <= nj:
        raise ValueError(f"job {job} is not in 1..{nj}")
    keys = sorted(keys)
    n = len(keys)
    start, end = (job - 1) * n // nj, job * n // nj
    return keys[start:end]
