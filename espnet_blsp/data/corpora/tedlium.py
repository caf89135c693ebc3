"""TED-LIUM 3 -> Kaldi data dir (segments of talk recordings).

Layout: ``<root>/<part>/stm/<talk>.stm`` + ``<root>/<part>/sph/<talk>.sph`` where part is
``data`` (all talks; subset "" or "all"), ``legacy/<dev|test|train>`` (the release-1/2
split that BLSP's TED-LIUM 3 test set uses; subset "dev"/"test"/"train" or
"legacy/test"), or ``speaker-adaptation/<...>`` (subset "speaker-adaptation/test").

stm lines: ``<talk> <channel> <speaker> <start> <end> [<label>] <transcript>``; lines
starting with ";;" are comments. Segments whose transcript is
``ignore_time_segment_in_scoring`` are excluded (listed). ``<unk>`` (a word the
transcriber could not make out) stays in text.orig, is dropped from text.prompt, and
EnglishNormalizer drops it from text like Whisper's normaliser does. Transcripts are
lowercase and tokenised ("it 's"); text.prompt re-attaches clitics and sentence-cases.
Utterance id: ``<speaker>-<start cs:07d>-<end cs:07d>`` (``<speaker>-<talk>-...`` when the
speaker id differs from the talk id).

Audio decision: TED-LIUM 3 .sph files are plain 16-bit PCM NIST SPHERE, which libsndfile
(soundfile) reads, so wav.scp holds the .sph path itself. Each file's header is probed
with soundfile.info; a file soundfile cannot read (e.g. shorten-compressed SPHERE) gets
``sph2pipe -f wav -p -c <channel> <path> |`` if sph2pipe is on PATH, else
``sox <path> -t wav - |`` if sox is, else its segments are excluded and listed.
"""

import re
import shutil
from pathlib import Path
from typing import Dict, Optional

from espnet_blsp.data.corpora.common import DataDirBuilder, find_subdir, run_prepare
from espnet_blsp.data.kaldi_dir import DataDirError

IGNORE = "ignore_time_segment_in_scoring"
_UNK = re.compile(r"<unk>", re.IGNORECASE)
_LABEL = re.compile(r"^<[^<>\s]*,[^<>\s]*>\s*")  # <show-type,bandwidth,gender>


def _part_dir(root: Path, subset: str) -> Path:
    if (root / "TEDLIUM_release-3").is_dir():
        root = root / "TEDLIUM_release-3"
    key = subset.strip().strip("/")
    if key.lower() in ("", "all", "data"):
        candidates = [root / "data"]
    else:
        candidates = [root / key, root / "legacy" / key]
    for c in candidates:
        d = find_subdir(c.parent, c.name) if c.parent.is_dir() else None
        if d is not None and (d / "stm").is_dir():
            return d
    raise FileNotFoundError(
        f"TED-LIUM 3 part for subset {subset!r} not found: looked for stm/ in {', '.join(map(str, candidates))}"
    )


def sph_wav_scp(path: Path, channel: str = "1") -> Optional[str]:
    """wav.scp value for a .sph file (see the module doc); None if nothing can read it."""
    import soundfile

    try:
        soundfile.info(str(path))
        return str(path)
    except Exception:  # noqa: BLE001 - libsndfile rejects unsupported SPHERE variants
        pass
    if shutil.which("sph2pipe"):
        return f"sph2pipe -f wav -p -c {channel} {path} |"
    if shutil.which("sox"):
        return f"sox {path} -t wav - |"
    return None


def utt_id(speaker: str, talk: str, start: float, end: float) -> str:
    mid = "" if speaker == talk else f"-{talk}"
    return f"{speaker}{mid}-{int(round(start * 100)):07d}-{int(round(end * 100)):07d}"


def prepare_tedlium3(corpus_dir, out_dir, subset: str) -> Path:
    """TED-LIUM 3 ``subset`` (see the module doc) of ``corpus_dir`` -> ``out_dir``."""

    def collect(b: DataDirBuilder) -> None:
        part = _part_dir(Path(corpus_dir), subset)
        audio_specs: Dict[str, Optional[str]] = {}
        stms = sorted((part / "stm").glob("*.stm"))
        if not stms:
            raise FileNotFoundError(f"no .stm files in {part / 'stm'}")
        for stm in stms:
            with open(stm, "rb") as f:
                raw_lines = f.read().splitlines()
            for lineno, raw in enumerate(raw_lines, 1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as e:
                    raise DataDirError(f"{stm}:{lineno}: not UTF-8 ({e.reason} at byte {e.start})") from None
                if not line or line.startswith(";;"):
                    continue
                fields = line.split(maxsplit=5)
                if len(fields) < 5:
                    raise DataDirError(f"{stm}:{lineno}: expected <talk> <channel> <speaker> <start> <end> ...: {line!r}")
                talk, channel, speaker, start_s, end_s = fields[:5]
                rest = _LABEL.sub("", fields[5] if len(fields) > 5 else "")  # drop the <o,f0,male> label
                try:
                    start, end = float(start_s), float(end_s)
                except ValueError:
                    raise DataDirError(f"{stm}:{lineno}: bad times {start_s} {end_s}") from None
                utt = utt_id(speaker, talk, start, end)
                transcript = rest.strip()
                if transcript == IGNORE:
                    b.exclude(utt, f"{IGNORE} ({stm.name}:{lineno})")
                    continue
                sph = (part / "sph" / f"{talk}.sph").resolve()
                if talk not in audio_specs:
                    audio_specs[talk] = sph_wav_scp(sph, channel) if sph.is_file() else ""
                spec = audio_specs[talk]
                if spec is None:
                    b.exclude(utt, f"unreadable .sph: {sph} (soundfile cannot read it; no sph2pipe or sox on PATH)")
                    continue
                b.add(utt, audio=spec or str(sph), audio_file=sph, speaker=speaker, transcript=transcript,
                      prompt=_UNK.sub(" ", transcript), recording=talk, start=start, end=end)

    return run_prepare("tedlium3", corpus_dir, out_dir, collect)
