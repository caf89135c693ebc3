"""DeepSpeed (ZeRO-2, bf16) on 2 CPU processes with the real ``deepspeed`` engine.

ESPnet's ``DeepSpeedTrainer`` (``--use_deepspeed true``) moves tensors with ``.cuda()``, so
its epoch loop cannot run here; this test drives the engine through the same calls (one
training iteration of it, "cpu" for "cuda"; its ``resume`` as is), on the same checkpoint
layout, and checks what depends on our model:

- ``deepspeed.initialize(model=..., model_parameters=model.parameters(), config=json)`` with a
  frozen LLM and encoder, bf16 floats in the batch, ``utt_id`` passed to ``forward``;
- both ranks hold the same trainable weights after each step, and the weights move;
- ``save_checkpoint(out / "checkpoint_{e}", tag="{e}")`` stores only the trainable weights
  (our ``state_dict``), not the frozen LLM;
- ESPnet's ``DeepSpeedTrainer.resume`` (``--resume``) restores weights, optimizer state and
  reporter: resuming a run killed after epoch 1 reproduces epoch 2 exactly;
- decoding (``blsp_inference``) finds the best epoch's DeepSpeed checkpoint, or the ``.pth``
  that ESPnet's ``average_nbest_models(use_deepspeed=True)`` makes from them, and a freshly
  built model loads either with ``strict=True``.

DeepSpeed's CPU accelerator would compile a shared-memory all-reduce kernel (~1 min); the
workers skip it (``build_shm_op``), so gloo carries the collectives.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from test_ddp import _batch, _build, _free_port

deepspeed = pytest.importorskip("deepspeed")

CONFIG = {
    "train_micro_batch_size_per_gpu": 2,
    "gradient_accumulation_steps": 1,
    "gradient_clipping": 1.0,
    "bf16": {"enabled": True},
    "zero_optimization": {"stage": 2},
    # torch's AdamW: DeepSpeed's fused Adam would be compiled on a CPU (on GPU keep the default)
    "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "weight_decay": 0.0, "torch_adam": True}},
}
UTTS = ["u0", "u1", "u2", "u3"]
VALID_LOSS = {1: 1.0, 2: 2.0}  # epoch 1 is the best: not merely the last


def _reporter(last_epoch: int):
    """ESPnet's Reporter with the valid losses of epochs 1..last_epoch."""
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    for epoch in range(1, last_epoch + 1):
        reporter.set_epoch(epoch)
        with reporter.observe("valid") as sub:
            sub.register({"loss": torch.tensor(VALID_LOSS[epoch])})
            sub.next()
    return reporter


def _trainable(engine):
    return {k: v.detach().float().clone() for k, v in engine.module.state_dict().items()}


def _step(engine, rank, world):
    """One iteration of ``DeepSpeedTrainer.train_one_epoch``, with "cpu" for its "cuda"."""
    from espnet2.torch_utils.device_funcs import to_device
    from espnet2.torch_utils.recursive_op import recursive_average

    rows = list(range(rank, len(UTTS), world))
    batch = _batch(engine.module, rows)
    batch["utt_id"] = [UTTS[i] for i in rows]  # as ESPnet's trainer adds it
    batch = to_device(batch, "cpu", dtype=torch.bfloat16)  # as DeepSpeedTrainer does for bf16 configs
    loss, stats, weight = engine(**batch)
    # all-reduces every statistic: the ranks must report the same keys, or this hangs
    stats = {k: v for k, v in stats.items() if v is not None}
    stats, weight = recursive_average(stats, weight, True)
    loss = loss / weight * world
    engine.backward(loss)
    engine.step()
    return stats


