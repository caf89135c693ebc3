#!/usr/bin/env python3
"""Decoding (stage 5, ASR task) real-time factor: batched decoding against one utterance at a time.

Usage: python benchmarks/bench_decode.py [--device auto|cpu|cuda] [--quick] [--system blsp|kd]
           [--batch 32] [--utts 64] [--single_utts 8] [--max_new_tokens 32] [--json out.json]

Model: the ``BLSPModel`` of ``--system`` (see bench_train_step.py; default ``blsp``: Whisper-small
-> CNN -> Llama-2-7B at real shapes on GPU, bf16 encoder and LLM; CPU: small shapes, float32),
random weights, in eval mode. ``kd`` (Whisper-large-v2 -> CFormer -> Qwen-7B) works too, but a
random CFormer fires about one token per two frames, far more than a trained one.
Input: ``--utts`` clips of about ``--seconds`` (8 s, +-5 %) of random log-mel features, the ASR
instruction "Please repeat the following words.", at most ``--max_new_tokens`` (32, the token
count of an 8 s transcript; with random weights a hypothesis rarely stops earlier).

Ours: what ``blsp_inference.decode_speech`` does: clips sorted longest first, batches of
``--batch``, ``BLSPModel.generate`` (true-length Whisper encoder, adapter, batched greedy with a
KV cache). Reference: the same model, one utterance at a time (batch 1), on the first
``--single_utts`` clips (the official code decodes one utterance at a time).
RTF = wall time / seconds of audio (lower is better); the ratio is RTF(single) / RTF(batched).
Agreement: the fraction of the single-decoded clips whose batched hypothesis is the same token
for token (1.0 expected in float32; bf16 kernels may flip near-ties).
Target (GPU only, exit 1 if missed; ours, the issue names none): batched >= 5x faster.
"""

import argparse
import sys
import time
from typing import List

import torch

from benchlib import (ASR, SYSTEMS, build_model, compute_dtype, hardware, setup, sync,
                      write_json)

TARGET_RATIO = 5.0
DEFAULTS = {  # batch, clips batched, clips one at a time, new tokens, seconds
    "gpu": dict(batch=32, utts=64, single_utts=8, max_new_tokens=32, seconds=8.0),
    "cpu": dict(batch=8, utts=16, single_utts=4, max_new_tokens=32, seconds=8.0),
    "quick": dict(batch=4, utts=4, single_utts=4, max_new_tokens=8, seconds=2.0),
}


def make_clips(n: int, seconds: float, n_mels: int = 80, seed: int = 0) -> List[torch.Tensor]:
    """``n`` random log-mel clips (T_i, n_mels) of ``seconds`` +-5 % (100 frames per second)."""
    g = torch.Generator().manual_seed(seed)
    secs = seconds * (0.95 + 0.1 * torch.rand(n, generator=g))
    return [torch.randn(int(s * 100), n_mels, generator=g) for s in secs]


def decode(model, clips: List[torch.Tensor], batch_size: int, max_new_tokens: int) -> List[List[int]]:
    """``blsp_inference.decode_speech``'s loop: sort longest first, pad, ``model.generate`` per batch."""
    llm, dev = model.llm, model.llm.device
    prefix = torch.tensor(llm.template.prefix_ids(ASR), device=dev)
    suffix = torch.tensor(llm.template.suffix_ids(), device=dev)
    order = sorted(range(len(clips)), key=lambda i: -clips[i].shape[0])
    out: List[List[int]] = [[] for _ in clips]
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        lens = torch.tensor([clips[i].shape[0] for i in idx], device=dev)
        speech = torch.nn.utils.rnn.pad_sequence([clips[i] for i in idx], batch_first=True).to(dev)
        hyps = model.generate(speech, lens, [prefix] * len(idx), [suffix] * len(idx), utt_id=[str(i) for i in idx],
                              max_new_tokens=max_new_tokens, num_beams=1)
        for i, h in zip(idx, hyps):
            out[i] = h
    return out


def rtf(model, clips, batch_size: int, max_new_tokens: int) -> tuple:
    """(real-time factor, hypotheses) of decoding ``clips`` in batches of ``batch_size``."""
    dev = model.llm.device
    sync(dev)
    t = time.perf_counter()
    hyps = decode(model, clips, batch_size, max_new_tokens)
    sync(dev)
    audio = sum(c.shape[0] for c in clips) / 100.0
    return (time.perf_counter() - t) / audio, hyps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="tiny shapes (tests); no target check")
    p.add_argument("--system", default="blsp", choices=sorted(SYSTEMS))
    p.add_argument("--batch", type=int, default=None, help="GPU 32, CPU 8")
    p.add_argument("--utts", type=int, default=None, help="clips decoded batched (GPU 64)")
    p.add_argument("--single_utts", type=int, default=None, help="clips decoded one at a time (GPU 8)")
    p.add_argument("--max_new_tokens", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    device, scale = setup(args, DEFAULTS)
    model = build_model(args.system, scale, device, dropout=False).eval()
    clips = make_clips(max(args.utts, args.single_utts), args.seconds)
    batched_clips, single_clips = clips[: args.utts], clips[: args.single_utts]

    decode(model, clips[:2], 2, 2)  # warm-up
    rtf_batched, hyps = rtf(model, batched_clips, args.batch, args.max_new_tokens)
    rtf_single, single_hyps = rtf(model, single_clips, 1, args.max_new_tokens)
    n = min(len(single_clips), len(batched_clips))
    agree = sum(a == b for a, b in zip(hyps[:n], single_hyps[:n])) / n
    ratio = rtf_single / rtf_batched
    check = scale == "gpu"
    met = ratio >= TARGET_RATIO
    tokens = sum(len(h) for h in hyps) / len(hyps)
    print(f"ASR decoding, {args.system} at {scale} shapes ({compute_dtype(device)}) | {hardware(device)} | "
          f"~{args.seconds:g} s clips, <= {args.max_new_tokens} new tokens ({tokens:.1f} generated on average)")
    print(f"  one at a time ({len(single_clips)} clips): RTF {rtf_single:.4f}")
    print(f"  batched, batch {args.batch} ({len(batched_clips)} clips): RTF {rtf_batched:.4f}   speed-up {ratio:.2f}x")
    print(f"  agreement batched vs one at a time, token for token: {agree:.3f} of {n} clips")
    verdict = ("met" if met else "MISSED") if check else "not checked on CPU / --quick"
    print(f"  target (GPU): speed-up >= {TARGET_RATIO:g}x: {verdict}")
    write_json(args.json, dict(benchmark="decode", system=args.system, scale=scale, device=device.type,
                               hardware=hardware(device), batch=args.batch, seconds=args.seconds,
                               max_new_tokens=args.max_new_tokens, rtf_batched=rtf_batched, rtf_single=rtf_single,
                               ratio=ratio, agreement=agree, target_ratio=TARGET_RATIO, met=met if check else None))
    sys.exit(0 if (met or not check) else 1)


if __name__ == "__main__":
    main()
