#!/usr/bin/env python3
"""Stage 2: dump Whisper log-mel features (or frozen encoder outputs) to kaldiio ark/scp.

Usage:
    python -m espnet_blsp.bin.dump_feats --data_dir data/test_clean \
        --out_dir dump/test_clean --speech_encoder assets/whisper-base --nj 4 --job 1
    python -m espnet_blsp.bin.dump_feats --data_dir data/test_clean \
        --out_dir dump/test_clean --merge --nj 4

Each job writes ``out_dir/split<nj>/feats.<job>.{ark,scp}`` incrementally and resumes
where it stopped. ``--merge`` joins the jobs into ``out_dir/feats.scp`` plus
``speech_shape`` and copies the per-utterance text files for the kept utterances.
Utterances whose audio is missing or corrupt, longer than 30 s, or shorter than one
adapter frame are excluded and listed with the reason in ``out_dir/excluded.txt``.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, Optional, Tuple

import kaldiio
import numpy as np
import torch
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
            try:
                audio = source(utt)
            except Exception as e:  # noqa: BLE001 - reported, never silently dropped
                bad_out.write([(utt, f"unreadable audio: {e}")])
                continue
            feats = frontend(audio)  # (T, n_mels)
            if feats.shape[0] > MAX_FRAMES:
                bad_out.write([(utt, f"too long: {feats.shape[0] / 100:.2f} s > 30 s")])
                continue
            if feats.shape[0] < min_frames:
                bad_out.write([(utt, f"too short: {feats.shape[0]} frames < {min_frames}")])
                continue
            if encoder is not None:
                with torch.no_grad():
                    x = torch.from_numpy(feats)[None]
                    h, h_lens = encoder(x, torch.tensor([x.shape[1]]))
                feats = h[0, : int(h_lens[0])].float().numpy()  # (T', D_enc)
            # save_ark appends the record and then its scp line
            kaldiio.save_ark(str(ark), {utt: feats.astype(np.float32)}, scp=str(scp), append=True)


def encoder_n_mels(path: str) -> int:
    config = Path(path) / "config.json"
    if not config.exists():
        raise FileNotFoundError(
            f"speech encoder config {config} not found: --speech_encoder must be a "
            "local Whisper checkpoint directory"
        )
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


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--speech_encoder", help="Whisper checkpoint dir (n_mels, encoder)")
    p.add_argument("--dump_encoder_output", action="store_true",
                   help="store frozen encoder outputs instead of log-mel features")
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--job", type=int, default=1)
    p.add_argument("--merge", action="store_true", help="merge the jobs' outputs")
    return p


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    torch.set_num_threads(threads_per_job(args.nj))
    if args.merge:
        merge(args)
    else:
        if not args.speech_encoder:
            raise SystemExit("--speech_encoder is required")
        run_job(args)


if __name__ == "__main__":
    main()
