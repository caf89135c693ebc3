"""LibriSpeech -> Kaldi data dir.

Layout: ``<root>/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt`` (lines
``<spk>-<chapter>-<n> TRANSCRIPT``) next to ``<spk>-<chapter>-<n>.flac``. ``<root>`` may
also be the dir holding ``LibriSpeech/``. Subsets: train-clean-100, train-clean-360,
train-other-500, dev-clean, dev-other, test-clean, test-other ("_" works for "-"),
``train-960`` (the three training subsets) or several joined with "+".
Utterance ids are the corpus ids (they start with the speaker id); audio: the .flac path.
"""

from pathlib import Path
from typing import List

from espnet_blsp.data.corpora.common import DataDirBuilder, find_subdir, run_prepare
from espnet_blsp.data.kaldi_dir import iter_kv

SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean", "test-other")
ALIASES = {"train-960": ("train-clean-100", "train-clean-360", "train-other-500")}


def _subset_dirs(root: Path, subset: str) -> List[Path]:
    if (root / "LibriSpeech").is_dir() and not any(find_subdir(root, s) for s in SUBSETS):
        root = root / "LibriSpeech"
    names = []
    for part in subset.split("+"):
        key = part.strip().lower().replace("_", "-")
        names.extend(ALIASES.get(key, (key,)))
    dirs = []
    for name in names:
        d = find_subdir(root, name)
        if d is None:
            raise FileNotFoundError(f"LibriSpeech subset {name!r} not found under {root} (subsets: {', '.join(SUBSETS)})")
        dirs.append(d)
    return dirs


def prepare_librispeech(corpus_dir, out_dir, subset: str) -> Path:
    """LibriSpeech ``subset`` of ``corpus_dir`` -> Kaldi data dir ``out_dir``."""

    def collect(b: DataDirBuilder) -> None:
        for d in _subset_dirs(Path(corpus_dir), subset):
            for trans in sorted(d.glob("*/*/*.trans.txt")):
                for _, utt, transcript in iter_kv(trans):
                    audio = (trans.parent / f"{utt}.flac").resolve()
                    b.add(utt, audio=str(audio), audio_file=audio, speaker=utt.split("-")[0], transcript=transcript)

    return run_prepare("librispeech", corpus_dir, out_dir, collect)
