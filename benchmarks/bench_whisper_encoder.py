#!/usr/bin/env python3
"""Whisper encoder on the true length against the same encoder on clips padded to 30 s.

Usage: python benchmarks/bench_whisper_encoder.py [--quick] [--batch 4] [--seconds 8] [--threads N]

A random encoder shaped like Whisper-small (d_model 768, 12 layers, 12 heads, FFN 3072;
--quick: d_model 256, 4 layers, 4 heads, FFN 1024) encodes a batch of clips of
``--seconds`` each, once on their true length (what WhisperSpeechEncoder does) and once
padded to 3000 mel frames (what the official BLSP code and WhisperEncoder.forward do).
Same module, same process, CPU, best of ``--repeat`` runs. Target: >= 3x more clips/s
on the true length (exit 1 if missed).
"""

import argparse
import sys
import time

import torch

from espnet_blsp.encoders.whisper import WhisperSpeechEncoder

TARGET = 3.0
SHAPES = {
    "small": dict(d_model=768, encoder_layers=12, encoder_attention_heads=12, encoder_ffn_dim=3072),
    "quick": dict(d_model=256, encoder_layers=4, encoder_attention_heads=4, encoder_ffn_dim=1024),
}


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smaller encoder")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = "quick" if args.quick else "small"
    config = dict(
        SHAPES[shape], num_mel_bins=80, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64,
        vocab_size=128, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )
    torch.manual_seed(0)
    enc = WhisperSpeechEncoder(config=config)
    B, T = args.batch, int(args.seconds * 100)
    feats = torch.randn(B, T, 80)
    padded = torch.nn.functional.pad(feats, (0, 0, 0, 3000 - T))  # (B, 3000, 80), zeros after T
    true_lens, full_lens = torch.full((B,), T), torch.full((B,), 3000)

    with torch.no_grad():
        enc(feats[:1, :200], true_lens[:1].clamp(max=200))  # warm-up
        t_true = best_time(lambda: enc(feats, true_lens), args.repeat)
        t_pad = best_time(lambda: enc(padded, full_lens), args.repeat)
    ratio = t_pad / t_true
    print(
        f"Whisper encoder, {shape} shape {SHAPES[shape]}, batch {B} x {args.seconds:g} s | "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(f"  padded to 30 s (3000 frames): {B / t_pad:8.2f} clips/s  ({t_pad:.2f} s per batch)")
    print(f"  true length ({T} frames):     {B / t_true:8.2f} clips/s  ({t_true:.2f} s per batch)")
    print(f"  speed-up {ratio:.2f}x (target >= {TARGET:g}x)")
    sys.exit(0 if ratio >= TARGET else 1)


if __name__ == "__main__":
    main()
