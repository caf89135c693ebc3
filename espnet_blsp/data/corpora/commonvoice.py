"""Common Voice (English) -> Kaldi data dir.

Layout: ``<root>/<split>.tsv`` (columns client_id, path, sentence, ...; split e.g.
train, dev, test, validated) and ``<root>/clips/<path>`` (mp3; early releases list the
path without ".mp3", which is then appended). Speaker: the first 16 hex digits of
client_id; utterance id ``<speaker>-<clip name without extension>``. Audio: the clip
path (soundfile decodes mp3; see espnet_blsp.utils.audio).
"""

from pathlib import Path

from espnet_blsp.data.corpora.common import DataDirBuilder, read_table, run_prepare

SPEAKER_CHARS = 16


def clip_path(clips: Path, name: str) -> Path:
    """``clips/name``, with ".mp3" appended when the tsv omits the extension."""
    p = clips / name
    return p if p.suffix or p.is_file() else p.with_name(p.name + ".mp3")


def speaker_of(client_id: str) -> str:
    return client_id[:SPEAKER_CHARS] or "anonymous"


def prepare_commonvoice(corpus_dir, out_dir, subset: str) -> Path:
    """Common Voice ``<subset>.tsv`` of ``corpus_dir`` -> Kaldi data dir ``out_dir``."""
    root = Path(corpus_dir)

    def collect(b: DataDirBuilder) -> None:
        for _, row in read_table(root / f"{subset}.tsv", required=("client_id", "path", "sentence")):
            audio = clip_path(root / "clips", row["path"]).resolve()
            spk = speaker_of(row["client_id"])
            b.add(f"{spk}-{Path(row['path']).stem}", audio=str(audio), audio_file=audio, speaker=spk,
                  transcript=row["sentence"])

    return run_prepare("commonvoice", corpus_dir, out_dir, collect)
