"""Fluent Speech Commands -> Kaldi data dir for intent classification.

Layout: ``<root>/data/{train,valid,test}_data.csv`` (columns: an unnamed index, path,
speakerId, transcription, action, object, location) with ``path`` relative to ``<root>``
(``wavs/speakers/<spk>/<uuid>.wav``). ``<root>`` may also hold
``fluent_speech_commands_dataset/``. Subsets: train, valid (alias dev), test.

Label mapping: ``label = "<action> <object>"``, the location dropped, the object "none"
kept: (activate, lamp, none) -> "activate lamp"; (change language, Chinese, none) ->
"change language Chinese"; (change language, none, none) -> "change language none";
(increase, heat, kitchen) -> "increase heat". These are the class strings of BLSP's FSC
instruction (paper Table 11). FSC's 31 intents give 19 such labels; the paper's list
has 18 (it lacks "deactivate lights", which is still written as the gold label).
Utterance id: ``<speakerId>-<wav name without extension>``.
"""

from pathlib import Path

from espnet_blsp.data.corpora.common import DataDirBuilder, read_table, run_prepare

ALIASES = {"dev": "valid", "validation": "valid"}


def fsc_label(action: str, obj: str) -> str:
    """FSC (action, object) -> the BLSP class string, e.g. ("activate", "lamp") -> "activate lamp"."""
    return f"{action.strip()} {obj.strip()}"


def prepare_fsc(corpus_dir, out_dir, subset: str) -> Path:
    """FSC ``subset`` (train/valid/test) of ``corpus_dir`` -> ``out_dir`` (see the module doc)."""
    root = Path(corpus_dir)
    if (root / "fluent_speech_commands_dataset").is_dir():
        root = root / "fluent_speech_commands_dataset"
    split = ALIASES.get(subset.lower(), subset.lower())

    def collect(b: DataDirBuilder) -> None:
        csv_path = root / "data" / f"{split}_data.csv"
        cols = ("path", "speakerId", "transcription", "action", "object", "location")
        for _, row in read_table(csv_path, delimiter=",", required=cols):
            spk = row["speakerId"]
            audio = (root / row["path"]).resolve()
            b.add(f"{spk}-{Path(row['path']).stem}", audio=str(audio), audio_file=audio, speaker=spk,
                  transcript=row["transcription"], label=fsc_label(row["action"], row["object"]))

    return run_prepare("fsc", corpus_dir, out_dir, collect)