def _worker(rank: int, world: int, port: int, whisper: str, llm: str, out_dir: str, resume: bool) -> None:
    import deepspeed.comm.torch as ds_torch_comm

    torch.set_num_threads(1)
    ds_torch_comm.build_shm_op = lambda: None  # see the module docstring
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    deepspeed.init_distributed(dist_backend="gloo")
    model = _build(whisper, llm).train()
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=CONFIG)
    tag = "resumed" if resume else "run"
    states = {}
    if resume:  # ESPnet's --resume: the latest checkpoint_<e> of a run killed after epoch 1
        from espnet2.train.deepspeed_trainer import DeepSpeedTrainer
        from espnet2.train.reporter import Reporter

        reporter = Reporter()
        DeepSpeedTrainer.resume(model=engine, reporter=reporter, output_dir=Path(out_dir) / "killed_after_1")
        states["reporter_epoch"] = reporter.get_epoch()
        states[1] = _trainable(engine)
        _step(engine, rank, world)
        states[2] = _trainable(engine)
    else:
        states[0] = _trainable(engine)
        for epoch in (1, 2):
            _step(engine, rank, world)
            engine.save_checkpoint(os.path.join(out_dir, f"checkpoint_{epoch}"), tag=str(epoch),
                                   client_state={"reporter": _reporter(epoch).state_dict()})
            states[epoch] = _trainable(engine)
    torch.save(states, os.path.join(out_dir, f"{tag}_rank{rank}.pt"))
    deepspeed.comm.destroy_process_group()


def _spawn(whisper, llm, out_dir, resume):
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), whisper, llm, str(out_dir), resume), nprocs=2, join=True)
    return [torch.load(out_dir / f"{'resumed' if resume else 'run'}_rank{r}.pt") for r in (0, 1)]


