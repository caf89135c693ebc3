"""CoVoST 2 (English -> X) over Common Voice audio -> Kaldi data dir for ST.

Layout (the output of CoVoST's get_covost_splits.py): ``<root>/covost_v2.en_<lang>.<split>.tsv``
with columns path, sentence, translation, client_id; split train, dev or test. Without
it, the release file ``<root>/covost_v2.en_<lang>.tsv`` (path, translation, split) is
joined with Common Voice's ``<audio_dir>/validated.tsv`` (path, sentence, client_id).
Audio: ``<audio_dir>/clips/<path>`` where audio_dir is the Common Voice English root
(default: ``<root>``). Writes ``text`` (source transcript, normalised), ``translation``
(the target text as released), ``lang`` (the target language code) and the usual files;
ids and speakers as for Common Voice.
"""

from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

from espnet_blsp.data.corpora.common import DataDirBuilder, read_table, run_prepare
from espnet_blsp.data.corpora.commonvoice import clip_path, speaker_of


def _rows(root: Path, audio_dir: Path, lang: str, split: str) -> Iterator[Tuple[str, str, str, str]]:
    """(path, sentence, translation, client_id) of the split."""
    split_tsv = root / f"covost_v2.en_{lang}.{split}.tsv"
    if split_tsv.is_file():
        for _, row in read_table(split_tsv, required=("path", "sentence", "translation", "client_id")):
            yield row["path"], row["sentence"], row["translation"], row["client_id"]
        return
    release = root / f"covost_v2.en_{lang}.tsv"
    validated = audio_dir / "validated.tsv"
    if not release.is_file():
        raise FileNotFoundError(f"CoVoST 2 en->{lang} not found: neither {split_tsv} nor {release}")
    if not validated.is_file():
        raise FileNotFoundError(f"{release} needs Common Voice's {validated} for sentences and speakers")
    cv: Dict[str, Tuple[str, str]] = {
        row["path"]: (row["sentence"], row["client_id"])
        for _, row in read_table(validated, required=("client_id", "path", "sentence"))
    }
    for lineno, row in read_table(release, required=("path", "translation", "split")):
        if row["split"] != split:
            continue
        sentence, client = cv.get(row["path"], ("", ""))
        yield row["path"], sentence, row["translation"], client


def prepare_covost2(corpus_dir, out_dir, subset: str, lang: str,
                    audio_dir: Optional[str] = None) -> Path:
    """CoVoST 2 en-><lang> ``subset`` -> Kaldi data dir ``out_dir`` (see the module doc)."""
    if not lang:
        raise ValueError("CoVoST 2 needs the target language (--lang, e.g. de)")
    root = Path(corpus_dir)
    audio_root = Path(audio_dir) if audio_dir else root

    def collect(b: DataDirBuilder) -> None:
        if not (audio_root / "clips").is_dir():
            raise FileNotFoundError(f"Common Voice clips dir not found: {audio_root / 'clips'} (set --audio_dir)")
        for path, sentence, translation, client in _rows(root, audio_root, lang, subset):
            audio = clip_path(audio_root / "clips", path).resolve()
            spk = speaker_of(client)
            b.add(f"{spk}-{Path(path).stem}", audio=str(audio), audio_file=audio, speaker=spk,
                  transcript=sentence, translation=translation, lang=lang)

    return run_prepare("covost2", corpus_dir, out_dir, collect)
