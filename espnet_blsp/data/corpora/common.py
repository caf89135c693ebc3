"""Shared machinery of the corpus preparers: collect utterances, exclude bad ones, write.

A preparer parses its corpus layout and feeds a ``DataDirBuilder``; ``run_prepare``
handles everything else the same way for every corpus:

    corpus dir missing          -> FileNotFoundError naming it
    out_dir/.done exists        -> skipped (idempotent)
    otherwise                   -> written to a temporary sibling dir, validated
                                   (check_data_dir), renamed to out_dir, marked .done

Output files (sorted by key):
    wav.scp       <rec or utt> <absolute path | command |>
    segments      <utt> <rec> <start_s> <end_s>          (corpora cut from long recordings)
    text          <utt> EnglishNormalizer(transcript)     (WER references)
    text.orig     <utt> the corpus transcript (GigaSpeech punctuation tags mapped back)
    text.prompt   <utt> normalize_for_prompt(transcript)  (what the LLM is given, stage 3)
    utt2spk, spk2utt
    translation, lang, label, ...   corpus-specific per-utterance files
    excluded.txt  <utt> <reason>    every utterance left out, never silently dropped
"""

import csv
import logging
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from espnet_blsp.data.kaldi_dir import (
    PER_UTT_FILES, DataDirError, check_data_dir, utt2spk_to_spk2utt, write_kv,
)
from espnet_blsp.text.normalizer import EnglishNormalizer, normalize_for_prompt

# Per-utterance files a preparer may add besides the transcript (see kaldi_dir.PER_UTT_FILES).
EXTRA_FIELDS = tuple(f for f in PER_UTT_FILES if f not in ("text", "text.orig", "text.prompt", "utt2spk"))


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def format_time(seconds: float) -> str:
    """Seconds for a segments file: at most 3 decimals, no trailing zeros ("1.5", "-1")."""
    s = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def speaker_prefixed(speaker: str, utt: str) -> str:
    """Kaldi convention: utterance ids start with their speaker id so both sort alike."""
    return utt if utt.startswith((speaker + "-", speaker + "_")) or utt == speaker else f"{speaker}-{utt}"


class DataDirBuilder:
    """Collects utterances of one data dir and writes it.

    Problems found on ``add`` (missing audio file, empty or normalised-away transcript,
    bad segment times, empty extra field) and ids added more than once exclude the
    utterance; ``write`` lists every exclusion with its reason in ``excluded.txt``.
    """

    def __init__(self):
        self.norm = EnglishNormalizer()
        self._entries: Dict[str, List[dict]] = {}
        self._excluded: Dict[str, str] = {}
        self._file_exists: Dict[str, bool] = {}

    def exclude(self, utt: str, reason: str) -> None:
        """Leave ``utt`` out for ``reason`` (reasons of one id are joined with "; ")."""
        reason = _one_line(reason)
        self._excluded[utt] = f"{self._excluded[utt]}; {reason}" if utt in self._excluded else reason

    def _exists(self, path: Path) -> bool:
        key = str(path)
        if key not in self._file_exists:
            self._file_exists[key] = Path(path).is_file()
        return self._file_exists[key]

    def add(
        self,
        utt: str,
        *,
        audio: str,
        speaker: str,
        transcript: str,
        audio_file: Optional[Path] = None,
        recording: Optional[str] = None,
        start: Optional[float] = None,
        end: Optional[float] = None,
        prompt: Optional[str] = None,
        **fields: str,
    ) -> None:
        """Add one utterance.

        Args:
            utt: utterance id (prefixed by the speaker id, see ``speaker_prefixed``).
            audio: wav.scp value of the utterance, or of ``recording`` when segmented.
            speaker: speaker id (utt2spk).
            transcript: the corpus transcript (-> text.orig; normalised -> text).
            audio_file: file that must exist (checked once per path); None: not checked.
            recording, start, end: segment of a longer recording (seconds; end -1: to the end).
            prompt: transcript for text.prompt before normalize_for_prompt (default: transcript).
            fields: extra per-utterance files, e.g. translation=..., label=..., lang=...
        """
        unknown = set(fields) - set(EXTRA_FIELDS)
        if unknown:
            raise ValueError(f"unknown per-utterance fields {sorted(unknown)}; known: {EXTRA_FIELDS}")
        problems = []
        if audio_file is not None and not self._exists(audio_file):
            problems.append(f"missing audio file: {audio_file}")
        transcript = _one_line(transcript)
        text = self.norm(transcript) if transcript else ""
        prompt_text = normalize_for_prompt(transcript if prompt is None else prompt)
        if not transcript:
            problems.append("empty transcript")
        elif not text or not prompt_text:
            problems.append(f"transcript is empty after normalisation: {transcript!r}")
        if recording is not None:
            if start is None or end is None or start < 0 or (end != -1 and end <= start):
                problems.append(f"bad segment times: {start}-{end} in recording {recording}")
        for name, value in fields.items():
            if not _one_line(value):
                problems.append(f"empty {name}")
        self._entries.setdefault(utt, []).append(dict(
            audio=audio, speaker=speaker, orig=transcript, text=text, prompt=prompt_text,
            recording=recording, start=start, end=end, fields={k: _one_line(v) for k, v in fields.items()},
            problems=problems,
        ))

    def write(self, out_dir: Path) -> Tuple[int, Dict[str, str]]:
        """Write the data dir; returns (utterances written, excluded {utt: reason})."""
        kept: Dict[str, dict] = {}
        for utt, entries in self._entries.items():
            if len(entries) > 1:
                where = sorted({e["audio"] for e in entries})
                self.exclude(utt, f"duplicate utterance id ({len(entries)} entries: {', '.join(where[:3])})")
            elif entries[0]["problems"]:
                self.exclude(utt, "; ".join(entries[0]["problems"]))
            elif utt not in self._excluded:
                kept[utt] = entries[0]
        segmented = {e["recording"] is not None for e in kept.values()}
        if len(segmented) > 1:
            raise DataDirError(f"{out_dir}: some utterances are segments of recordings and some are not")
        field_names = sorted({k for e in kept.values() for k in e["fields"]})
        for name in field_names:
            for utt in [u for u, e in kept.items() if name not in e["fields"]]:
                self.exclude(utt, f"no {name}")
                del kept[utt]

        wav: Dict[str, str] = {}
        segments: Dict[str, str] = {}
        for utt, e in kept.items():
            key = e["recording"] if e["recording"] is not None else utt
            if wav.setdefault(key, e["audio"]) != e["audio"]:
                raise DataDirError(f"{out_dir}: recording {key} has two audio paths: {wav[key]} and {e['audio']}")
            if e["recording"] is not None:
                segments[utt] = f"{e['recording']} {format_time(e['start'])} {format_time(e['end'])}"

        out_dir.mkdir(parents=True, exist_ok=True)
        write_kv(out_dir / "wav.scp", wav)
        if segments:
            write_kv(out_dir / "segments", segments)
        utt2spk = {u: e["speaker"] for u, e in kept.items()}
        tables = {
            "text": {u: e["text"] for u, e in kept.items()},
            "text.orig": {u: e["orig"] for u, e in kept.items()},
            "text.prompt": {u: e["prompt"] for u, e in kept.items()},
            "utt2spk": utt2spk,
            "spk2utt": utt2spk_to_spk2utt(utt2spk),
        }
        tables.update({name: {u: e["fields"][name] for u, e in kept.items()} for name in field_names})
        for name, table in tables.items():
            write_kv(out_dir / name, table)
        write_kv(out_dir / "excluded.txt", self._excluded)
        return len(kept), dict(self._excluded)


