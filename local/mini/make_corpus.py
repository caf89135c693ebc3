#!/usr/bin/env python3
"""The mini corpus: piper-synthesized train/dev/test speech plus real LibriVox/cards clips.

Usage:
    python local/mini/make_corpus.py --out_dir mini --num_train 2000 --num_dev 100 --num_test 100 --nj 2 \
        [--num_llm_train 600 --llm assets/smollm2-135m-instruct] [--num_fortune_train 600] \
        [--flite_share 0.5]

Writes ``<out_dir>/data/{mini_train,mini_dev,mini_test}/`` (and ``real_librivox``,
``real_cards`` when the pocketsphinx 5.1.1 source distribution can be fetched), each
with ``wav.scp`` (absolute paths to 16 kHz mono WAVs), ``text`` and ``utt2spk``. The training
set holds ``--num_train`` grammar sentences (sentences.py) and, with ``--num_llm_train``,
sentences on many topics written by the LLM (llm_sentences.py, cached in
``<out_dir>/llm_sentences.txt``) and, with ``--num_fortune_train``, sentences of Debian's
``fortunes`` package (fortune_sentences.py); dev and test are grammar sentences only.
The voice is piper's en_US-joe-medium with per-utterance length and noise scales
(seeded); with ``--flite_share``, that share of the training utterances (chosen at random,
seeded) is spoken instead by one of flite's voices slt, rms and awb (Debian's ``flite``; ~10x
faster than piper) at a random rate, so the adapter hears more than one speaker. Dev and
test stay in the piper voice. Synthesis resumes: finished WAVs are kept; a sentence that fails is logged in
``<out_dir>/failed.txt`` and left out, not fatal.
"""

import argparse
import json
import logging
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

from tqdm import tqdm

from espnet_blsp.utils.resumable import threads_per_job

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fortune_sentences import read_sentences as fortune_sentences  # noqa: E402
from llm_sentences import write_sentences  # noqa: E402
from sentences import make_splits  # noqa: E402

SR = 16000
FLITE_VOICES = ("slt", "rms", "awb")
_VOICE = None
_THREADS = 0  # ONNX threads per synthesis process (0: onnxruntime's default)


def _init_worker(threads: int) -> None:
    global _THREADS
    _THREADS = threads


def _voice():
    global _VOICE
    if _VOICE is None:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        from espnet_blsp.assets import packages as P

        P.ensure_asset("piper-joe")
        onnx = P.asset_path("piper-joe", "data/en_US-joe-medium.onnx")
        # one ONNX session with one thread per worker process (PiperVoice.load would open its
        # own session using every core in every worker, oversubscribing the CPU when --nj > 1)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = _THREADS
        opts.inter_op_num_threads = 1
        with open(f"{onnx}.json", encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        _VOICE = PiperVoice(
            session=onnxruntime.InferenceSession(str(onnx), sess_options=opts, providers=["CPUExecutionProvider"]),
            config=config,
        )
    return _VOICE


def check_flite() -> None:
    """flite and its voices must be there before a corpus asks for them."""
    try:
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(
            f"--flite_share needs Debian's flite ({e}): apt-get install flite (make install-mini does it "
            "as root), or run.sh --mini_flite_share 0"
        ) from None
    missing = [v for v in FLITE_VOICES if v not in listed.split()]
    if missing:
        raise SystemExit(f"flite lacks the voices {missing} (flite -lv: {listed.strip()})")


def synthesize(job: Tuple[str, str, str, float, float]) -> Tuple[str, str]:
    """(utt, text, wav path, length_scale, noise_scale) -> (utt, error or ""). The voice is the
    utterance id's prefix: ``joe`` (piper) or a flite voice (``noise_scale`` unused there)."""
    import soundfile

    from espnet_blsp.utils.audio import resample

    utt, text, path, length_scale, noise_scale = job
    voice = utt.split("-")[0]
    try:
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            if voice in FLITE_VOICES:
                subprocess.run(
                    ["flite", "-voice", voice, "--setf", f"duration_stretch={length_scale:.3f}", "-t", text, "-o", tmp.name],
                    check=True, capture_output=True, text=True,
                )
            else:
                from piper import SynthesisConfig

                with wave.open(tmp.name, "wb") as w:
                    _voice().synthesize_wav(text, w, syn_config=SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale))
            audio, sr = soundfile.read(tmp.name, dtype="float32")
        if audio.size == 0:
            return utt, "empty audio"
        audio = resample(audio, sr, SR)
        part = path + ".part.wav"
        soundfile.write(part, audio, SR)
        os.replace(part, path)
        return utt, ""
    except subprocess.CalledProcessError as e:
        return utt, f"flite exited with {e.returncode}: {(e.stderr or '').strip()[-200:]}"
    except Exception as e:  # noqa: BLE001 - one bad sentence must not stop the corpus
        return utt, f"{type(e).__name__}: {e}"


