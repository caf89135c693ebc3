#!/usr/bin/env python3
"""Whisper encoder on the true length (8 s clips) against clips padded to 30 s.

Usage: python benchmarks/bench_whisper_encoder.py [--quick]     (target: >= 3x faster)
Whisper-small shape with random weights (d_model 768, 12 layers, 12 heads, FFN 3072).
"""

import argparse
import sys
import time

import torch

from espnet_blsp.encoders.whisper import WhisperSpeechEncoder


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args()
    cfg = dict(d_model=768, encoder_layers=12, encoder_attention_heads=12, encoder_ffn_dim=3072,
               decoder_layers=1, decoder_attention_heads=12, decoder_ffn_dim=64, num_mel_bins=80)
    if args.quick:
        cfg.update(d_model=256, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=1024)
    torch.manual_seed(0)
    enc = WhisperSpeechEncoder(config=cfg).eval()
    B = args.batch
    x8 = torch.randn(B, 800, 80)
    x30 = torch.nn.functional.pad(x8, (0, 0, 0, 2200))

    def run(x, lens):
        with torch.no_grad():
            enc(x, lens)
        t = time.perf_counter()
        with torch.no_grad():
            enc(x, lens)
        return time.perf_counter() - t

    t8 = run(x8, torch.full((B,), 800))
    t30 = run(x30, torch.full((B,), 3000))
    ratio = t30 / t8
    print(f"Whisper encoder ({'quick' if args.quick else 'small'} shape), batch {B}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"  padded to 30 s: {B / t30:.2f} clips/s   true 8 s length: {B / t8:.2f} clips/s   speed-up: {ratio:.1f}x (target >= 3x)")
    sys.exit(0 if ratio >= 3 or args.quick else 1)


if __name__ == "__main__":
    main()