def summarize_reasons(excluded: Dict[str, str]) -> str:
    """e.g. "3 missing audio file, 1 empty transcript" (reasons cut at their first ':', '(' or ';')."""
    counts = Counter(re.split(r"[:(;]", r)[0].strip() for r in excluded.values())
    return ", ".join(f"{n} {reason}" for reason, n in counts.most_common())


def run_prepare(name: str, corpus_dir, out_dir, collect: Callable[[DataDirBuilder], None]) -> Path:
    """Prepare ``out_dir`` from ``corpus_dir`` with ``collect(builder)``; see the module doc."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"{name}: corpus dir not found: {corpus_dir}")
    if (out_dir / ".done").is_file():
        logging.info(f"{out_dir}: already prepared ({out_dir / '.done'} exists), skipped")
        return out_dir
    logging.info(f"{name}: reading {corpus_dir}")
    builder = DataDirBuilder()
    collect(builder)
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    n_kept, excluded = builder.write(tmp)
    if n_kept == 0:
        raise DataDirError(
            f"{name}: no utterances kept from {corpus_dir} ({len(excluded)} excluded: "
            f"{summarize_reasons(excluded) or 'none found'}); see {tmp / 'excluded.txt'}"
        )
    check_data_dir(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    (out_dir / ".done").touch()
    logging.info(
        f"{name}: wrote {out_dir}: {n_kept} utterances, {len(excluded)} excluded"
        + (f" ({summarize_reasons(excluded)}; listed in {out_dir / 'excluded.txt'})" if excluded else "")
    )
    return out_dir


def read_table(path: Path, delimiter: str = "\t", required: Sequence[str] = ()) -> Iterator[Tuple[int, Dict[str, str]]]:
    """Rows of a tsv/csv file with a header line, as ``(line_number, {column: value})``.

    Tabs: no quoting (Common Voice and CoVoST sentences contain bare quotes); commas:
    standard csv quoting. Errors (not UTF-8, wrong field count, missing columns) name
    the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")

    def lines() -> Iterator[str]:
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataDirError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start})") from None

    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(lines(), delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    if not header:
        raise DataDirError(f"{path}: empty file (no header line)")
    header = [h.lstrip("\ufeff").strip() for h in header]
    lost = [c for c in required if c not in header]
    if lost:
        raise DataDirError(f"{path}:1: missing columns {lost} (header: {header})")
    for row in reader:
        if not row or row == [""]:
            continue
        if len(row) != len(header):
            raise DataDirError(f"{path}:{reader.line_num}: {len(row)} fields, the header has {len(header)}")
        yield reader.line_num, dict(zip(header, row))


def find_subdir(parent: Path, name: str) -> Optional[Path]:
    """``parent/name`` matched loosely: case-insensitive, "_" and "-" alike; None if absent."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if not parent.is_dir():
        return None
    want = name.lower().replace("_", "-")
    for child in sorted(parent.iterdir()):
        if child.is_dir() and child.name.lower().replace("_", "-") == want:
            return child
    return None
