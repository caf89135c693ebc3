"""What a stage's ``.done`` mark was made from, so that a changed input redoes the stage.

    mark = describe(["llm=assets/smollm2", "rp_ratio=1:9"], files=["dump/train/text"])
    write_mark("dump/train_cw/.done", mark)
    why = changes(read_mark("dump/train_cw/.done"), mark)   # [] when nothing changed

A mark is sorted ``key=value`` lines: the options a stage ran with, plus one
``files:<path>=<digest>`` line per input given with ``files`` and one ``tree:<dir>=<digest>``
per ``trees`` entry:

- ``files``: a file, or the files of a directory (not recursive; hidden files such as
  ``.done`` left out). Files up to 64 MiB count by content (sha1), so rewriting one with
  the same content changes nothing; larger ones by size and mtime. A Kaldi dir's
  ``wav.scp`` also brings in the size and mtime of every audio file it names (a replaced
  or repaired clip redoes the dumping).
- ``trees``: every file below a directory (a corpus root) by path, size and mtime, audio
  files and ``__pycache__`` left out (stage 1 reads transcripts and lists, stage 2's ``files`` covers audio).
"""

import hashlib
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

CONTENT_LIMIT = 64 << 20  # bytes; bigger files count by size and mtime
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".opus", ".ogg", ".sph", ".m4a", ".aac", ".webm"}


def _file_digest(path: Path, h) -> None:
    st = path.stat()
    h.update(f"{path.name}\0{st.st_size}\0".encode())
    if st.st_size <= CONTENT_LIMIT:
        h.update(hashlib.sha1(path.read_bytes()).digest())
    else:
        h.update(str(st.st_mtime_ns).encode())


def _audio_digest(wav_scp: Path, h) -> None:
    """Size and mtime of each audio file a wav.scp names (commands and arks: the file they read)."""
    for line in wav_scp.read_text(encoding="utf-8", errors="replace").splitlines():
        _, _, spec = line.strip().partition(" ")
        spec = spec.strip()
        if not spec or spec.endswith("|"):
            continue  # a command: its text is already in wav.scp's content
        path = spec.rsplit(":", 1)[0] if ".ark:" in spec else spec
        try:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}\0missing\n".encode())


def files_digest(path) -> str:
    """Digest of a file, or of a directory's files (see the module docstring)."""
    path = Path(path)
    h = hashlib.sha1()
    if path.is_file():
        _file_digest(path, h)
    elif path.is_dir():
        for p in sorted(path.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                _file_digest(p, h)
        if (path / "wav.scp").is_file():
            _audio_digest(path / "wav.scp", h)
    else:
        return "missing"
    return h.hexdigest()[:16]


def tree_digest(root) -> str:
    """Digest of every non-audio file below ``root`` by relative path, size and mtime."""
    root = Path(root)
    if not root.is_dir():
        return "missing"
    h = hashlib.sha1()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                continue
            p = os.path.join(dirpath, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            h.update(f"{os.path.relpath(p, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def describe(options: Sequence[str], files: Iterable[str] = (), trees: Iterable[str] = ()) -> Dict[str, str]:
    """The mark of a stage run: ``options`` (``key=value`` strings) plus input digests."""
    mark: Dict[str, str] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r}")
        mark[key] = value
    for f in files:
        mark[f"files:{f}"] = files_digest(f)
    for t in trees:
        mark[f"tree:{t}"] = tree_digest(t)
    return mark


def read_mark(path) -> Optional[Dict[str, str]]:
    """The recorded mark, {} for a mark that records nothing (an older run.sh), None if absent."""
    path = Path(path)
    if not path.is_file():
        return None
    mark = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            mark[key] = value
    return mark


def write_mark(path, mark: Dict[str, str]) -> None:
    """Write the mark atomically (a kill leaves the old mark or the new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{k}={mark[k]}\n" for k in sorted(mark)), encoding="utf-8")
    os.replace(tmp, path)


def changes(old: Optional[Dict[str, str]], new: Dict[str, str]) -> List[str]:
    """What differs between the recorded mark and the current inputs, one phrase each."""
    if old is None:
        return ["not done yet"]
    if not old and new:
        return ["the mark records no inputs (made by an older run.sh)"]
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        if key.startswith(("files:", "tree:")):
            what = key.partition(":")[2]
            out.append(f"{what} changed" if key in old else f"{what} not recorded")
        elif key not in old:
            out.append(f"{key} not recorded")
        elif key not in new:
            out.append(f"{key} was {old[key]!r}, now not given")
        else:
            out.append(f"{key} was {old[key]!r}, now {new[key]!r}")
    return out
