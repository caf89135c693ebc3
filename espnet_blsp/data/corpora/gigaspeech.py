"""GigaSpeech -> Kaldi data dir (segments of long recordings).

Layout: ``<root>/GigaSpeech.json``: ``{"audios": [{"aid", "path", "segments": [{"sid",
"begin_time", "end_time", "text_tn", "subsets": ["{XL}", "{L}", ...]}]}]}`` with the
audio at ``<root>/<path>`` (opus; soundfile decodes it). Subsets: XS, S, M, L, XL, DEV,
TEST (case-insensitive, braces optional).

Transcripts (``text_tn``, upper case) carry punctuation tags, mapped back to
punctuation glued to the previous word: <COMMA> "," <PERIOD> "." <QUESTIONMARK> "?"
<EXCLAMATIONPOINT> "!". Segments holding a garbage tag (<SIL> <MUSIC> <NOISE> <OTHER>)
or any other <TAG> are excluded and listed. GigaSpeech has no speaker labels: the
recording id (aid) is the speaker; utterance ids are the segment ids (sid), which start
with the aid. Note: the whole JSON is loaded at once (several GB of RAM for XL).
"""

import json
import re
from pathlib import Path

from espnet_blsp.data.corpora.common import DataDirBuilder, run_prepare

SUBSETS = ("XS", "S", "M", "L", "XL", "DEV", "TEST")
PUNCTUATION_TAGS = {"<COMMA>": ",", "<PERIOD>": ".", "<QUESTIONMARK>": "?", "<EXCLAMATIONPOINT>": "!"}
GARBAGE_TAGS = ("<SIL>", "<MUSIC>", "<NOISE>", "<OTHER>")
_TAG = re.compile(r"<[A-Z]+>")


def map_punctuation(text_tn: str) -> str:
    """``"HI <COMMA> YOU <QUESTIONMARK>"`` -> ``"HI, YOU?"``."""
    s = text_tn
    for tag, mark in PUNCTUATION_TAGS.items():
        s = re.sub(r"\s*" + tag, mark, s)
    return " ".join(s.split())


def prepare_gigaspeech(corpus_dir, out_dir, subset: str) -> Path:
    """GigaSpeech ``subset`` (XS/S/M/L/XL/DEV/TEST) of ``corpus_dir`` -> ``out_dir``."""
    root = Path(corpus_dir)
    key = subset.strip().strip("{}").upper()
    if key not in SUBSETS:
        raise ValueError(f"unknown GigaSpeech subset {subset!r}; choose from {SUBSETS}")
    tag = "{" + key + "}"

    def collect(b: DataDirBuilder) -> None:
        meta = root / "GigaSpeech.json"
        if not meta.is_file():
            raise FileNotFoundError(f"GigaSpeech metadata not found: {meta}")
        with open(meta, encoding="utf-8") as f:
            try:
                audios = json.load(f)["audios"]
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"{meta}: not GigaSpeech metadata ({e})") from None
        for audio in audios:
            aid, path = audio["aid"], (root / audio["path"]).resolve()
            for seg in audio.get("segments", []):
                if tag not in seg.get("subsets", []):
                    continue
                sid, text_tn = seg["sid"], seg.get("text_tn", "")
                garbage = [t for t in _TAG.findall(text_tn) if t not in PUNCTUATION_TAGS]
                if garbage:
                    b.exclude(sid, f"garbage/unknown tag: {' '.join(sorted(set(garbage)))} in {text_tn!r}")
                    continue
                b.add(sid, audio=str(path), audio_file=path, speaker=aid, transcript=map_punctuation(text_tn),
                      recording=aid, start=float(seg["begin_time"]), end=float(seg["end_time"]))

    return run_prepare("gigaspeech", corpus_dir, out_dir, collect)
