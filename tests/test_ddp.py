"""Data-parallel training on 2 CPU processes (gloo) equals one process on the whole batch.

Two routes, tiny random models, CFormer + all KD losses + Partial LoRA, dropout off, SGD:

1. ``DistributedDataParallel`` around ``BLSPModel`` directly (``torch.multiprocessing.spawn``):
   after 2 steps both ranks hold bit-identical trainable weights, equal (1e-5) to 2 steps of a
   single process on the concatenated batch.
2. The real trainer: ``python -m torch.distributed.run --nproc_per_node 2 -m
   espnet_blsp.bin.blsp_train --ngpu 0 --multiprocessing_distributed false --dist_backend gloo``
   (ESPnet's launcher path "d": torchrun's environment, one process per rank) against
   ``blsp_train --ngpu 0``; the checkpoints of epochs 1 and 2 agree within 1e-5.

Equality needs each rank's shard to hold as many loss rows as the other's (the losses are means
over rows; DDP averages the ranks' gradients): ESPnet gives rank r utterances r, r+2, ... of the
length-sorted batch, so utterances 0 and 3 share a transcript and a response, as do 1 and 2.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from espnet_blsp.tasks.blsp import build_blsp_model

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["the sun is warm today", "rain falls on the city", "rain falls on the city", "the sun is warm today"]
RESPONSES = ["and the river is cold", "we stay home", "we stay home", "and the river is cold"]
FRAMES = [190, 170, 150, 130]  # distinct and sorted: the order ESPnet's sampler gives
LORA = {"r": 4, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
ADAPTER_CONF = {"num_pre_layers": 1, "num_post_layers": 1, "dropout_rate": 0.0, "attention_heads": 4,
                "linear_units": 128}
MODEL_CONF = {"ce_weight": 0.0, "kl_resp_weight": 1.0, "kl_input_weight": 1.0, "cif_weight": 1.0}
LR, STEPS = 0.5, 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build(whisper: str, llm: str):
    torch.manual_seed(0)
    return build_blsp_model(
        {"model_name_or_path": whisper, "freeze": True}, "cformer", ADAPTER_CONF,
        {"model_name_or_path": llm, "dtype": "float32", "lora_conf": LORA}, MODEL_CONF,
    )


def _batch(model, rows):
    """The collated batch of utterances ``rows`` (ids padded with -1)."""
    t = model.llm.template

    def pad(seqs):
        lens = torch.tensor([len(s) for s in seqs])
        out = torch.full((len(seqs), int(lens.max())), -1, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s)
        return out, lens

    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(n, 80, generator=g) for n in FRAMES]  # the same features whatever ``rows``
    speech = torch.nn.utils.rnn.pad_sequence([feats[i] for i in rows], batch_first=True)
    batch = {"speech": speech, "speech_lengths": torch.tensor([FRAMES[i] for i in rows])}
    for name, seqs in (
        ("text", [t.text_ids(TEXTS[i]) for i in rows]),
        ("prefix", [t.prefix_ids("Continue the following text.") for _ in rows]),
        ("suffix", [t.suffix_ids() for _ in rows]),
        ("response", [t.text_ids(RESPONSES[i]) for i in rows]),
    ):
        batch[name], batch[f"{name}_lengths"] = pad(seqs)
    return batch


def _train(model, forward, batch):
    """``STEPS`` SGD steps; returns the trainable weights."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=LR)
    for _ in range(STEPS):
        loss = forward(**batch)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _ddp_worker(rank: int, world: int, port: int, whisper: str, llm: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = _build(whisper, llm).train()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        weights = _train(model, ddp, _batch(model, list(range(rank, len(TEXTS), world))))
        torch.save(weights, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~15-20 s: two spawned processes import torch, transformers and espnet2
def test_ddp_two_ranks_equal_single_process(tiny_whisper, tiny_llm, tmp_path):
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, _free_port(), tiny_whisper, tiny_llm, str(tmp_path)), nprocs=2, join=True
    )
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    model = _build(tiny_whisper, tiny_llm).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    single = _train(model, model, _batch(model, list(range(len(TEXTS)))))

    assert rank0.keys() == rank1.keys() == single.keys()
    assert any("lora_A" in k for k in single) and any(k.startswith("adapter.") for k in single)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # the ranks never diverge
    moved = max((single[k] - before[k]).abs().max().item() for k in single)
    diff = max((rank0[k] - single[k]).abs().max().item() for k in single)
    assert moved > 1e-3 and diff <= 1e-5, (moved, diff)


# ------------------------------------------------------------------ through blsp_train (ESPnet)
def _dump(root: Path) -> Path:
    import kaldiio

    d = root / "dump"
    d.mkdir()
    keys = [f"u{i}" for i in range(len(TEXTS))]
    rng = np.random.default_rng(0)
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        for k, n in zip(keys, FRAMES):
            w(k, rng.standard_normal((n, 80)).astype(np.float32))
    for name, rows in (("text", TEXTS), ("response", RESPONSES), ("instruction", ["Continue the following text."] * 4)):
        (d / name).write_text("".join(f"{k} {r}\n" for k, r in zip(keys, rows)))
    (d / "speech_shape").write_text("".join(f"{k} {n},80\n" for k, n in zip(keys, FRAMES)))
    return d


def _train_args(d: Path, whisper: str, llm: str, out: Path):
    args = ["--config", str(REPO / "conf/tuning/train_tiny_cformer.yaml"),
            "--speech_encoder_conf", f"model_name_or_path={whisper}", "--llm_conf", f"model_name_or_path={llm}"]
    for part in ("train", "valid"):
        for f, name, kind in (("feats.scp", "speech", "kaldi_ark"), ("text", "text", "text"),
                              ("response", "response", "text"), ("instruction", "instruction", "text")):
            args += [f"--{part}_data_path_and_name_and_type", f"{d / f},{name},{kind}"]
        args += [f"--{part}_shape_file", str(d / "speech_shape")]
    return args + ["--optim", "sgd", "--optim_conf", f"lr={LR}", "--scheduler_conf", "warmup_steps=1",
                   "--max_epoch", "2", "--keep_nbest_models", "10", "--batch_size", "4", "--num_workers", "0",
                   "--seed", "0", "--ngpu", "0", "--output_dir", str(out)]


@pytest.mark.slow  # ~20-25 s: three blsp_train processes
def test_blsp_train_ddp_gloo_equals_single_process(tiny_whisper, tiny_llm, tmp_path):
    d = _dump(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-m", "espnet_blsp.bin.blsp_train",
                             *_train_args(d, tiny_whisper, tiny_llm, tmp_path / "single")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                          "-m", "espnet_blsp.bin.blsp_train", *_train_args(d, tiny_whisper, tiny_llm, tmp_path / "ddp"),
                          "--multiprocessing_distributed", "false", "--dist_backend", "gloo"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ":0/2]" in ddp.stderr  # ESPnet tags its log lines with rank/world when distributed
    ckpt = {(run, ep): torch.load(tmp_path / run / f"{ep}epoch.pth") for run in ("single", "ddp") for ep in (1, 2)}
    for ep in (1, 2):
        a, b = ckpt["single", ep], ckpt["ddp", ep]
        assert a.keys() == b.keys() and any("lora_A" in k for k in a)
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
    moved = max((ckpt["single", 2][k] - ckpt["single", 1][k]).abs().max().item() for k in ckpt["single", 1])
    assert moved > 1e-3