def write_dir(d: Path, rows: Dict[str, Tuple[str, str]]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    keys = sorted(rows)
    (d / "wav.scp").write_text("".join(f"{k} {rows[k][0]}\n" for k in keys))
    (d / "text").write_text("".join(f"{k} {rows[k][1]}\n" for k in keys))
    (d / "utt2spk").write_text("".join(f"{k} {k.split('-')[0]}\n" for k in keys))


def voice_of(name: str, i: int, flite_share: float, seed: int) -> str:
    """The voice of sentence ``i`` of split ``name``: a flite voice for a seeded ``flite_share``
    of the training sentences, else piper's joe (the same answer for any corpus size)."""
    if name != "train" or flite_share <= 0:
        return "joe"
    rng = random.Random(f"{seed}-voice-{i}")
    return rng.choice(FLITE_VOICES) if rng.random() < flite_share else "joe"


def synth_sets(out: Path, splits: Dict[str, List[str]], nj: int, seed: int, flite_share: float = 0.0) -> None:
    rng = random.Random(seed)
    jobs, meta = [], {}
    for name, sents in splits.items():
        wav_dir = out / "wav" / name
        wav_dir.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(sents):
            utt = f"{voice_of(name, i, flite_share, seed)}-{name}-{i:05d}"
            path = str((wav_dir / f"{utt}.wav").resolve())
            ls, ns = rng.uniform(0.85, 1.2), rng.uniform(0.4, 0.9)
            meta[utt] = (name, path, text)
            if not os.path.exists(path):
                jobs.append((utt, text, path, ls, ns))
    failed = {}
    if jobs:
        logging.info(f"synthesizing {len(jobs)} utterances with {nj} processes")
        from espnet_blsp.assets import packages as P

        P.ensure_asset("piper-joe")  # once, here: not in every worker at the same time
        threads = threads_per_job(nj)
        # spawn, not fork: this process may hold torch's thread pools (the LLM sentences),
        # and a forked child that inherits them can hang
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(nj, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
            for utt, err in tqdm(pool.map(synthesize, jobs, chunksize=8), total=len(jobs), desc="piper", mininterval=5):
                if err:
                    failed[utt] = err
    (out / "failed.txt").unlink(missing_ok=True)  # this run's failures only (they are retried on re-run)
    if failed:
        with open(out / "failed.txt", "w", encoding="utf-8") as f:
            f.writelines(f"{k} {v}\n" for k, v in sorted(failed.items()))
        logging.warning(f"{len(failed)} sentences failed to synthesize; see {out / 'failed.txt'}")
    for name in splits:
        rows = {u: (p, t) for u, (n, p, t) in meta.items() if n == name and os.path.exists(p)}
        write_dir(out / "data" / f"mini_{name}", rows)


def real_speech(out: Path) -> None:
    """LibriVox and cards clips (with transcripts) from the pocketsphinx 5.1.1 source distribution.

    LibriVox: ``test/data/librivox/<stem>.wav`` + ``<stem>.txt``; cards: ``test/data/cards/*.wav``
    with ``cards.transcription`` lines ``TEXT (uttid)``. A missing sdist is a warning (the
    synthetic sets still work), never a crash.
    """
    from espnet_blsp.assets import packages as P

    try:
        src = P.fetch_pocketsphinx_speech(out / "downloads")
    except P.AssetError as e:
        logging.warning(f"no real-speech test sets: {e}")
        return
    wav_dir = out / "wav" / "real"
    wav_dir.mkdir(parents=True, exist_ok=True)
    libri, cards = {}, {}
    for wav in sorted((src / "test/data/librivox").glob("*.wav")):
        txt = wav.with_suffix(".txt")
        if not txt.is_file():
            logging.warning(f"{wav}: no transcript {txt.name}, skipped")
            continue
        libri[f"librivox-{wav.stem}"] = (_as_16k(wav, wav_dir / f"librivox-{wav.stem}.wav"), _read_text(txt))
    trans = src / "test/data/cards/cards.transcription"
    if trans.is_file():
        for line in trans.read_text(encoding="utf-8").splitlines():
            text, _, uid = line.rpartition("(")
            uid = uid.strip(") ")
            wav = src / "test/data/cards" / f"{uid}.wav"
            if not text.strip() or not wav.is_file():
                logging.warning(f"{trans}: no text or no {wav.name} for line {line!r}, skipped")
                continue
            cards[f"cards-{uid}"] = (_as_16k(wav, wav_dir / f"cards-{uid}.wav"), " ".join(text.split()))
    if libri:
        write_dir(out / "data" / "real_librivox", libri)
    if cards:
        write_dir(out / "data" / "real_cards", cards)
    logging.info(f"real speech: {len(libri)} LibriVox and {len(cards)} cards clips")


def _read_text(path: Path) -> str:
    return " ".join(path.read_text(encoding="utf-8").split())


def _as_16k(src: Path, dst: Path) -> str:
    """Mono 16 kHz copy of ``src`` at ``dst`` (written once); returns the absolute path."""
    import soundfile

    from espnet_blsp.utils.audio import load_wav

    if not dst.is_file():
        part = dst.with_name(dst.name + ".part.wav")
        soundfile.write(str(part), load_wav(str(src), SR, utt_id=dst.stem), SR)
        os.replace(part, dst)
    return str(dst.resolve())


def check_splits(out: Path, splits: Dict[str, List[str]]) -> None:
    """Record the sentences in ``out/sentences.json``; refuse to mix corpora of other sizes or
    seeds (existing wavs are reused by utterance id, so they must hold the same sentences)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sentences.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != splits:
            raise SystemExit(
                f"{out} holds a mini corpus made with other sizes or another seed ({path}); "
                f"remove {out} or pass another --out_dir (run.sh: --mini_dir)"
            )
        return
    if any((out / "wav").glob("*/*.wav")):
        raise SystemExit(f"{out} holds wavs but no {path.name} (made by an older version?); remove {out}")
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(splits, indent=0, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--num_train", type=int, default=2000)
    p.add_argument("--num_dev", type=int, default=100)
    p.add_argument("--num_test", type=int, default=100)
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--num_llm_train", type=int, default=0,
                   help="add this many training sentences written by --llm (llm_sentences.py)")
    p.add_argument("--llm", help="LLM dir for --num_llm_train")
    p.add_argument("--num_fortune_train", type=int, default=0,
                   help="add this many training sentences of Debian's fortunes package (fortune_sentences.py)")
    p.add_argument("--flite_share", type=float, default=0.0,
                   help="share of the training utterances spoken by flite's voices instead of piper's (0-1)")
    args = p.parse_args(cmd)
    if not 0 <= args.flite_share <= 1:
        raise SystemExit(f"--flite_share {args.flite_share}: a share between 0 and 1")
    out = Path(args.out_dir)
    if (out / ".done").exists():
        logging.info(f"{out} is done, skipped")
        return
    splits = make_splits(args.num_train, args.num_dev, args.num_test, args.seed)
    if args.num_llm_train:
        if not args.llm:
            raise SystemExit("--num_llm_train needs --llm")
        splits["train"] += write_sentences(args.llm, out / "llm_sentences.txt", args.num_llm_train, args.seed,
                                           exclude=splits["train"] + splits["dev"] + splits["test"])
    if args.num_fortune_train:
        splits["train"] += fortune_sentences(args.num_fortune_train, args.seed,
                                             exclude=splits["train"] + splits["dev"] + splits["test"])
    if args.flite_share > 0:
        check_flite()
    check_splits(out, splits)
    synth_sets(out, splits, args.nj, args.seed, args.flite_share)
    real_speech(out)
    (out / ".done").touch()


if __name__ == "__main__":
    main()
