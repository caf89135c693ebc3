#!/usr/bin/env python3
"""Training step of BLSPModel (forward + backward + AdamW) against an official-style step.

Usage: python benchmarks/bench_train_step.py [--device auto|cpu|cuda] [--quick] [--systems blsp,kd]
           [--batch B] [--steps N] [--seconds 8] [--json out.json]
       torchrun --nproc_per_node 2 benchmarks/bench_train_step.py --device cuda --ddp --systems kd

Systems (random weights; GPU: real shapes, LLM and frozen encoder in bf16, trainable weights in
float32 under bf16 autocast, as ESPnet's trainer runs ``use_amp: true``; CPU: float32)::

    system     encoder (frozen)      adapter          LLM          losses
    blsp       Whisper-small         CNN (8x)         Llama-2-7B   response CE
    blsp_lora  Whisper-small         CNN              Llama-2-7B   response CE, + Partial LoRA
    kd         Whisper-large-v2      CFormer 4+4      Qwen-7B      response KL + input KL + CIF (T = 2)
    kd_lora    Whisper-large-v2      CFormer 4+4      Qwen-7B      as kd, + Partial LoRA (variant 7
                                                                   without the encoder update)

Partial LoRA: r 16, alpha 16, dropout 0.05 on q/k/v/o/gate/up/down; CFormer dropout 0.1. CPU
shapes: LLM hidden 256, 4 layers, the real vocabularies (32,000 / 151,936), Whisper d_model 256,
4 layers, CFormer 2+2 layers; ``--quick``: tiny shapes, 2 s clips (tests). Models and
systems: ``benchlib.SYSTEMS`` / ``build_model``. Defaults: GPU batch 16, 2 warm-up + 5 timed steps;
CPU batch 4, 1 + 1; quick batch 2, 1 + 1.

Workload: a length bucket of B utterances of about ``--seconds`` (8 s) each (uniform within
+-5 %, sorted), transcripts of 3.25 tokens per second, 45-token responses + EOS, the BLSP
continuation instruction. Token ids are random; the prompt template is the real one (with the
tests' tiny tokenizer its prefix is 38-39 tokens, more than the real Llama/Qwen tokenizers give;
every position is counted in the FLOPs).

Ours: ``BLSPModel.forward`` -> ``loss.backward()`` -> ``clip_grad_norm_(1.0)`` -> ``AdamW.step()``,
what ESPnet's trainer does per step.
Reference (implemented here, same weights, same autocast and optimizer), the official code's way:
clips padded to 30 s (3000 mel frames) through the encoder and the adapter (CNN: 188 speech
positions per utterance reach the LLM; CFormer: the pre-CIF layers run on all 1500 frames with no
padding mask, CIF is the official per-frame loop), eager attention in the encoder and the LLM, the
LLM's own ``lm_head`` on every position with float32 logits, CE over the full [B, T, V] tensor and
KL from full-vocabulary float32 log-softmaxes of student and teacher. ``reference_loss(...,
pad_30s=False)`` equals ours (tested in tests/test_benchmarks_small.py).

FLOP count of ours (the floor's numerator; ``count_flops``), per utterance with true lengths,
P = weights used as matmul operands per token (``benchlib.matmul_params``):
- encoder (frozen, forward only): 2 P_conv per output frame, 2 P_layers T' + 4 d T'^2 per layer
  (attention), T' = ceil(T / 2) frames;
- adapter (trained): 3x its forward (forward, grad of inputs, grad of weights); CNN: 2 P_conv L_out
  per conv + bottleneck on the N outputs; CFormer: pre-CIF layers on T', post-CIF layers on N
  tokens, projections, attention 4 d L^2 per layer;
- LLM, student (frozen weights, backward to the activations only): forward 2 P L + 2 n_layer d L^2
  (causal attention), backward 2 P L + 4 n_layer d L^2, L = prompt + speech + suffix + response + EOS;
  the KD teacher on the transcript prompt: forward only;
- LM head: 2 V H per row that needs logits (response rows + EOS, and the N input rows for input
  KL), x2 for the student's backward, plus the teacher's rows;
- ignored: LoRA (< 0.5 %), norms, softmaxes, CIF, the optimizer, the CE pass that the KD systems
  run for the accuracy statistic.
The reference's count is what it executes (padded lengths, full attention matrices, the lm_head
at every position). MFU = FLOPs(ours) / step time / the bf16 (GPU) or float32 (CPU) matmul rate
measured in this run (``torch.matmul`` of 8192^2 / 1024^2 matrices).

Targets (GPU only; exit 1 if any system misses one): ours >= 10x the reference's samples/s, and
MFU >= 50 % (the step within 2x of the FLOP floor). On CPU the figures are reported only.
``--ddp`` (under torchrun) times ours only, one batch of B per rank, DDP over the trainable weights
(NCCL on GPU, gloo on CPU); rank 0 prints the total samples/s.
"""

