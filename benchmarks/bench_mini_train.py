#!/usr/bin/env python3
"""The CPU mini training step: the previous default against the current one, side by side.

Usage: python benchmarks/bench_mini_train.py [--assets egs2/blsp/assets] [--steps 4] [--threads 2]
           [--variants old,enc,enc_cache,new] [--json out.json]

Real models (the stage-0 assets: Whisper base, SmolLM2-135M-Instruct, chat template),
the real BLSPModel built from conf/mini/train_blsp_ce.yaml (+ the embedding CTC of
conf/mini/train_blsp.yaml in ``ctc``), one training step = forward + backward
+ clip + AdamW, what ESPnet's trainer does. Workload: 3.5 s clips (350 mel frames, 175 encoder
frames, 22 adapter outputs), 14-token transcripts, the continuation instruction, 32-token
responses + end of turn.

Variants (each builds its own model; the same inputs):

    old        log-mel input through the frozen encoder, batch 8, full prompt forward
               (the mini default until 2026-12-01)
    enc        encoder outputs dumped in stage 2 (--dump_encoder_output), batch 8
    enc_cache  + the prompt prefix (chat header + instruction) from the KV cache, batch 8
    sdpa_b24   + batch 24
    new        + eager attention instead of SDPA, the LLM in ``dtype: auto`` (the current mini
               default, conf/mini/train_blsp.yaml and conf/mini/preset_cpu.yaml, without its
               CTC term); auto is bfloat16 on a CPU with AVX512-BF16/AMX and float32 elsewhere
    ctc        as new, + the embedding CTC (ctc_weight 1, the mini default's full step)
    bf16, fp32 as new, the LLM in bfloat16 / float32 whatever the CPU
    adapter_ctc  the embedding CTC alone (ce_weight 0, conf/mini/train_adapter_ctc.yaml): the LLM
               does not run (BLSPModel.runs_llm)

Reported: samples/s, LLM positions/s (every position of every prompt, padding excluded), the
ratio to ``old``, and how close the step comes to the CPU's matmul rate: the FLOPs of one step
(``torch.utils.flop_counter``, forward + backward, counted in an untimed pass; it has no
formula for SDPA's CPU flash-attention kernel, so the sdpa variants' counts omit attention), the FLOP/s the
timed steps reach, and that as a share of the rate of one matmul of the LLM's own shape
(positions x hidden @ hidden x ffn) in the variant's dtype, measured in the same run. A share
near 100 % means the step is matmul-bound and only fewer FLOPs (or native bfloat16) make it
faster. The header gives the float32 and bfloat16 matmul rates of that shape side by side.
Target: new >= 4x old (issue 10). Time only on a quiet machine.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VARIANTS = {
    #            precomputed, prefix_cache, batch, llm dtype, attention, ctc_weight[, ce_weight]
    "old": (False, False, 8, "bfloat16", "sdpa", 0.0),
    "enc": (True, False, 8, "bfloat16", "sdpa", 0.0),
    "enc_cache": (True, True, 8, "bfloat16", "sdpa", 0.0),
    "sdpa_b24": (True, True, 24, "bfloat16", "sdpa", 0.0),
    "new": (True, True, 24, "auto", "eager", 0.0),
    "ctc": (True, True, 24, "auto", "eager", 1.0),
    "bf16": (True, True, 24, "bfloat16", "eager", 0.0),
    "fp32": (True, True, 24, "float32", "eager", 0.0),
    "adapter_ctc": (True, True, 24, "auto", "eager", 1.0, 0.0),
}
SENTENCE = "The old farmer carried a basket of eggs to the market this morning."


def build(assets: Path, precomputed: bool, prefix_cache: bool, dtype: str, attn: str, ctc_weight: float = 0.0,
          ce_weight: float = 1.0):
    from espnet_blsp.tasks.blsp import build_blsp_model

    conf = yaml.safe_load((REPO / "conf/mini/train_blsp_ce.yaml").read_text())
    llm_conf = dict(conf["llm_conf"], model_name_or_path=str(assets / "smollm2-135m-instruct"),
                    dtype=dtype, attn_implementation=attn, prefix_cache=prefix_cache)
    enc_conf = dict(conf["speech_encoder_conf"], model_name_or_path=str(assets / "whisper-base"))
    model_conf = dict(conf.get("model_conf", {}), precomputed_encoder=precomputed, ctc_weight=ctc_weight,
                      ce_weight=ce_weight)
    return build_blsp_model(enc_conf, conf["speech_adapter"], conf.get("speech_adapter_conf", {}),
                            llm_conf, model_conf)


def make_batch(model, B: int, precomputed: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t = model.llm.template
    text = torch.tensor(t.text_ids(SENTENCE))
    prefix = torch.tensor(t.prefix_ids("Continue the following text in a coherent and engaging style with less than 40 words."))
    suffix = torch.tensor(t.suffix_ids())
    resp = torch.randint(100, 40000, (B, 32), generator=g)
    if precomputed:
        speech = torch.randn(B, 175, model.encoder.output_size(), generator=g)
        lens = torch.full((B,), 175)
    else:
        speech = torch.randn(B, 350, 80, generator=g)
        lens = torch.full((B,), 350)

    def rep(x):
        return x[None].expand(B, -1).clone(), torch.full((B,), len(x))

    (text_b, text_l), (p_b, p_l), (s_b, s_l) = rep(text), rep(prefix), rep(suffix)
    batch = dict(speech=speech, speech_lengths=lens, text=text_b, text_lengths=text_l, prefix=p_b,
                 prefix_lengths=p_l, suffix=s_b, suffix_lengths=s_l, response=resp,
                 response_lengths=torch.full((B,), 32))
    positions = B * (len(prefix) + 22 + len(suffix) + 33)
    return batch, positions


def step(model, opt, batch):
    opt.zero_grad(set_to_none=True)
    loss, _, _ = model(**batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()


def matmul_gflops(dtype: torch.dtype, m: int, k: int, n: int) -> float:
    """Measured rate (GFLOP/s) of an (m x k) @ (k x n) CPU product in ``dtype`` (benchlib, cached)."""
    from benchlib import matmul_tflops

    return 1000 * matmul_tflops(torch.device("cpu"), dtype, shape=(m, k, n))


def step_flops(model, batch) -> int:
    """FLOPs of one training step's forward + backward, as torch's FLOP counter sees them
    (no optimizer update). The counter has no formula for the CPU flash-attention kernel of
    SDPA, so the sdpa variants' counts leave out their attention; eager attention is bmm."""
    from torch.utils.flop_counter import FlopCounterMode

    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        loss, _, _ = model(**batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def run(name: str, assets: Path, steps: int) -> dict:
    precomputed, cache, B, dtype, attn, ctc, *ce = VARIANTS[name]
    torch.manual_seed(0)
    model = build(assets, precomputed, cache, dtype, attn, ctc, *ce)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch, positions = make_batch(model, B, precomputed)
    step(model, opt, batch)  # warm-up (and the prefix cache's one-off forward)
    flops = step_flops(model, batch)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(model, opt, batch)
    dt = (time.perf_counter() - t0) / steps
    cfg = model.llm.model.config
    peak = matmul_gflops(model.llm.dtype, positions, cfg.hidden_size, cfg.intermediate_size)
    return dict(variant=name, batch=B, positions=positions, llm_dtype=str(model.llm.dtype).replace("torch.", ""), step_s=dt,
                samples_per_s=B / dt, positions_per_s=positions / dt, gflop_per_step=flops / 1e9,
                gflops=flops / dt / 1e9, matmul_gflops=peak, share_of_matmul=flops / dt / 1e9 / peak)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assets", type=Path, default=REPO / "egs2/blsp/assets")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--variants", default="old,enc,enc_cache,sdpa_b24,new,ctc")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    for sub in ("smollm2-135m-instruct", "whisper-base"):
        if not (args.assets / sub).is_dir():
            raise SystemExit(f"{args.assets / sub} not found: run stage 0 first "
                             "(cd egs2/blsp && ./run.sh --stage 0 --stop_stage 0)")
    torch.set_num_threads(args.threads)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    rows = [run(n, args.assets, args.steps) for n in names]
    base = next((r for r in rows if r["variant"] == "old"), rows[0])
    from espnet_blsp.utils.dtype import cpu_has_native_bf16

    native = cpu_has_native_bf16()
    cfg = json.loads((args.assets / "smollm2-135m-instruct/config.json").read_text())
    shape = (max(r["positions"] for r in rows), cfg["hidden_size"], cfg["intermediate_size"])  # the largest batch's
    rate = {n: matmul_gflops(d, *shape) for n, d in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    print(f"mini CNN training step, CPU ({'native' if native else 'no native'} bfloat16: "
          f"auto = {'bfloat16' if native else 'float32'}), {args.threads} threads, "
          f"{args.steps} timed steps each")
    print(f"matmul {shape[0]}x{shape[1]} @ {shape[1]}x{shape[2]}: float32 {rate['float32']:.0f} GFLOP/s, "
          f"bfloat16 {rate['bfloat16']:.0f} GFLOP/s (bfloat16/float32 = {rate['bfloat16'] / rate['float32']:.2f})")
    print("| variant | batch | LLM dtype | s/step | samples/s | LLM positions/s | GFLOP/step | GFLOP/s | of matmul rate | vs old |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        r["speedup"] = r["samples_per_s"] / base["samples_per_s"]
        print(f"| {r['variant']} | {r['batch']} | {r['llm_dtype']} | {r['step_s']:.2f} | {r['samples_per_s']:.1f} | "
              f"{r['positions_per_s']:.0f} | {r['gflop_per_step']:.0f} | {r['gflops']:.0f} | "
              f"{100 * r['share_of_matmul']:.0f} % | {r['speedup']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(dict(matmul_gflops=rate, matmul_shape=shape, rows=rows), indent=1))
    new = next((r for r in rows if r["variant"] == "new"), None)
    if new is not None and "old" in names:
        print(f"target new >= 4x old: {'met' if new['speedup'] >= 4 else 'MISSED'} ({new['speedup']:.2f}x)")


if __name__ == "__main__":
    main()
