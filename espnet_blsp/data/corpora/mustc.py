"""MuST-C (English -> X) -> Kaldi data dir for ST (segments of talk recordings).

Layout: ``<root>/en-<lang>/data/<split>/txt/<split>.yaml`` (a list of {duration, offset,
speaker_id, wav}), ``<split>.en`` and ``<split>.<lang>`` (one line per yaml entry, same
order) and ``<root>/en-<lang>/data/<split>/wav/<talk>.wav``. ``<root>`` may also be the
``en-<lang>`` dir itself. Splits: train, dev, tst-COMMON, tst-HE ("_" and case are loose).
Utterance id: ``<speaker_id>-<talk>-<start cs:07d>-<end cs:07d>``. Writes text (English,
normalised), text.orig, text.prompt, translation, lang, segments and the usual files.
"""

from pathlib import Path
from typing import List

import yaml

from espnet_blsp.data.corpora.common import DataDirBuilder, find_subdir, run_prepare
from espnet_blsp.data.kaldi_dir import DataDirError


def _read_lines(path: Path) -> List[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for lineno, line in enumerate(lines, 1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise DataDirError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start})") from None
    return out


def prepare_mustc(corpus_dir, out_dir, subset: str, lang: str) -> Path:
    """MuST-C en-<lang> ``subset`` -> Kaldi data dir ``out_dir`` (see the module doc)."""
    if not lang:
        raise ValueError("MuST-C needs the target language (--lang, e.g. de)")
    root = Path(corpus_dir)

    def collect(b: DataDirBuilder) -> None:
        pair = root if root.name == f"en-{lang}" else root / f"en-{lang}"
        split_dir = find_subdir(pair / "data", subset)
        if split_dir is None:
            raise FileNotFoundError(f"MuST-C split {subset!r} not found in {pair / 'data'}")
        split = split_dir.name
        txt = split_dir / "txt"
        with open(txt / f"{split}.yaml", encoding="utf-8") as f:
            entries = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or []
        src, tgt = _read_lines(txt / f"{split}.en"), _read_lines(txt / f"{split}.{lang}")
        if not len(entries) == len(src) == len(tgt):
            raise DataDirError(
                f"{txt}: {split}.yaml has {len(entries)} segments but {split}.en has {len(src)} lines "
                f"and {split}.{lang} has {len(tgt)}"
            )
        for i, (e, en, xx) in enumerate(zip(entries, src, tgt)):
            try:
                talk, spk = Path(e["wav"]).stem, str(e["speaker_id"])
                start, end = float(e["offset"]), float(e["offset"]) + float(e["duration"])
            except (KeyError, TypeError, ValueError) as err:
                raise DataDirError(f"{txt / (split + '.yaml')}: segment {i} is malformed ({err!r}): {e}") from None
            wav = (split_dir / "wav" / e["wav"]).resolve()
            utt = f"{spk}-{talk}-{int(round(start * 100)):07d}-{int(round(end * 100)):07d}"
            b.add(utt, audio=str(wav), audio_file=wav, speaker=spk, transcript=en, translation=xx, lang=lang,
                  recording=talk, start=start, end=end)

    return run_prepare("mustc", corpus_dir, out_dir, collect)