import argparse
import gc
import math
import sys
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from benchlib import (CONTINUATION, SYSTEMS, PeakMemory, attention, autocast, build_model, compute_dtype, hardware,
                      matmul_params, matmul_tflops, random_ids, setup, timed, write_json)
from espnet_blsp.adapters import CFormerAdapter, CNNAdapter
from espnet_blsp.adapters.cif import scale_alphas
from espnet_blsp.espnet_model import BLSPModel
from espnet_blsp.llm.partial_lora import speech_positions

TARGET_RATIO = 10.0
TARGET_MFU = 0.5
TOKENS_PER_SECOND = 3.25  # transcript tokens per second of speech
DEFAULTS = {  # batch, warm-up steps, timed steps, seconds per clip
    "gpu": dict(batch=16, warmup=2, steps=5, seconds=8.0),
    "cpu": dict(batch=4, warmup=1, steps=1, seconds=8.0),
    "quick": dict(batch=2, warmup=1, steps=1, seconds=2.0),
}


# ---------------------------------------------------------------------------------- batch
def _pad(seqs: List[List[int]], device) -> tuple:
    lens = torch.tensor([len(s) for s in seqs], device=device)
    out = torch.full((len(seqs), int(lens.max())), -1, dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, device=device)
    return out, lens


def make_batch(model: BLSPModel, batch_size: int, seconds: float, response_tokens: int = 45,
               seed: int = 0, device: Optional[torch.device] = None) -> dict:
    """A collated batch (``BLSPCollateFn`` layout, ids padded with -1) of one length bucket."""
    device = device or model.llm.device
    g = torch.Generator().manual_seed(seed)
    secs = (seconds * (0.95 + 0.1 * torch.rand(batch_size, generator=g))).sort(descending=True).values
    frames = (secs * 100).long()  # 100 mel frames per second
    speech = torch.randn(batch_size, int(frames[0]), 80, generator=g)
    speech = speech * (torch.arange(speech.shape[1])[None, :, None] < frames[:, None, None])  # zero padding
    t, V = model.llm.template, model.llm.vocab_size
    texts = [random_ids(max(1, round(TOKENS_PER_SECOND * float(s))), V, g) for s in secs]
    batch = dict(speech=speech.to(device), speech_lengths=frames.to(device))
    for name, seqs in (
        ("text", texts),
        ("prefix", [t.prefix_ids(CONTINUATION)] * batch_size),
        ("suffix", [t.suffix_ids()] * batch_size),
        ("response", [random_ids(response_tokens, V, g) for _ in range(batch_size)]),
    ):
        batch[name], batch[f"{name}_lengths"] = _pad(seqs, device)
    batch["utt_id"] = [f"utt{i}" for i in range(batch_size)]
    return batch


def _split(padded: torch.Tensor, lengths: torch.Tensor) -> List[torch.Tensor]:
    return [padded[b, : int(n)] for b, n in enumerate(lengths.tolist())]


