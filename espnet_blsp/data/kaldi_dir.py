"""Kaldi-style ``<key> <value>`` files and data directories.

A data dir holds ``wav.scp`` (recording -> path or pipe) and ``text`` (utterance ->
transcript), usually ``utt2spk``/``spk2utt``, and ``segments`` (utterance ->
``<recording> <start> <end>``) when utterances are cuts of longer recordings. Without
``segments`` the utterance ids are the ``wav.scp`` keys. Every file in
``PER_UTT_FILES`` that is present must hold exactly the utterance ids.

    read_kv / iter_kv / write_kv     one file (errors name the file and the line)
    read_segments                    segments -> {utt: (rec, start, end)}
    validate_data_dir / check_data_dir
    filter_data_dir                  copy a dir without some utterances, each with a reason
"""

import logging
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Tuple

# Files holding one line per utterance; checked against the utterance list when present.
#   text          transcript normalised for scoring (EnglishNormalizer)
#   text.orig     the corpus transcript (punctuation tags mapped back, nothing else changed)
#   text.prompt   the transcript as the LLM sees it (normalize_for_prompt)
#   utt2spk       speaker of each utterance
#   translation   ST target text; lang: its language code
#   label         SLU gold class string
#   question / instruction / continuation / response / response_ids: prompts and teacher
#                 outputs (response_ids: the teacher's generated token ids)
PER_UTT_FILES = (
    "text", "text.orig", "text.prompt", "utt2spk", "translation", "lang", "label", "question",
    "instruction", "continuation", "response", "response_ids",
)
# Per-utterance files whose values may not be empty.
NONEMPTY_FILES = ("text", "text.prompt", "translation", "label", "continuation", "response", "response_ids")

_LINE = re.compile(r"(\S+)(?:[ \t]+(.*))?")


class DataDirError(ValueError):
    """A data dir (or one of its files) is malformed; the message names the file."""


