#!/usr/bin/env python3
"""Stage 2: dump Whisper log-mel features (or frozen encoder outputs) to kaldiio ark/scp.

Usage:
    python -m espnet_blsp.bin.dump_feats --data_dir data/test_clean \
        --out_dir dump/test_clean --speech_encoder assets/whisper-base --nj 4 --job 1
    python -m espnet_blsp.bin.dump_feats --data_dir data/test_clean \
        --out_dir dump/test_clean --merge --nj 4
    python -m espnet_blsp.bin.dump_feats --out_dir dump/test_clean --verify   # before skipping a .done set

Each job writes ``out_dir/split<nj>/feats.<job>.{ark,scp}`` incrementally and resumes
where it stopped. ``--merge`` joins the jobs into ``out_dir/feats.scp`` plus
``speech_shape`` and copies the per-utterance text files for the kept utterances.
Utterances whose audio is missing or corrupt, longer than 30 s, or shorter than one
adapter frame are excluded and listed with the reason (naming the audio) in
``out_dir/excluded.txt``; each exclusion is also logged with the utterance and the file.

``--verify`` checks, from the matrix headers only, that every feats.scp entry lies inside
its ark (an ark cut short by a full disk or a kill leaves entries that point past its end).
Broken entries are logged with the utterance and ark, dropped from their job's list
(``split<nj>/feats.<job>.scp``) so that the dump jobs redo just them, ``.done`` is
removed, and the exit status is 1.
"""

import argparse
import json
import logging
import os
import struct
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import kaldiio
import numpy as np
from tqdm import tqdm

from espnet_blsp.utils.resumable import LineAppender, recover_lines, split_for_job, threads_per_job

SAMPLE_RATE = 16000
HOP = 160  # Whisper: 10 ms frames
MAX_FRAMES = 3000  # 30 s
# Per-utterance files carried from data/<set> to dump/<set> when present.
# ``text.prompt`` (the transcript as the LLM sees it) becomes dump/<set>/text.
TEXT_FILES = ("text", "text.prompt", "response", "instruction", "translation", "label", "question")


def read_kv(path: Path) -> Dict[str, str]:
    from espnet_blsp.data.kaldi_dir import read_kv as _read_kv

    return _read_kv(path)


def min_frames_for_adapter(stride: int = 8) -> int:
    """Fewest mel frames that give one CNN-adapter output (encoder halves, CNN /8)."""
    return 2 * stride - 1


class AudioSource:
    """wav.scp (+ segments) of a Kaldi data dir, loaded per utterance."""

    def __init__(self, data_dir: Path):
        from espnet_blsp.utils.audio import load_wav

        self._load = load_wav
        self.wav = read_kv(data_dir / "wav.scp")
        seg_path = data_dir / "segments"
        self.segments: Optional[Dict[str, Tuple[str, float, float]]] = None
        if seg_path.exists():
            self.segments = {}
            for utt, value in read_kv(seg_path).items():
                rec, start, end = value.split()
                self.segments[utt] = (rec, float(start), float(end))
        self._cache: Tuple[Optional[str], Optional[np.ndarray]] = (None, None)

    def keys(self):
        return list(self.segments) if self.segments is not None else list(self.wav)

    def describe(self, utt: str) -> str:
        """Where ``utt``'s audio comes from: its wav.scp entry (and segment), for messages."""
        if self.segments is None:
            return self.wav.get(utt, "?")
        rec, start, end = self.segments[utt]
        return f"{self.wav.get(rec, rec)} [{start:.2f}-{end:.2f} s]"

    def __call__(self, utt: str) -> np.ndarray:
        if self.segments is None:
            return self._load(self.wav[utt], SAMPLE_RATE, utt_id=utt)
        rec, start, end = self.segments[utt]
        if rec not in self.wav:
            raise ValueError(f"utterance {utt}: recording {rec} is not in wav.scp")
        if self._cache[0] != rec:
            self._cache = (rec, self._load(self.wav[rec], SAMPLE_RATE, utt_id=rec))
        audio = self._cache[1]
        return audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]