# ---------------------------------------------------------------------------------- reference
def cif_loop(hidden: torch.Tensor, alphas: torch.Tensor, n_tokens: torch.Tensor, threshold: float = 1.0):
    """The official CIF: a Python loop over frames, batched over utterances (FunASR style).

    Shapes: hidden (B, T, C), alphas (B, T) (zero at padded frames), n_tokens (B,) -> (B, N, C).
    A token fires where the running sum crosses ``threshold``; the leftover after the last frame
    is the last token when fewer than ``n_tokens`` fired (round-off), extra fires are dropped.
    """
    B, T, C = hidden.shape
    integrate = hidden.new_zeros(B)
    frame = hidden.new_zeros(B, C)
    fires, frames = [], []
    for t in range(T):
        alpha = alphas[:, t]
        completion = threshold - integrate
        integrate = integrate + alpha
        fires.append(integrate)
        fire = integrate >= threshold
        integrate = torch.where(fire, integrate - threshold, integrate)
        cur = torch.where(fire, completion, alpha)
        frame = frame + cur[:, None] * hidden[:, t]
        frames.append(frame)  # the token that fires at t, if one does
        frame = torch.where(fire[:, None], (alpha - cur)[:, None] * hidden[:, t], frame)
    fired = torch.stack(fires, 1) >= threshold  # (B, T)
    stacked = torch.stack(frames, 1)  # (B, T, C)
    tokens = []
    for b in range(B):
        n = int(n_tokens[b])
        toks = stacked[b, fired[b].nonzero()[:, 0]][:n]
        if toks.shape[0] < n:
            toks = torch.cat([toks, frame[b : b + 1]])
        tokens.append(toks)
    return torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True)  # (B, N, C)


def cformer_reference(adapter: CFormerAdapter, x: torch.Tensor, x_lens: torch.Tensor, target_lens: torch.Tensor):
    """``CFormerAdapter`` in training, run the official way (``cif_loop``); same weights.
    Returns (y (B, N, D_out), y_lens (B,), alpha_sum (B,))."""
    T = x.shape[1]
    valid = torch.arange(T, device=x.device)[None] < x_lens[:, None]  # (B, T); all True at 30 s
    h = adapter.pre(adapter.input_proj(x * valid[..., None].to(x.dtype)), x_lens)  # (B, T, D)
    alpha = torch.sigmoid(h[..., -1].float()) * valid
    alpha_sum = alpha.sum(1)
    scaled = scale_alphas(alpha, x_lens, target_lens) * adapter.threshold
    tokens = cif_loop(h[..., :-1].float(), scaled, target_lens, adapter.threshold)  # (B, N, D-1)
    y = adapter.out_proj(adapter.post(adapter.cif_proj(tokens.to(h.dtype)), target_lens))  # (B, N, D_out)
    pad = torch.arange(y.shape[1], device=y.device)[None] >= target_lens[:, None]
    return y.masked_fill(pad[..., None], 0.0), target_lens, alpha_sum


def reference_loss(model: BLSPModel, batch: dict, pad_30s: bool = True) -> torch.Tensor:
    """The official-style loss of ``model`` on ``batch`` (see the module docstring). With
    ``pad_30s=False`` the clips keep their true length, and the loss equals ``model(**batch)[0]``."""
    enc, adapter, llm = model.encoder, model.adapter, model.llm
    speech, frames, n_text = batch["speech"], batch["speech_lengths"], batch["text_lengths"]
    if pad_30s:
        speech = F.pad(speech, (0, 0, 0, enc.max_frames - speech.shape[1]))  # (B, 3000, 80)
        frames = torch.full_like(frames, enc.max_frames)
    # 1. encoder, 2. adapter
    with torch.set_grad_enabled(torch.is_grad_enabled() and any(p.requires_grad for p in enc.parameters())):
        h, h_lens = enc(speech.to(next(enc.parameters()).dtype), frames)
    h = h.to(next(adapter.parameters()).dtype)
    alpha_sum = None
    if isinstance(adapter, CFormerAdapter):
        y, y_lens, alpha_sum = cformer_reference(adapter, h, h_lens, n_text)
    else:
        y, y_lens, _ = adapter(h, h_lens)  # at 30 s: 188 outputs per clip, all reach the LLM
    # 3. LLM on the student prompt: lm_head at every position, float32 logits (B, T, V)
    prefixes = _split(batch["prefix"], batch["prefix_lengths"])
    suffixes = _split(batch["suffix"], batch["suffix_lengths"])
    responses = _split(batch["response"], batch["response_lengths"])
    student = llm.build_inputs(prefixes, [m.to(llm.dtype) for m in _split(y, y_lens)], suffixes, responses)
    with speech_positions(llm.model, student.speech_mask):
        logits = llm.model(inputs_embeds=student.inputs_embeds, attention_mask=student.attention_mask).logits.float()
    resp = student.targets != -100
    loss = logits.new_zeros(())
    if model.ce_weight > 0:
        ce = F.cross_entropy(logits.flatten(0, 1), student.targets.flatten(), ignore_index=-100)
        loss = loss + model.ce_weight * ce
    # 4. KD: teacher logits (B, T, V) on the transcript, full-vocabulary float32 KL at every position
    if model.kl_resp_weight > 0 or model.kl_input_weight > 0:
        with torch.no_grad():
            texts = _split(batch["text"], n_text)
            teacher = llm.build_inputs(prefixes, texts, suffixes, responses, middle_is_speech=False)
            t_logits = llm.model(inputs_embeds=teacher.inputs_embeds,
                                 attention_mask=teacher.attention_mask).logits.float()
        T = model.temperature
        log_p_s = F.log_softmax(logits / T, -1)  # (B, T, V)
        log_p_t = F.log_softmax(t_logits / T, -1)  # (B, T, V)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # (B, T) per position
        if model.kl_resp_weight > 0:
            loss = loss + model.kl_resp_weight * kl[resp].mean()
        if model.kl_input_weight > 0:
            loss = loss + model.kl_input_weight * kl[student.input_mask].mean()
    # 5. CIF quantity loss
    if model.cif_weight > 0:
        n = n_text.to(alpha_sum.dtype)
        loss = loss + model.cif_weight * ((alpha_sum - n).abs() / n).mean()
    return loss


