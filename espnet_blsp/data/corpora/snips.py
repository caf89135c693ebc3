"""SNIPS SmartLights (English, close field) -> Kaldi data dir for intent classification.

Official layout (``snips_slu_data_v1.0/smart-lights-en-close-field``; ``<root>`` may be
either dir):
    dataset.json                 Snips NLU format: {"intents": {<Intent>: {"utterances":
                                 [{"data": [{"text": ...}, ...]}]}}}; an utterance's text
                                 is the concatenation of its chunks
    speech_corpus/metadata.json  {<key>: {"filename": "0.wav", "text": ..., "worker": {"id": ...}}}
    speech_corpus/audio/<filename>
The intent of a recording is found by matching its text to the dataset.json utterances
(compared after EnglishNormalizer); recordings whose text matches no utterance, or
utterances of different intents, are excluded and listed. The corpus has no official
split and BLSP evaluates on all of it, so ``subset`` is ignored for this layout.

Simple layout (documented fallback, used when dataset.json is absent):
``<root>/<subset>.tsv`` with a header and columns path (relative to <root>), transcript,
intent, and optionally speaker.

``label`` holds the intent name as in BLSP's instruction (e.g. SwitchLightOn).
Speaker: the crowd worker id (simple layout: the speaker column, else "snips");
utterance id ``<speaker>-<file name without extension>``.
"""

import json
from pathlib import Path
from typing import Dict, Set

from espnet_blsp.data.corpora.common import DataDirBuilder, read_table, run_prepare
from espnet_blsp.data.kaldi_dir import DataDirError

CLOSE_FIELD = "smart-lights-en-close-field"


def _official_root(root: Path) -> Path:
    return root / CLOSE_FIELD if (root / CLOSE_FIELD / "dataset.json").is_file() else root


def _intents_by_text(dataset: Path, norm) -> Dict[str, Set[str]]:
    with open(dataset, encoding="utf-8") as f:
        try:
            intents = json.load(f)["intents"]
        except (json.JSONDecodeError, KeyError) as e:
            raise DataDirError(f"{dataset}: not a Snips NLU dataset ({e})") from None
    out: Dict[str, Set[str]] = {}
    for intent, spec in intents.items():
        for utt in spec.get("utterances", []):
            text = norm("".join(chunk.get("text", "") for chunk in utt.get("data", [])))
            out.setdefault(text, set()).add(intent)
    return out


def prepare_snips(corpus_dir, out_dir, subset: str = "") -> Path:
    """SNIPS SmartLights close-field of ``corpus_dir`` -> ``out_dir`` (see the module doc)."""
    root = _official_root(Path(corpus_dir))

    def collect_official(b: DataDirBuilder) -> None:
        intents = _intents_by_text(root / "dataset.json", b.norm)
        meta_path = root / "speech_corpus" / "metadata.json"
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        for key, rec in meta.items():
            try:
                filename, text, worker = rec["filename"], rec["text"], rec["worker"]["id"]
            except (KeyError, TypeError) as e:
                raise DataDirError(f"{meta_path}: entry {key} lacks {e}") from None
            spk = str(worker)
            utt = f"{spk}-{Path(filename).stem}"
            found = intents.get(b.norm(text), set())
            if len(found) != 1:
                why = "matches no utterance" if not found else f"is ambiguous ({sorted(found)})"
                b.exclude(utt, f"intent unknown: the text {text!r} {why} in {root / 'dataset.json'}")
                continue
            audio = (root / "speech_corpus" / "audio" / filename).resolve()
            b.add(utt, audio=str(audio), audio_file=audio, speaker=spk, transcript=text, label=found.pop())

    def collect_simple(b: DataDirBuilder) -> None:
        tsv = root / f"{subset or 'all'}.tsv"
        for _, row in read_table(tsv, required=("path", "transcript", "intent")):
            spk = row.get("speaker") or "snips"
            audio = (root / row["path"]).resolve()
            b.add(f"{spk}-{Path(row['path']).stem}", audio=str(audio), audio_file=audio, speaker=spk,
                  transcript=row["transcript"], label=row["intent"])

    collect = collect_official if (root / "dataset.json").is_file() else collect_simple
    return run_prepare("snips", corpus_dir, out_dir, collect)
