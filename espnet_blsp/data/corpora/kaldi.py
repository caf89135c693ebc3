"""An existing Kaldi data dir -> a validated copy with normalised text.

Reads ``<src>[/<subset>]/{wav.scp,text}`` and, when present, ``segments``, ``utt2spk``,
``text.orig`` (taken as the transcript instead of ``text``), ``text.prompt`` (kept as
the prompt source) and the other per-utterance files (translation, label, lang, ...).
Per-utterance problems exclude the utterance with a reason in excluded.txt: no audio
entry, no transcript, a missing entry in another per-utterance file, an id repeated in a
file, a missing audio file (plain paths, checked relative to the working dir, and ark
files; pipe commands are not run), an empty transcript. Unreadable files (not UTF-8,
malformed lines) raise, naming the file and the line.
"""

from pathlib import Path
from typing import Dict, List

from espnet_blsp.data.corpora.common import EXTRA_FIELDS, DataDirBuilder, run_prepare
from espnet_blsp.data.kaldi_dir import DataDirError, iter_kv, parse_segment


def _read_multi(path: Path) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for _, key, value in iter_kv(path):
        out.setdefault(key, []).append(value)
    return out


def _audio_file(spec: str):
    """The file a wav.scp value reads, or None for pipe commands."""
    spec = spec.strip()
    if spec.endswith("|"):
        return None
    if ".ark:" in spec:
        return Path(spec.rsplit(":", 1)[0])
    return Path(spec)


def prepare_kaldi(corpus_dir, out_dir, subset: str = "") -> Path:
    """Kaldi data dir ``corpus_dir[/subset]`` -> ``out_dir`` (see the module doc)."""
    src = Path(corpus_dir)
    if subset:
        src = src / subset
        if not src.is_dir():
            raise FileNotFoundError(f"kaldi: data dir not found: {src}")

    def collect(b: DataDirBuilder) -> None:
        for name in ("wav.scp", "text"):
            if not (src / name).is_file():
                raise FileNotFoundError(f"kaldi: {src / name} not found")
        tables = {name: _read_multi(src / name)
                  for name in ("wav.scp", "text", "segments", "utt2spk", "text.orig", "text.prompt") + EXTRA_FIELDS
                  if (src / name).is_file()}
        wav, segments = tables["wav.scp"], tables.get("segments")
        utts = list(segments) if segments is not None else list(wav)
        for name in [n for n in tables if n != "wav.scp"]:
            for utt in tables[name]:
                if utt not in (segments if segments is not None else wav):
                    b.exclude(utt, f"no audio: in {name} but not in {'segments' if segments is not None else 'wav.scp'}")
        for utt in utts:
            lost = [n for n in tables if n not in ("wav.scp", "segments") and utt not in tables[n]]
            dups = [n for n, t in tables.items() if len(t.get(utt, [])) > 1]
            rec, start, end = None, None, None
            if segments is not None:
                try:
                    rec, start, end = parse_segment(segments[utt][0])
                except ValueError as e:
                    raise DataDirError(f"{src / 'segments'}: bad segment for {utt}: {segments[utt][0]!r} ({e})") from None
                if rec not in wav:
                    b.exclude(utt, f"recording {rec} is not in {src / 'wav.scp'}")
                    continue
                if len(wav[rec]) > 1:
                    dups.append(f"wav.scp ({rec})")
            if dups:
                b.exclude(utt, f"duplicate id in {', '.join(dups)}")
                continue
            if lost:
                b.exclude(utt, f"no entry in {', '.join(lost)}")
                continue
            spec = wav[rec if rec is not None else utt][0]
            transcript = tables["text.orig" if "text.orig" in tables else "text"][utt][0]
            b.add(utt, audio=spec, audio_file=_audio_file(spec), speaker=tables.get("utt2spk", {}).get(utt, [utt])[0],
                  transcript=transcript, prompt=tables["text.prompt"][utt][0] if "text.prompt" in tables else None,
                  recording=rec, start=start, end=end,
                  **{f: tables[f][utt][0] for f in EXTRA_FIELDS if f in tables})

    return run_prepare("kaldi", src, out_dir, collect)