# ---------------------------------------------------------------------------------- FLOPs
def _cnn_lengths(adapter: CNNAdapter, n: int) -> List[int]:
    out = []
    for _ in adapter.convs:
        n = (n + 2 * adapter.padding - adapter.kernel_size) // adapter.stride + 1
        out.append(n)
    return out


def count_flops(model: BLSPModel, batch: dict, reference: bool = False) -> Dict[str, float]:
    """FLOPs of one training step on ``batch`` by component (see the module docstring):
    ours = needed with true lengths; ``reference=True`` = executed by ``reference_loss``."""
    enc, adapter, llm = model.encoder.encoder, model.adapter, model.llm
    cfg = llm.model.config
    H, V, n_layer = llm.hidden_size, llm.vocab_size, cfg.num_hidden_layers
    d_attn = cfg.num_attention_heads * (getattr(cfg, "head_dim", None) or H // cfg.num_attention_heads)
    P_llm = matmul_params(llm.decoder().layers)
    d_enc, P_enc = enc.config.d_model, matmul_params(enc.layers)
    kd = model.kl_resp_weight > 0 or model.kl_input_weight > 0
    B = batch["speech"].shape[0]
    P_len, S_len = batch["prefix_lengths"].tolist(), batch["suffix_lengths"].tolist()
    R_len, N_len = batch["response_lengths"].tolist(), batch["text_lengths"].tolist()
    frames = [model.encoder.max_frames] * B if reference else batch["speech_lengths"].tolist()
    f = dict(encoder=0.0, adapter=0.0, llm_student=0.0, llm_teacher=0.0, lm_head=0.0)
    L_s, L_t = [], []
    for b in range(B):
        T, T2 = frames[b], (frames[b] + 1) // 2
        f["encoder"] += (2 * enc.conv1.weight.numel() * T + 2 * enc.conv2.weight.numel() * T2
                         + 2 * P_enc * T2 + 4 * len(enc.layers) * d_enc * T2**2)
        if isinstance(adapter, CNNAdapter):
            lens = _cnn_lengths(adapter, T2)
            n = lens[-1]
            fwd = sum(2 * c.weight.numel() * L for c, L in zip(adapter.convs, lens))
            fwd += 2 * (adapter.bottleneck_down.weight.numel() + adapter.bottleneck_up.weight.numel()) * n
        else:
            n, d = N_len[b], adapter.cif_proj.out_features
            fwd = 2 * matmul_params(adapter.input_proj) * T2 + 2 * matmul_params(adapter.pre) * T2
            fwd += 4 * len(adapter.pre.layers) * d * T2**2
            fwd += 2 * (adapter.cif_proj.weight.numel() + adapter.out_proj.weight.numel()) * n
            fwd += 2 * matmul_params(adapter.post) * n + 4 * len(adapter.post.layers) * d * n**2
        f["adapter"] += 3 * fwd
        L_s.append(P_len[b] + n + S_len[b] + R_len[b] + 1)
        L_t.append(P_len[b] + N_len[b] + S_len[b] + R_len[b] + 1)
    if reference:  # padded batch, full attention matrices (eager), lm_head at every position
        L_s, L_t = [max(L_s)] * B, [max(L_t)] * B
        attn_fwd, attn_bwd = 4, 8
    else:  # true lengths, causal half
        attn_fwd, attn_bwd = 2, 4
    for L in L_s:
        fwd = 2 * P_llm * L + attn_fwd * n_layer * d_attn * L**2
        bwd = 2 * P_llm * L + attn_bwd * n_layer * d_attn * L**2  # to the activations only
        f["llm_student"] += fwd + bwd
    if kd:
        for L in L_t:
            f["llm_teacher"] += 2 * P_llm * L + attn_fwd * n_layer * d_attn * L**2
    if reference:
        rows_s = rows_t = sum(L_s)
    else:
        rows_s = sum(r + 1 for r in R_len) if (model.ce_weight > 0 or model.kl_resp_weight > 0) else 0
        rows_s += sum(N_len) if model.kl_input_weight > 0 else 0
        rows_t = rows_s
    f["lm_head"] = 2 * V * H * (2 * rows_s + (rows_t if kd else 0))
    f["total"] = sum(f.values())
    f["llm_tokens_per_sample"] = sum(L_s) / B
    return f


# ---------------------------------------------------------------------------------- timing
def train_step(loss_fn, params, opt, device) -> None:
    with autocast(device):
        loss = loss_fn()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def measure(step, device, steps: int, warmup: int) -> tuple:
    """(seconds per step, peak memory MB) of ``step``."""
    with PeakMemory(device) as mem:
        sec = timed(step, device, steps, warmup)
    return sec, mem.mb


def run_system(system: str, scale: str, device: torch.device, args, rate: float) -> dict:
    model = build_model(system, scale, device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6, weight_decay=0.05)
    batch = make_batch(model, args.batch, args.seconds, args.response_tokens, device=device)
    flops = count_flops(model, batch)
    sec, mem = measure(lambda: train_step(lambda: model(**batch)[0], params, opt, device),
                       device, args.steps, args.warmup)
    res = dict(batch=args.batch, trainable_params=sum(p.numel() for p in params),
               flops_per_sample=flops["total"] / args.batch,
               flops_breakdown={k: v / args.batch for k, v in flops.items() if k != "total"},
               samples_per_s=args.batch / sec, step_s=sec, peak_mb=mem, mfu=flops["total"] / sec / (rate * 1e12))
    if args.no_reference:
        return res
    # reference: same weights and optimizer; on a GPU that runs out of memory, half the batch
    B_ref = args.batch
    while True:
        ref_batch = make_batch(model, B_ref, args.seconds, args.response_tokens, device=device)
        try:
            with attention([model.llm.model, model.encoder.encoder], "eager"):
                ref_sec, ref_mem = measure(
                    lambda: train_step(lambda: reference_loss(model, ref_batch), params, opt, device),
                    device, args.steps, args.warmup)
            break
        except torch.OutOfMemoryError:
            opt.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
            if B_ref == 1:
                raise
            B_ref //= 2
    ref_flops = count_flops(model, ref_batch, reference=True)
    res.update(reference=dict(batch=B_ref, samples_per_s=B_ref / ref_sec, step_s=ref_sec, peak_mb=ref_mem,
                              flops_per_sample=ref_flops["total"] / B_ref,
                              executed_tflops=ref_flops["total"] / ref_sec / 1e12,
                              llm_tokens_per_sample=ref_flops["llm_tokens_per_sample"]),
               ratio=res["samples_per_s"] / (B_ref / ref_sec), llm_tokens_per_sample=flops["llm_tokens_per_sample"],
               flop_ratio=(ref_flops["total"] / B_ref) / res["flops_per_sample"])
    return res


def run_ddp(system: str, scale: str, device: torch.device, args) -> Optional[dict]:
    """Ours under DistributedDataParallel (launched by torchrun); rank 0 returns the figures."""
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build_model(system, scale, device)
    model.train()
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6, weight_decay=0.05)
    batch = make_batch(model, args.batch, args.seconds, args.response_tokens, seed=rank, device=device)
    sec, mem = measure(lambda: train_step(lambda: ddp(**batch)[0], params, opt, device),
                       device, args.steps, args.warmup)
    sec_t = torch.tensor([sec], device=device)
    dist.all_reduce(sec_t, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
    dist.destroy_process_group()
    if rank != 0:
        return None
    sec = float(sec_t)
    return dict(world_size=world, batch_per_rank=args.batch, step_s=sec, samples_per_s=world * args.batch / sec,
                samples_per_s_per_gpu=args.batch / sec, peak_mb_rank0=mem)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="tiny shapes (tests); no target check")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {list(SYSTEMS)}")
    p.add_argument("--batch", type=int, default=None, help="utterances per step (GPU 16, CPU 4, quick 2)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (GPU 5, CPU 2, quick 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (GPU 2, else 1)")
    p.add_argument("--seconds", type=float, default=None, help="mean clip length (8; quick 2)")
    p.add_argument("--response_tokens", type=int, default=45)
    p.add_argument("--no_reference", action="store_true", help="time ours only")
    p.add_argument("--ddp", action="store_true", help="under torchrun: DDP throughput of ours")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args()
    device, scale = setup(args, DEFAULTS)
    systems = args.systems.split(",")
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        sys.exit(f"unknown system(s) {unknown}; choose from {list(SYSTEMS)}")

    if args.ddp:
        for s in systems:
            res = run_ddp(s, scale, device, args)
            if res is not None:
                print(f"DDP {s}: {res['world_size']} x {hardware(device)}, batch {args.batch} per rank: "
                      f"{res['samples_per_s']:.2f} samples/s ({res['samples_per_s_per_gpu']:.2f} per rank), "
                      f"peak {res['peak_mb_rank0']:.0f} MB on rank 0")
                write_json(args.json, dict(benchmark="train_step_ddp", system=s, scale=scale,
                                           hardware=hardware(device), **res))
        return

    rate = matmul_tflops(device)
    print(f"Training step, {scale} shapes | {hardware(device)} | {compute_dtype(device)} matmul {rate:.2f} TFLOP/s "
          f"| batch {args.batch} x ~{args.seconds:g} s clips, {args.response_tokens}-token responses")
    results = {}
    for s in systems:
        res = results[s] = run_system(s, scale, device, args, rate)
        ref = res.get("reference")
        line = (f"  {s:9s} ours: {res['samples_per_s']:8.2f} samples/s  MFU {100 * res['mfu']:5.1f} %  "
                f"peak {res['peak_mb']:7.0f} MB  {res['flops_per_sample'] / 1e9:8.1f} GFLOP/sample")
        if ref:
            line += (f" | reference: {ref['samples_per_s']:8.2f} samples/s (batch {ref['batch']})  peak "
                     f"{ref['peak_mb']:7.0f} MB  {ref['flops_per_sample'] / 1e9:8.1f} GFLOP/sample executed "
                     f"| ours/reference {res['ratio']:6.2f}x")
        print(line, flush=True)
        if ref:  # what a speed-up needs: ratio = flop_ratio x MFU(ours) / MFU(reference)
            print(f"  {'':9s} the reference executes {res['flop_ratio']:.2f}x our FLOPs per sample, at "
                  f"{100 * ref['executed_tflops'] / rate:.1f} % of the matmul rate; LLM positions per sample: "
                  f"{res['llm_tokens_per_sample']:.0f} ours, {ref['llm_tokens_per_sample']:.0f} reference", flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    check = scale == "gpu"
    met = all(r["mfu"] >= TARGET_MFU and r.get("ratio", math.inf) >= TARGET_RATIO for r in results.values())
    print(f"  targets (GPU): ours/reference >= {TARGET_RATIO:g}x and MFU >= {100 * TARGET_MFU:.0f} %: "
          + (("met" if met else "MISSED") if check else "not checked on CPU / --quick"))
    write_json(args.json, dict(benchmark="train_step", scale=scale, device=device.type, hardware=hardware(device),
                               matmul_tflops=rate, batch=args.batch, seconds=args.seconds, steps=args.steps,
                               systems=results, targets=dict(ratio=TARGET_RATIO, mfu=TARGET_MFU),
                               met=met if check else None))
    sys.exit(0 if (met or not check) else 1)


if __name__ == "__main__":
    main()