def iter_kv(path) -> Iterator[Tuple[int, str, str]]:
    """Yield ``(line_number, key, value)`` for the non-blank lines of ``path``.

    The key is the first whitespace-free field; the value is the rest of the line with
    trailing whitespace removed ("" when absent). Raises DataDirError naming the file and
    line for bytes that are not UTF-8 and for lines starting with whitespace.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataDirError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start}): {raw[:60]!r}") from None
            if not line.strip():
                continue
            m = _LINE.fullmatch(line.rstrip())
            if m is None:
                raise DataDirError(f"{path}:{lineno}: malformed line (leading whitespace, no key): {line[:60]!r}")
            yield lineno, m.group(1), (m.group(2) or "").strip()


def read_kv(path) -> Dict[str, str]:
    """Read ``<key> <value>`` lines in file order; a repeated key is an error."""
    out: Dict[str, str] = {}
    for lineno, key, value in iter_kv(path):
        if key in out:
            raise DataDirError(f"{path}:{lineno}: duplicate key {key}")
        out[key] = value
    return out


def write_kv(path, table: Mapping[str, str]) -> None:
    """Write ``<key> <value>`` lines sorted by key, atomically (temp file + rename)."""
    path = Path(path)
    for k, v in table.items():
        if not k or re.search(r"\s", k):
            raise DataDirError(f"{path}: key {k!r} is empty or contains whitespace")
        if "\n" in v or "\r" in v:
            raise DataDirError(f"{path}: value of {k} contains a line break: {v[:60]!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(f"{k} {table[k]}\n" if table[k] != "" else f"{k}\n" for k in sorted(table))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_segment(value: str) -> Tuple[str, float, float]:
    """``"<recording> <start> <end>"`` -> (recording, start_s, end_s); ValueError if malformed."""
    fields = value.split()
    if len(fields) != 3:
        raise ValueError("expected <recording> <start> <end>")
    return fields[0], float(fields[1]), float(fields[2])


def read_segments(path) -> Dict[str, Tuple[str, float, float]]:
    """``segments`` -> {utt: (recording, start_s, end_s)}; end -1 means "to the end"."""
    out: Dict[str, Tuple[str, float, float]] = {}
    for lineno, utt, value in iter_kv(path):
        try:
            seg = parse_segment(value)
        except ValueError as e:
            raise DataDirError(f"{path}:{lineno}: bad segment for {utt}: {value!r} ({e})") from None
        if utt in out:
            raise DataDirError(f"{path}:{lineno}: duplicate key {utt}")
        out[utt] = seg
    return out


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> Dict[str, str]:
    """{utt: spk} -> {spk: "utt1 utt2 ..."} with the utterances sorted."""
    groups: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        groups.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in groups.items()}


def _scan(path: Path, problems: List[str]) -> Dict[str, str]:
    """Read a file for validation: duplicates and unsorted keys become problems."""
    table: Dict[str, str] = {}
    dups: Counter = Counter()
    prev = None
    unsorted_at = None
    try:
        for lineno, key, value in iter_kv(path):
            if key in table:
                dups[key] += 1
            table[key] = value
            if prev is not None and key < prev and unsorted_at is None:
                unsorted_at = lineno
            prev = key
    except DataDirError as e:
        problems.append(str(e))
    if dups:
        problems.append(f"{path}: {len(dups)} duplicate ids, e.g. {sorted(dups)[:5]}")
    if unsorted_at is not None:
        problems.append(f"{path}:{unsorted_at}: keys are not sorted (Kaldi needs C-locale order)")
    return table


def validate_data_dir(d) -> List[str]:
    """Problems of data dir ``d``, each naming its file ([] when valid).

    Checks: wav.scp and text exist; every file is UTF-8, well formed, sorted and free
    of duplicate ids; segments name recordings in wav.scp and have 0 <= start < end
    (or end -1); each present per-utterance file (PER_UTT_FILES) holds exactly the
    utterance ids; no empty transcripts/translations/labels; spk2utt is utt2spk inverted.
    """
    d = Path(d)
    problems: List[str] = []
    for name in ("wav.scp", "text"):
        if not (d / name).is_file():
            problems.append(f"{d / name} is missing")
    if problems:
        return problems
    wav = _scan(d / "wav.scp", problems)
    for key, value in wav.items():
        if not value:
            problems.append(f"{d / 'wav.scp'}: no audio path for {key}")
    if (d / "segments").is_file():
        segments = _scan(d / "segments", problems)
        for utt, value in segments.items():
            try:
                rec, start, end = parse_segment(value)
            except ValueError as e:
                problems.append(f"{d / 'segments'}: bad segment for {utt}: {value!r} ({e})")
                continue
            if rec not in wav:
                problems.append(f"{d / 'segments'}: recording {rec} of {utt} is not in wav.scp")
            if start < 0 or (end != -1 and end <= start):
                problems.append(f"{d / 'segments'}: bad times for {utt}: {start} {end}")
        utts = set(segments)
    else:
        utts = set(wav)

    tables = {}
    for name in PER_UTT_FILES:
        if not (d / name).is_file():
            continue
        tables[name] = table = _scan(d / name, problems)
        keys = set(table)
        if keys != utts:
            extra, lost = sorted(keys - utts), sorted(utts - keys)
            problems.append(
                f"{d / name}: utterance ids differ from {'segments' if (d / 'segments').is_file() else 'wav.scp'}: "
                f"{len(extra)} extra {extra[:5]}, {len(lost)} missing {lost[:5]}"
            )
        if name in NONEMPTY_FILES:
            empty = sorted(k for k, v in table.items() if not v.strip())
            if empty:
                problems.append(f"{d / name}: {len(empty)} empty values, e.g. {empty[:5]}")

    if "utt2spk" in tables and (d / "spk2utt").is_file():
        spk2utt = _scan(d / "spk2utt", problems)
        expected = utt2spk_to_spk2utt(tables["utt2spk"])
        if {k: sorted(v.split()) for k, v in spk2utt.items()} != {k: v.split() for k, v in expected.items()}:
            problems.append(f"{d / 'spk2utt'} does not match utt2spk (rebuild it with utt2spk_to_spk2utt)")
    if "utt2spk" in tables:
        # Kaldi wants utterance ids to sort the same way as their speakers (speaker-id prefix).
        utts_sorted = sorted(tables["utt2spk"])
        by_spk = sorted(utts_sorted, key=lambda u: (tables["utt2spk"][u], u))
        if by_spk != utts_sorted:
            logging.warning(f"{d / 'utt2spk'}: utterance ids are not prefixed by their speaker ids "
                            "(fine for ESPnet, not for Kaldi's per-speaker tools)")
    return problems


def check_data_dir(d) -> None:
    """Raise DataDirError listing every problem of data dir ``d`` (see validate_data_dir)."""
    problems = validate_data_dir(d)
    if problems:
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataDirError(f"invalid data dir {d}:\n  " + "\n  ".join(problems[:20]) + more)


def filter_data_dir(src, dst, exclude: Mapping[str, str]) -> int:
    """Copy data dir ``src`` to ``dst`` without the utterances in ``exclude`` (utt -> reason).

    Every per-utterance file, ``segments`` and ``utt2spk`` are filtered, ``wav.scp``
    keeps the recordings still in use, ``spk2utt`` is rebuilt, and the reasons are added
    to ``dst/excluded.txt`` (after those of ``src/excluded.txt``). Returns the number of
    utterances kept. ``src`` must be valid (check_data_dir); ``dst`` may equal ``src``.
    """
    src, dst = Path(src), Path(dst)
    check_data_dir(src)
    has_segments = (src / "segments").is_file()
    utts = list(read_kv(src / "segments")) if has_segments else list(read_kv(src / "wav.scp"))
    unknown = sorted(set(exclude) - set(utts))
    if unknown:
        raise DataDirError(f"{src}: cannot exclude unknown utterances {unknown[:5]}")
    keep = [u for u in utts if u not in exclude]
    tables = {name: read_kv(src / name) for name in PER_UTT_FILES if (src / name).is_file()}
    excluded = read_kv(src / "excluded.txt") if (src / "excluded.txt").is_file() else {}
    wav = read_kv(src / "wav.scp")
    segments = read_kv(src / "segments") if has_segments else None

    dst.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        write_kv(dst / name, {u: table[u] for u in keep})
    if segments is not None:
        write_kv(dst / "segments", {u: segments[u] for u in keep})
        recs = {segments[u].split()[0] for u in keep}
        write_kv(dst / "wav.scp", {r: v for r, v in wav.items() if r in recs})
    else:
        write_kv(dst / "wav.scp", {u: wav[u] for u in keep})
    if "utt2spk" in tables:
        write_kv(dst / "spk2utt", utt2spk_to_spk2utt({u: tables["utt2spk"][u] for u in keep}))
    excluded.update(exclude)
    write_kv(dst / "excluded.txt", dict(excluded))
    logging.info(f"{src} -> {dst}: kept {len(keep)} utterances, excluded {len(exclude)} (see {dst / 'excluded.txt'})")
    return len(keep)
