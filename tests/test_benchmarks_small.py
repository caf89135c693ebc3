"""The benchmarks at tiny shapes: the optimised paths they time equal the naive references they
compare against (where the two should agree), and every script runs and prints its ratio.

- training step: ``BLSPModel.forward`` (true length, SDPA, chunked CE/KL on the rows that need
  logits, vectorised CIF) equals ``reference_loss(pad_30s=False)`` (eager attention, full
  [B, T, V] float32 logits and KL, the official per-frame CIF loop), loss and gradients; with the
  30 s padding the reference is a different computation, so only its finiteness is checked;
- the FLOP count by hand for one small case;
- the official-style CIF loop equals the vectorised ``cif`` (values and gradients);
- teacher generation: our batched greedy equals HF ``generate`` token for token;
- decoding: batched equals one utterance at a time token for token.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_decode  # noqa: E402
import bench_teacher  # noqa: E402
import bench_train_step  # noqa: E402
import benchlib  # noqa: E402

from espnet_blsp.adapters.cif import cif, scale_alphas  # noqa: E402
from espnet_blsp.llm.partial_lora import PartialLoRALinear  # noqa: E402

CPU = torch.device("cpu")


def _model(system: str):
    model = benchlib.build_model(system, "quick", CPU, dropout=False).eval()
    torch.manual_seed(1)
    for m in model.llm.model.modules():  # a non-zero LoRA update, so speech positions differ
        if isinstance(m, PartialLoRALinear):
            torch.nn.init.normal_(m.lora_B, std=0.1)
    return model


@pytest.mark.parametrize("system", ["blsp", "blsp_lora", "kd", "kd_lora"])
def test_train_step_loss_and_grads_equal_naive_reference(system):
    model = _model(system)
    batch = bench_train_step.make_batch(model, 3, 2.0, response_tokens=7)
    params = [p for p in model.parameters() if p.requires_grad]
    ours = model(**batch)[0]
    with benchlib.attention([model.llm.model, model.encoder.encoder], "eager"):
        ref = bench_train_step.reference_loss(model, batch, pad_30s=False)
        padded = bench_train_step.reference_loss(model, batch, pad_30s=True)
    assert abs(ours.item() - ref.item()) <= 1e-5 * max(1.0, abs(ref.item()))
    g_ours, g_ref = torch.autograd.grad(ours, params), torch.autograd.grad(ref, params)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * max(1.0, b.abs().max().item()))
    assert torch.isfinite(padded)  # 30 s padding changes what the encoder sees: not equal


def test_flop_count_by_hand():
    model = _model("blsp")
    B, R = 2, 5
    batch = bench_train_step.make_batch(model, B, 2.0, response_tokens=R)
    f = bench_train_step.count_flops(model, batch)
    llm, V, H = model.llm, model.llm.vocab_size, model.llm.hidden_size
    # CE only: the R + 1 response rows (+ EOS) of each utterance, forward and backward
    assert f["lm_head"] == 2 * V * H * 2 * B * (R + 1)
    frames = batch["speech_lengths"].tolist()
    half = lambda x: (x + 1) // 2  # noqa: E731  a stride-2 conv (kernel 5, padding 2) or Whisper's conv2
    n = [half(half(half(half(t)))) for t in frames]  # encoder conv2, then the 3 adapter convs
    P, S = int(batch["prefix_lengths"][0]), int(batch["suffix_lengths"][0])
    L = [P + n_b + S + R + 1 for n_b in n]
    assert f["llm_tokens_per_sample"] == sum(L) / B
    P_llm, cfg = benchlib.matmul_params(llm.decoder().layers), llm.model.config
    student = sum(4 * P_llm * l + 6 * cfg.num_hidden_layers * H * l**2 for l in L)
    assert f["llm_student"] == student and f["llm_teacher"] == 0
    ref = bench_train_step.count_flops(model, batch, reference=True)
    assert ref["total"] > f["total"] and ref["llm_tokens_per_sample"] > f["llm_tokens_per_sample"]


def test_official_cif_loop_equals_vectorised_cif():
    g = torch.Generator().manual_seed(0)
    B, T, C = 3, 40, 8
    hidden = torch.randn(B, T, C, generator=g, dtype=torch.float64, requires_grad=True)
    lens = torch.tensor([40, 31, 17])
    n = torch.tensor([9, 5, 4])
    raw = torch.rand(B, T, generator=g, dtype=torch.float64).requires_grad_(True)
    alphas = scale_alphas(raw, lens, n)
    ours, counts = cif(hidden, alphas, lens)
    ref = bench_train_step.cif_loop(hidden, alphas, n)
    assert torch.equal(counts, n) and ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-10)
    w = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    g_ours = torch.autograd.grad((ours * w).sum(), (hidden, raw), retain_graph=True)
    g_ref = torch.autograd.grad((ref * w).sum(), (hidden, raw))
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-9)


@pytest.fixture(scope="module")
def sharp_llm():
    """The tiny Qwen-shaped LLM with a sharper head, so greedy choices are far from ties."""
    llm = benchlib.load_llm("qwen-tiny", CPU).eval()
    with torch.no_grad():
        llm.lm_head_weight.mul_(20.0)
    return llm


def test_teacher_ours_equals_hf_generate(sharp_llm):
    prompts = bench_teacher.make_prompts(sharp_llm, 6)
    ours = bench_teacher.ours(sharp_llm, prompts, 4, 10)  # batches of 4 and 2, sorted by length
    ref = bench_teacher.reference(sharp_llm, prompts, 3, 10)
    assert ours == ref and all(len(h) > 0 for h in ours)


def test_decode_batched_equals_one_at_a_time():
    model = _model("blsp")
    with torch.no_grad():
        model.llm.lm_head_weight.mul_(20.0)
    clips = bench_decode.make_clips(5, 2.0)
    batched = bench_decode.decode(model, clips, 4, 8)
    single = bench_decode.decode(model, clips, 1, 8)
    assert batched == single and all(len(h) > 0 for h in batched)


def _run(script: str, tmp_path, *args):
    out_json = tmp_path / f"{script}.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--quick", "--device", "cpu", "--threads", "1",
         "--json", str(out_json), *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout, json.loads(out_json.read_text())


def test_bench_train_step_quick(tmp_path):
    out, js = _run("bench_train_step.py", tmp_path, "--systems", "blsp,kd_lora")
    assert "ours/reference" in out and set(js["systems"]) == {"blsp", "kd_lora"}
    for r in js["systems"].values():
        assert r["ratio"] > 0 and 0 < r["mfu"] and r["reference"]["flops_per_sample"] > r["flops_per_sample"]
    assert js["met"] is None  # targets are checked on GPU only


def test_bench_teacher_quick(tmp_path):
    out, js = _run("bench_teacher.py", tmp_path)
    assert "ours/reference" in out and js["ratio"] > 0 and js["ours"]["tok_per_s"] > 0


def test_bench_decode_quick(tmp_path):
    out, js = _run("bench_decode.py", tmp_path)
    assert "speed-up" in out and js["ratio"] > 0 and js["agreement"] == 1.0


def test_run_cpu_table(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/run_cpu.py"), "--quick", "--threads", "1", "--only", "cif,decode",
         "--log_dir", str(tmp_path), "--out", str(tmp_path / "table.md")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 2 and "CIF" in rows[1] and "RTF" in rows[2] and "?" not in rows[2]
    # the same table from the saved outputs (what run_gpu.sh does with its results directory)
    again = subprocess.run([sys.executable, str(REPO / "benchmarks/run_cpu.py"), "--table_from", str(tmp_path)],
                           capture_output=True, text=True, timeout=60, cwd=REPO)
    assert again.returncode == 0 and rows[2].split("|")[3:6] == again.stdout.splitlines()[3].split("|")[3:6]