def run_job(args) -> None:
    import torch

    from espnet_blsp.encoders.features import WhisperLogMel

    data_dir, out_dir = Path(args.data_dir), Path(args.out_dir)
    split_dir = out_dir / f"split{args.nj}"
    split_dir.mkdir(parents=True, exist_ok=True)
    ark = split_dir / f"feats.{args.job}.ark"
    scp = split_dir / f"feats.{args.job}.scp"
    bad = split_dir / f"excluded.{args.job}"

    scp.touch()  # a job whose utterances are all excluded still leaves its (empty) list
    source = AudioSource(data_dir)
    keys = split_for_job(source.keys(), args.nj, args.job)
    done = set(recover_lines(scp)) | set(recover_lines(bad))
    todo = [k for k in keys if k not in done]
    logging.info(
        f"job {args.job}/{args.nj}: {len(keys)} utterances, {len(keys) - len(todo)} "
        f"already done; writing {ark}"
    )
    n_mels = encoder_n_mels(args.speech_encoder)
    frontend = WhisperLogMel(n_mels=n_mels)
    encoder = load_encoder(args) if args.dump_encoder_output else None
    min_frames = min_frames_for_adapter()

    with LineAppender(bad) as bad_out:
        for utt in tqdm(todo, desc=f"dump {data_dir.name} job {args.job}", mininterval=5):
            reason = None
            try:
                audio = source(utt)
            except Exception as e:  # noqa: BLE001 - reported, never silently dropped
                reason = f"unreadable audio: {e}"
            else:
                feats = frontend(audio)  # (T, n_mels)
                if feats.shape[0] > MAX_FRAMES:
                    reason = f"too long: {feats.shape[0] / 100:.2f} s > 30 s: {source.describe(utt)}"
                elif feats.shape[0] < min_frames:
                    reason = (f"too short: {feats.shape[0]} frames ({feats.shape[0] / 100:.2f} s) < {min_frames}: "
                              f"{source.describe(utt)}")
            if reason is not None:
                logging.warning(f"utterance {utt} excluded ({bad}): {reason}")
                bad_out.write([(utt, reason)])
                continue
            if encoder is not None:
                with torch.no_grad():
                    x = torch.from_numpy(feats)[None]
                    h, h_lens = encoder(x, torch.tensor([x.shape[1]]))
                feats = h[0, : int(h_lens[0])].float().numpy()  # (T', D_enc)
            # save_ark appends the record and then its scp line
            kaldiio.save_ark(str(ark), {utt: feats.astype(np.float32)}, scp=str(scp), append=True)


def encoder_n_mels(path: str) -> int:
    from espnet_blsp.utils.model_paths import resolve_model_dir

    config = resolve_model_dir(path, "speech_encoder") / "config.json"
    return int(json.loads(config.read_text())["num_mel_bins"])


def load_encoder(args):
    from espnet_blsp.encoders.whisper import WhisperSpeechEncoder

    return WhisperSpeechEncoder(args.speech_encoder, freeze=True).eval()


def merge(args) -> None:
    data_dir, out_dir = Path(args.data_dir), Path(args.out_dir)
    split_dir = out_dir / f"split{args.nj}"
    feats: Dict[str, str] = {}
    excluded: Dict[str, str] = {}
    for job in range(1, args.nj + 1):
        scp = split_dir / f"feats.{job}.scp"
        if not scp.exists():
            raise FileNotFoundError(f"{scp} is missing: job {job} has not run")
        feats.update(recover_lines(scp))
        excluded.update(recover_lines(split_dir / f"excluded.{job}"))
    source_keys = AudioSource(data_dir).keys()
    missing = sorted(set(source_keys) - set(feats) - set(excluded))
    if missing:
        raise RuntimeError(
            f"{len(missing)} utterances of {data_dir} have neither features nor an "
            f"exclusion reason (e.g. {missing[:5]}); re-run the dump jobs"
        )
    broken = find_broken(feats)
    if broken:  # an ark cut short under an intact job list: make the jobs redo those entries
        drop_broken(split_dir, broken)
        raise RuntimeError(f"{len(broken)} utterances of {split_dir} have broken features "
                           f"(e.g. {sorted(broken)[:5]}); re-run the dump jobs, they redo just these")
    keys = sorted(feats)
    with open(out_dir / "feats.scp", "w", encoding="utf-8") as f:
        f.writelines(f"{k} {feats[k]}\n" for k in keys)
    with open(out_dir / "speech_shape", "w", encoding="utf-8") as f:
        for k in keys:
            shape = kaldiio.load_mat(feats[k]).shape
            f.write(f"{k} {','.join(map(str, shape))}\n")
    with open(out_dir / "excluded.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{k} {excluded[k]}\n" for k in sorted(excluded))
    has_prompt = (data_dir / "text.prompt").exists()
    for name in TEXT_FILES:
        src = data_dir / name
        if not src.exists() or (name == "text" and has_prompt):
            continue
        table = read_kv(src)
        lost = [k for k in keys if k not in table]
        if lost:
            raise ValueError(f"{src} lacks {len(lost)} utterances, e.g. {lost[:5]}")
        with open(out_dir / name.replace("text.prompt", "text"), "w", encoding="utf-8") as f:
            f.writelines(f"{k} {table[k]}\n" for k in keys)
    logging.info(
        f"{out_dir}: {len(keys)} utterances dumped, {len(excluded)} excluded "
        f"(see {out_dir / 'excluded.txt'})"
    )


_MATRIX_HEADER = 15  # "\\0B", "FM ", then rows and cols, each a size byte (4) and an int32
_ELEMENT_BYTES = {b"FM ": 4, b"DM ": 8}  # float / double matrices (kaldiio.save_ark writes FM)


