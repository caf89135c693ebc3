"""SLUE-VoxCeleb -> Kaldi data dir for sentiment classification.

Layout: ``<root>/slue-voxceleb_<subset>.tsv`` (columns id, normalized_text, speaker_id,
split, sentiment, start_second, end_second; the blind test file
``slue-voxceleb_test_blind.tsv`` is used when ``..._test.tsv`` is absent) and
``<root>/<subset>_raw/<id>.flac``. ``<root>`` may also hold ``slue-voxceleb/``.
Subsets: fine-tune (alias train), dev, test.

The raw flac files are cut to [start_second, end_second] through ``segments``
(recording = id). If ``<subset>_raw/`` is absent but ``<subset>/<id>.flac`` exists (clips
already trimmed by the SLUE toolkit), those files are used whole.
``label``: sentiment lowercased (positive / negative / neutral, the words of BLSP's
instruction); rows labelled "Disagreement" or "<mixed>" are excluded and listed. A file
without a sentiment column (blind test) gives no label file.
Utterance id: ``<speaker_id>-<id>`` (the id itself when it already starts with the speaker).
"""

from pathlib import Path

from espnet_blsp.data.corpora.common import DataDirBuilder, find_subdir, read_table, run_prepare, speaker_prefixed
from espnet_blsp.data.kaldi_dir import DataDirError

ALIASES = {"train": "fine-tune", "fine_tune": "fine-tune", "finetune": "fine-tune", "valid": "dev"}
SENTIMENTS = ("positive", "negative", "neutral")


def prepare_slue_voxceleb(corpus_dir, out_dir, subset: str) -> Path:
    """SLUE-VoxCeleb ``subset`` of ``corpus_dir`` -> ``out_dir`` (see the module doc)."""
    root = Path(corpus_dir)
    if (root / "slue-voxceleb").is_dir():
        root = root / "slue-voxceleb"
    split = ALIASES.get(subset.lower(), subset.lower())

    def collect(b: DataDirBuilder) -> None:
        tsv = root / f"slue-voxceleb_{split}.tsv"
        if not tsv.is_file() and (root / f"slue-voxceleb_{split}_blind.tsv").is_file():
            tsv = root / f"slue-voxceleb_{split}_blind.tsv"
        raw_dir, trimmed_dir = find_subdir(root, f"{split}_raw"), find_subdir(root, split)
        if raw_dir is None and trimmed_dir is None:
            raise FileNotFoundError(f"SLUE-VoxCeleb audio not found: neither {root / (split + '_raw')} nor {root / split}")
        for lineno, row in read_table(tsv, required=("id", "normalized_text", "speaker_id")):
            rid, spk = row["id"], row["speaker_id"]
            utt = speaker_prefixed(spk, rid)
            fields = {}
            if "sentiment" in row:
                sentiment = row["sentiment"].strip().lower()
                if sentiment not in SENTIMENTS:
                    b.exclude(utt, f"sentiment {row['sentiment']!r} is not one of {SENTIMENTS}")
                    continue
                fields["label"] = sentiment
            if raw_dir is not None:
                try:
                    start, end = float(row["start_second"]), float(row["end_second"])
                except (KeyError, ValueError):
                    raise DataDirError(f"{tsv}:{lineno}: bad or missing start_second/end_second") from None
                audio = (raw_dir / f"{rid}.flac").resolve()
                b.add(utt, audio=str(audio), audio_file=audio, speaker=spk, transcript=row["normalized_text"],
                      recording=rid, start=start, end=end, **fields)
            else:
                audio = (trimmed_dir / f"{rid}.flac").resolve()
                b.add(utt, audio=str(audio), audio_file=audio, speaker=spk, transcript=row["normalized_text"],
                      **fields)

    return run_prepare("slue_voxceleb", corpus_dir, out_dir, collect)
