"""Checkpoints are complete or absent; a broken one is repaired on resume or named on load."""

import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from espnet_blsp.utils.checkpoint import (
    FAULT_ENV, CheckpointError, atomic_save, load_weights, repair_experiment,
)

CRITERIA = [("valid", "loss", "min")]


def _reporter(losses):
    """An ESPnet Reporter with one valid loss per epoch (epochs 1..len(losses))."""
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    for epoch, loss in enumerate(losses, 1):
        reporter.set_epoch(epoch)
        with reporter.observe("valid") as sub:
            sub.register({"loss": loss})
            sub.next()
    return reporter


def _weights(seed):
    g = torch.Generator().manual_seed(seed)
    return {"adapter.w": torch.randn(64, 64, generator=g), "adapter.b": torch.randn(64, generator=g)}


def _exp(tmp_path, losses=(2.0, 1.0)):
    """An exp dir as ESPnet's trainer leaves it after len(losses) epochs (keep_nbest 2)."""
    exp = tmp_path / "exp"
    exp.mkdir()
    for epoch in range(1, len(losses) + 1):
        torch.save(_weights(epoch), exp / f"{epoch}epoch.pth")
    last = len(losses)
    torch.save({"model": _weights(last), "reporter": _reporter(losses).state_dict(), "optimizers": [],
                "schedulers": [], "scaler": None}, exp / "checkpoint.pth")
    best = min(range(1, last + 1), key=lambda e: losses[e - 1])
    (exp / "latest.pth").symlink_to(f"{last}epoch.pth")
    (exp / "valid.loss.best.pth").symlink_to(f"{best}epoch.pth")
    return exp


def _cut(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


@pytest.mark.parametrize("cut", ["zero", "half", "missing"])
def test_repair_rewrites_the_last_epoch_from_checkpoint_pth(tmp_path, cut, caplog):
    """The issue's scenario: checkpoint.pth (epoch 2) written, 2epoch.pth cut short or absent."""
    exp = _exp(tmp_path)
    last = exp / "2epoch.pth"
    if cut == "missing":
        last.unlink()
    else:
        _cut(last, 0 if cut == "zero" else last.stat().st_size // 2)
    (exp / "latest.pth").unlink()  # killed between ESPnet's unlink and symlink_to
    with caplog.at_level(logging.WARNING):
        assert repair_experiment(exp, CRITERIA) == 2
    assert "2epoch.pth" in caplog.text and "rewriting 2epoch.pth from checkpoint.pth" in caplog.text
    state = load_weights(exp / "valid.loss.best.pth")
    assert all(torch.equal(state[k], v) for k, v in _weights(2).items())
    assert os.readlink(exp / "latest.pth") == "2epoch.pth"
    assert os.readlink(exp / "valid.loss.best.pth") == "2epoch.pth"


def test_repair_leaves_a_sound_dir_as_it_is(tmp_path, caplog):
    exp = _exp(tmp_path)
    before = {p.name: p.read_bytes() for p in exp.iterdir()}
    with caplog.at_level(logging.WARNING):
        assert repair_experiment(exp, CRITERIA) == 2
    assert not caplog.text
    assert {p.name: p.read_bytes() for p in exp.iterdir()} == before


def test_repair_replaces_an_epoch_file_of_another_attempt(tmp_path):
    """A loadable 2epoch.pth that is not checkpoint.pth's model (left by an earlier attempt)."""
    exp = _exp(tmp_path)
    torch.save(_weights(99), exp / "2epoch.pth")
    repair_experiment(exp, CRITERIA)
    assert torch.equal(load_weights(exp / "2epoch.pth")["adapter.b"], _weights(2)["adapter.b"])


def test_repair_moves_an_unreadable_checkpoint_pth_aside(tmp_path, caplog):
    exp = _exp(tmp_path)
    _cut(exp / "checkpoint.pth", 1000)
    with caplog.at_level(logging.WARNING):
        assert repair_experiment(exp, CRITERIA) is None  # ESPnet then restarts from epoch 1
    assert str(exp / "checkpoint.pth") in caplog.text and "restarts from epoch 1" in caplog.text
    assert not (exp / "checkpoint.pth").exists() and (exp / "checkpoint.pth.broken").exists()


def test_repair_sets_a_broken_older_best_epoch_aside(tmp_path):
    """Epoch 1 is the best but its file is broken (it cannot be rebuilt): best -> epoch 2."""
    exp = _exp(tmp_path, losses=(1.0, 2.0))
    _cut(exp / "1epoch.pth", 10)
    repair_experiment(exp, CRITERIA)
    assert (exp / "1epoch.pth.broken").exists() and not (exp / "1epoch.pth").exists()
    assert os.readlink(exp / "valid.loss.best.pth") == "2epoch.pth"


def test_atomic_save_killed_before_the_rename_leaves_the_old_file(tmp_path):
    """BLSP_FAULT_CHECKPOINT kills the process between the temporary file and the rename,
    where a plain torch.save would have left a partial file; the next repair removes the
    temporary file."""
    path = tmp_path / "1epoch.pth"
    atomic_save({"x": torch.zeros(3)}, path)
    code = ("import torch; from espnet_blsp.utils.checkpoint import atomic_save; "
            f"atomic_save({{'x': torch.ones(100000)}}, {str(path)!r})")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, FAULT_ENV: "1epoch.pth"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert torch.equal(load_weights(path)["x"], torch.zeros(3))  # the old one, complete
    assert [p.name for p in tmp_path.glob(".1epoch.pth.tmp*")]  # the new one never got the name
    repair_experiment(tmp_path, CRITERIA)
    assert not list(tmp_path.glob(".*.tmp*"))


@pytest.mark.parametrize("size", [0, 300])
def test_load_weights_names_the_broken_file_and_the_fix(tmp_path, size):
    exp = _exp(tmp_path)
    _cut(exp / "2epoch.pth", size)
    with pytest.raises(CheckpointError) as e:
        load_weights(exp / "valid.loss.best.pth")
    msg = str(e.value)
    assert "\n" not in msg and "valid.loss.best.pth (-> 2epoch.pth): unreadable checkpoint" in msg
    assert "run.sh --stage 4" in msg


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_deepspeed_states_load_weights_only(tmp_path):
    """A DeepSpeed ``mp_rank_00_model_states.pt`` is read with weights_only: the weights and
    plain values load, a pickled object that would run code is refused."""
    from espnet_blsp.bin.blsp_inference import load_reporter, load_trainable_state

    ds = tmp_path / "checkpoint_1" / "1"
    ds.mkdir(parents=True)
    good = ds / "mp_rank_00_model_states.pt"
    torch.save({"module": _weights(1), "ds_version": "0.16", "global_steps": 3,
                "param_shapes": [{"adapter.w": torch.Size([64, 64])}],
                "reporter": _reporter([1.5]).state_dict()}, good)
    assert torch.equal(load_trainable_state(good)["adapter.w"], _weights(1)["adapter.w"])
    assert load_reporter(good).get_epoch() == 1
    bad = tmp_path / "evil.pt"
    torch.save({"module": _weights(1), "payload": _Evil()}, bad)
    with pytest.raises(CheckpointError, match=r"evil.pt: refused, it holds objects other than weights \(posix.system"):
        load_trainable_state(bad)
    assert not (Path.cwd() / "pwned").exists()
    assert zipfile.is_zipfile(bad)  # a real torch checkpoint, refused for its content