def ark_entry_problem(spec: str, handles: Dict[str, object]) -> Optional[str]:
    """Why the matrix at ``path.ark:offset`` does not fit in its ark (None if it does),
    from its header alone; ``handles`` caches open arks."""
    path, _, offset = spec.rpartition(":")
    if not path or not offset.isdigit():
        return f"not an ark:offset entry: {spec}"
    if path not in handles:
        try:
            handles[path] = open(path, "rb")
        except OSError as e:
            return f"cannot open {path}: {e.strerror}"
    f = handles[path]
    size = os.fstat(f.fileno()).st_size
    f.seek(int(offset))
    head = f.read(_MATRIX_HEADER)
    if len(head) < _MATRIX_HEADER:
        return f"{path} ends at byte {size}, inside the header at {offset} (the ark was cut short)"
    if head[:2] != b"\0B" or head[5] != 4 or head[10] != 4:
        return f"{path}: no binary matrix header at byte {offset}"
    width = _ELEMENT_BYTES.get(head[2:5])
    if width is None:
        return None  # another matrix type (e.g. compressed): not checked here
    rows, cols = struct.unpack("<i", head[6:10])[0], struct.unpack("<i", head[11:15])[0]
    end = int(offset) + _MATRIX_HEADER + rows * cols * width
    if end > size:
        return (f"{path} ends at byte {size}, but the {rows}x{cols} matrix at {offset} needs {end} "
                "(the ark was cut short)")
    return None


def load_feats(spec: str, utt: str) -> np.ndarray:
    """``kaldiio.load_mat(spec)`` whose error names the utterance and the ark (kaldiio reads
    a record cut short as a bare ``cannot reshape array``)."""
    try:
        return kaldiio.load_mat(spec)
    except Exception as e:  # noqa: BLE001 - re-raised with the utterance and the file
        handles: Dict[str, object] = {}
        try:
            problem = ark_entry_problem(spec, handles) or f"{spec}: {e}"
        finally:
            for f in handles.values():
                f.close()
        raise ValueError(f"utterance {utt}: cannot read its features: {problem}; "
                         "re-run stage 2, which dumps broken entries again") from None


def find_broken(entries: Dict[str, str]) -> Dict[str, Tuple[str, str]]:
    """utt -> (ark, problem) for every ``path.ark:offset`` entry that does not fit its ark."""
    handles: Dict[str, object] = {}
    broken: Dict[str, Tuple[str, str]] = {}
    try:
        for utt, spec in entries.items():
            problem = ark_entry_problem(spec, handles)
            if problem is not None:
                broken[utt] = (spec.rpartition(":")[0], problem)
    finally:
        for f in handles.values():
            f.close()
    return broken


def drop_broken(scp: Path, broken: Dict[str, Tuple[str, str]]) -> None:
    """Log the broken entries of ``scp`` and drop them from their jobs' lists
    (``split<nj>/feats.<job>.scp``, next to each ark), so the dump jobs redo them."""
    for i, (utt, (_, problem)) in enumerate(sorted(broken.items())):
        if i < 10:
            logging.warning(f"{scp}: utterance {utt}: {problem}")
    logging.warning(f"{scp}: {len(broken)} broken entries; dropped from their job lists, to be dumped again")
    for ark in sorted({a for a, _ in broken.values()}):
        job_scp = Path(ark).with_suffix(".scp")  # split<nj>/feats.<job>.ark -> .scp
        if job_scp.is_file():
            drop_entries(job_scp, set(broken))


def verify(args) -> bool:
    """True when every entry of ``out_dir/feats.scp`` fits in its ark; otherwise log the
    broken ones, drop them from their job lists, remove ``.done`` and return False."""
    out_dir = Path(args.out_dir)
    scp = out_dir / "feats.scp"
    broken = find_broken(read_kv(scp)) if scp.is_file() else {}
    if scp.is_file() and not broken:
        return True
    if not scp.is_file():
        logging.warning(f"{out_dir}: no feats.scp; dumping again")
    else:
        drop_broken(scp, broken)
    (out_dir / ".done").unlink(missing_ok=True)
    return False


def drop_entries(scp: Path, utts) -> None:
    """Rewrite ``scp`` without the lines of ``utts`` (atomically: a kill leaves either)."""
    lines: List[str] = [f"{k} {v}\n" for k, v in recover_lines(scp).items() if k not in utts]
    tmp = scp.with_name(scp.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, scp)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", help="Kaldi data dir (dump jobs, --merge)")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--speech_encoder", help="Whisper checkpoint dir (n_mels, encoder)")
    p.add_argument("--dump_encoder_output", action="store_true",
                   help="store frozen encoder outputs instead of log-mel features")
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--job", type=int, default=1)
    p.add_argument("--merge", action="store_true", help="merge the jobs' outputs")
    p.add_argument("--verify", action="store_true",
                   help="check that every feats.scp entry fits in its ark (headers only); exit 1 if not")
    return p


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    if args.verify:  # headers only: no torch needed, so it stays quick
        sys.exit(0 if verify(args) else 1)
    import torch

    torch.set_num_threads(threads_per_job(args.nj))
    if not args.data_dir:
        raise SystemExit("--data_dir is required")
    if args.merge:
        merge(args)
    else:
        if not args.speech_encoder:
            raise SystemExit("--speech_encoder is required")
        run_job(args)


if __name__ == "__main__":
    main()
