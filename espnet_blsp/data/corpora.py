"""Stage 1: corpus layouts -> Kaldi data dirs.

Each ``prepare_<corpus>(src, dst, subset)`` writes ``wav.scp``, ``text`` (normalised
for scoring), ``text.prompt`` (the transcript as the LLM sees it), ``utt2spk`` and
``excluded.txt`` (utterances left out, with the reason), then marks ``dst/.done``.
"""

import csv
import logging
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Tuple

from espnet_blsp.data.kaldi_dir import check_data_dir, read_kv, write_kv
from espnet_blsp.text.normalizer import EnglishNormalizer, normalize_for_prompt

# (utt_id, wav.scp value, speaker, transcript)
Row = Tuple[str, str, str, str]


def write_data_dir(rows: List[Row], dst: Path, excluded: Dict[str, str]) -> None:
    norm = EnglishNormalizer()
    wav, text, prompt, spk = {}, {}, {}, {}
    for utt, spec, speaker, transcript in rows:
        if utt in wav:
            excluded[utt] = "duplicate utterance id"
            continue
        if not transcript.strip() or not norm(transcript):
            excluded[utt] = "empty transcript"
            continue
        wav[utt], spk[utt] = spec, speaker
        text[utt], prompt[utt] = norm(transcript), normalize_for_prompt(transcript)
    dst.mkdir(parents=True, exist_ok=True)
    for name, table in (("wav.scp", wav), ("text", text), ("text.prompt", prompt), ("utt2spk", spk)):
        write_kv(dst / name, table)
    write_kv(dst / "excluded.txt", excluded)
    check_data_dir(dst)
    logging.info(f"{dst}: {len(wav)} utterances written, {len(excluded)} excluded (see {dst / 'excluded.txt'})")


def prepare_kaldi(src: Path, dst: Path, subset: str = "") -> None:
    """Any existing Kaldi data dir (wav.scp, text[, utt2spk]); ``src/subset`` if given."""
    if subset and (src / subset).is_dir():
        src = src / subset
    wav = read_kv(src / "wav.scp")
    text = read_kv(src / "text")
    spk = read_kv(src / "utt2spk") if (src / "utt2spk").exists() else {k: k for k in text}
    if (src / "segments").exists():
        raise NotImplementedError(f"{src}: Kaldi dirs with segments are not supported by stage 1 yet")
    excluded = {k: "no audio in wav.scp" for k in text if k not in wav}
    excluded.update({k: "no transcript in text" for k in wav if k not in text})
    rows = [(k, wav[k], spk.get(k, k), text[k]) for k in sorted(text) if k in wav]
    write_data_dir(rows, dst, excluded)
    for extra in ("translation", "label", "question"):
        if (src / extra).exists():
            table = read_kv(src / extra)
            write_kv(dst / extra, {k: table[k] for k in read_kv(dst / "text")})


def prepare_librispeech(src: Path, dst: Path, subset: str) -> None:
    """<root>/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt + .flac; subset e.g. test-clean."""
    root = src / subset.replace("_", "-")
    if not root.is_dir():
        raise FileNotFoundError(f"LibriSpeech subset not found: {root}")
    rows, excluded = [], {}
    for trans in sorted(root.glob("*/*/*.trans.txt")):
        for utt, transcript in read_kv(trans).items():
            audio = trans.parent / f"{utt}.flac"
            if not audio.exists():
                excluded[utt] = f"missing audio {audio}"
                continue
            rows.append((utt, str(audio.resolve()), utt.split("-")[0], transcript))
    write_data_dir(rows, dst, excluded)


def prepare_commonvoice(src: Path, dst: Path, subset: str) -> None:
    """<root>/<subset>.tsv (client_id, path, sentence, ...) + <root>/clips/."""
    tsv = src / f"{subset}.tsv"
    if not tsv.exists():
        raise FileNotFoundError(f"Common Voice split not found: {tsv}")
    rows, excluded = [], {}
    with open(tsv, encoding="utf-8", newline="") as f:
        for rec in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            utt = f"{rec['client_id'][:16]}-{Path(rec['path']).stem}"
            audio = src / "clips" / rec["path"]
            if not audio.exists():
                excluded[utt] = f"missing audio {audio}"
                continue
            rows.append((utt, str(audio.resolve()), rec["client_id"][:16], rec["sentence"]))
    write_data_dir(rows, dst, excluded)


CORPORA: Dict[str, Callable[[Path, Path, str], None]] = {
    "kaldi": prepare_kaldi,
    "librispeech": prepare_librispeech,
    "commonvoice": prepare_commonvoice,
}


def prepare(corpus: str, src: Path, dst: Path, subset: str = "") -> None:
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; supported: {sorted(CORPORA)}")
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"corpus dir not found: {src}")
    if (dst / ".done").exists():
        logging.info(f"{dst} is done, skipped")
        return
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    CORPORA[corpus](src, tmp, subset)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    (dst / ".done").touch()