@pytest.mark.slow  # ~30-40 s: four spawned processes import deepspeed, transformers and espnet2
def test_deepspeed_zero2_bf16_train_checkpoint_resume_average(tiny_whisper, tiny_llm, tmp_path):
    from espnet2.main_funcs.average_nbest_models import average_nbest_models

    from espnet_blsp.bin.blsp_inference import find_checkpoint, load_trainable_state

    run0, run1 = _spawn(tiny_whisper, tiny_llm, tmp_path, resume=False)
    model = _build(tiny_whisper, tiny_llm)
    keys = set(model.trainable_keys())
    assert any("lora_A" in k for k in keys) and any(k.startswith("adapter.") for k in keys)
    for epoch in (0, 1, 2):  # the ranks never diverge
        assert run0[epoch].keys() == keys
        assert all(torch.equal(run0[epoch][k], run1[epoch][k]) for k in keys)
    moved = max((run0[2][k] - run0[0][k]).abs().max().item() for k in keys)
    assert moved > 1e-4, moved

    # the checkpoint holds the trainable weights only: not the frozen LLM or encoder
    saved = torch.load(tmp_path / "checkpoint_2" / "2" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    assert set(saved) == keys
    assert all(torch.equal(saved[k].float(), run0[2][k]) for k in keys)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "llm.model.lm_head.weight" in frozen and not frozen & set(saved)

    # --resume (ESPnet's DeepSpeedTrainer.resume) after epoch 1, then one more step: epoch 2 exactly
    shutil.copytree(tmp_path / "checkpoint_1", tmp_path / "killed_after_1" / "checkpoint_1")
    res0, res1 = _spawn(tiny_whisper, tiny_llm, tmp_path, resume=True)
    assert res0["reporter_epoch"] == res1["reporter_epoch"] == 1
    for k in keys:
        assert torch.equal(res0[1][k], run0[1][k]) and torch.equal(res0[2][k], run0[2][k]), k
        assert torch.equal(res1[2][k], res0[2][k])

    # decoding finds the best epoch's DeepSpeed checkpoint: ESPnet makes no <e>epoch.pth, so
    # its 1-best average is a dangling link and there is no valid.loss.best.pth
    average_nbest_models(tmp_path, _reporter(2), [("valid", "loss", "min")], nbest=[1], use_deepspeed=True)
    assert (tmp_path / "valid.loss.ave.pth").is_symlink() and not (tmp_path / "valid.loss.ave.pth").exists()
    best = find_checkpoint(tmp_path, None)
    assert best == tmp_path / "checkpoint_1" / "1" / "mp_rank_00_model_states.pt"
    fresh = _build(tiny_whisper, tiny_llm)
    fresh.load_state_dict(load_trainable_state(best), strict=True)
    assert all(torch.equal(fresh.state_dict()[k].float(), run0[1][k]) for k in keys)

    # an n-best average over the DeepSpeed checkpoints is a real file, and decoding takes it
    average_nbest_models(tmp_path, _reporter(2), [("valid", "loss", "min")], nbest=[2], use_deepspeed=True)
    assert find_checkpoint(tmp_path, None) == tmp_path / "valid.loss.ave.pth"
    fresh.load_state_dict(load_trainable_state(tmp_path / "valid.loss.ave.pth"), strict=True)
    state = fresh.state_dict()
    for k in keys:
        torch.testing.assert_close(state[k].float(), (run0[1][k] + run0[2][k]) / 2)


def test_deepspeed_config_in_conf_is_valid():
    """conf/deepspeed/zero2_bf16.json: DeepSpeed parses it and builds its optimizer and scheduler."""
    from deepspeed.runtime import lr_schedules
    from deepspeed.runtime.config import DEEPSPEED_OPTIMIZERS, DeepSpeedConfig

    path = Path(__file__).resolve().parents[1] / "conf" / "deepspeed" / "zero2_bf16.json"
    cfg = json.loads(path.read_text())
    parsed = DeepSpeedConfig(cfg)
    assert parsed.bfloat16_config.enabled and parsed.zero_optimization_stage == 2
    assert parsed.gradient_accumulation_steps == cfg["gradient_accumulation_steps"]
    assert parsed.optimizer_name in DEEPSPEED_OPTIMIZERS, parsed.optimizer_name
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.AdamW(params, **parsed.optimizer_params)  # what DeepSpeed builds for "AdamW"
    sched = getattr(lr_schedules, parsed.scheduler_name)(opt, **parsed.scheduler_params)
    for _ in range(cfg["scheduler"]["params"]["warmup_num_steps"] + 10):
        opt.step()
        sched.step()
    # linear warmup to the optimizer's lr, then constant (README: unlike ESPnet's warmuplr)
    assert sched.get_last_lr()[0] == pytest.approx(cfg["optimizer"]["params"]["lr"])


@pytest.mark.parametrize("config, ngpu, expected", [
    (None, 2, "needs --deepspeed_config"),
    ("missing.json", 2, "needs --deepspeed_config"),
    ("broken.json", 2, "is not valid JSON"),
    ("good.json", 1, "needs distributed training"),  # ESPnet would silently use its own trainer
    ("good.json", 2, "runs on CUDA GPUs only"),  # this machine has no GPU
])
def test_blsp_train_use_deepspeed_fails_early_and_clearly(tmp_path, monkeypatch, config, ngpu, expected):
    from espnet_blsp.tasks.blsp import BLSPTask

    if torch.cuda.is_available() and expected.startswith("runs on CUDA"):
        pytest.skip("a GPU is present")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    (tmp_path / "broken.json").write_text('{"bf16": {"enabled": true},')
    (tmp_path / "good.json").write_text(json.dumps(CONFIG))
    cmd = ["--use_deepspeed", "true", "--ngpu", str(ngpu), "--output_dir", str(tmp_path / "exp")]
    if config:
        cmd += ["--deepspeed_config", str(tmp_path / config)]
    with pytest.raises(SystemExit, match=expected):
        BLSPTask.main(cmd=cmd)
    assert not (tmp_path / "exp").exists()


def test_use_deepspeed_sets_omp_num_threads(monkeypatch):
    """ESPnet's init_deepspeed reads int(os.environ["OMP_NUM_THREADS"]): a KeyError when unset."""
    import argparse

    from espnet_blsp.tasks import blsp

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(blsp.torch.cuda, "is_available", lambda: True)
    args = argparse.Namespace(deepspeed_config=str(Path(__file__).resolve().parents[1] / "conf/deepspeed/zero2_bf16.json"),
                              ngpu=2, dist_launcher=None)
    blsp.check_deepspeed_args(args)
    assert int(os.environ["OMP_NUM_THREADS"]) >= 1
