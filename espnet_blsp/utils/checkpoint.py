"""Checkpoints that are complete or absent, and their repair on resume.

ESPnet's trainer writes ``checkpoint.pth``, then ``<N>epoch.pth``, then re-points the
``latest.pth`` / ``<phase>.<key>.best.pth`` links and writes the ``*.ave_*.pth`` averages,
each with a plain ``torch.save``. A kill in between leaves a file cut short (0 bytes, or a
zip archive without its directory) that every later load fails on. Here:

- :func:`atomic_save` writes to a hidden temporary file in the same directory, fsyncs it
  and ``os.replace``-s it onto the name, so the name holds the old file or the new one;
- :func:`repair_experiment` runs before training resumes: a ``<N>epoch.pth`` that is
  missing, unreadable or not the model of ``checkpoint.pth`` (epoch N) is rewritten from
  it, the links are re-pointed, and an unreadable ``checkpoint.pth`` is moved aside to
  ``checkpoint.pth.broken`` (training then restarts from epoch 1);
- :func:`load_weights` raises :class:`CheckpointError`, one line naming the file and
  what to do, where ``torch.load`` would end in a deep stack trace.

Fault injection (tests): ``BLSP_FAULT_CHECKPOINT=<file name>`` makes :func:`atomic_save`
SIGKILL its own process after the temporary file of that name is written and before it
is renamed, the moment a plain ``torch.save`` would have left a partial file.
"""

import datetime
import logging
import os
import pickle
import signal
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

FAULT_ENV = "BLSP_FAULT_CHECKPOINT"
BROKEN_SUFFIX = ".broken"
_torch_save = torch.save  # the real one, also while ESPnet's modules see atomic_save


def reporter_globals() -> List[type]:
    """The classes besides tensors and plain values in ESPnet's Reporter stats (the per-epoch
    time, numpy means): what a weights-only load of a checkpoint with a reporter allows."""
    multiarray = getattr(np, "_core", None) or np.core  # numpy 2 | 1
    return [datetime.timedelta, multiarray.multiarray.scalar, np.dtype,
            *(getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType")
              if hasattr(np, "dtypes"))]


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be loaded; the message names it and the fix."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_save(obj, path) -> None:
    """``torch.save(obj, path)`` that never leaves ``path`` partly written."""
    path = Path(path)
    tmp = _temp_name(path)
    try:
        with open(tmp, "wb") as f:
            _torch_save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if os.environ.get(FAULT_ENV) == path.name:
            logging.warning(f"{FAULT_ENV}={path.name}: killing this process before {tmp} becomes {path}")
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_symlink(target: str, link) -> None:
    """Point ``link`` at ``target`` (a name in the same dir) in one rename."""
    link = Path(link)
    tmp = _temp_name(link)
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _reason(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first[:160]}" if first else type(e).__name__


def _describe(path: Path) -> str:
    """``path``, and the file it links to when it is a link."""
    return f"{path} (-> {os.readlink(path)})" if path.is_symlink() else str(path)


STAGE4_HINT = "re-run stage 4 (run.sh --stage 4) to rebuild it from checkpoint.pth, or pass another --checkpoint"


def load_weights(path, allow: Sequence[type] = (), hint: str = STAGE4_HINT) -> Dict:
    """``torch.load(path, weights_only=True)`` on CPU, or a :class:`CheckpointError` naming
    the file (and ``hint``); ``allow`` are extra classes the file may hold."""
    return _load(Path(path), True, allow, hint)


def load_trainer_checkpoint(path) -> Dict:
    """ESPnet's own ``checkpoint.pth`` (model, reporter, optimizer and scheduler states). It
    is unpickled as ESPnet's ``Trainer.resume`` does (schedulers may hold any object)."""
    return _load(Path(path), False, (), "")


def _load(path: Path, weights_only: bool, allow: Sequence[type], hint: str) -> Dict:
    hint = f"; {hint}" if hint else ""
    if not path.exists():
        raise CheckpointError(f"{_describe(path)}: checkpoint missing{hint}")
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as e:
        if weights_only and "Weights only load failed" in str(e):
            try:
                unsafe = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)[:5])
            except Exception:  # noqa: BLE001  (only the message's detail)
                unsafe = "unsupported pickle content"
            raise CheckpointError(f"{_describe(path)}: refused, it holds objects other than weights "
                                  f"({unsafe}): a weights-only load does not unpickle them") from None
        raise CheckpointError(f"{_describe(path)}: unreadable checkpoint ({_reason(e)}){hint}") from None
    except Exception as e:  # a cut-short zip is a RuntimeError, a 0-byte file an EOFError, ...
        raise CheckpointError(f"{_describe(path)}: unreadable checkpoint ({_reason(e)}){hint}") from None


def _same_weights(a: Dict, b: Dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _move_aside(path: Path, why: str) -> None:
    broken = path.with_name(path.name + BROKEN_SUFFIX)
    logging.warning(f"{why}; moved to {broken.name}")
    os.replace(path, broken)


def repair_experiment(exp_dir, best_model_criterion: Sequence[Sequence[str]]) -> Optional[int]:
    """Make ``exp_dir`` consistent with its ``checkpoint.pth`` before training resumes.

    Returns the epoch ``checkpoint.pth`` holds, or None when training starts from epoch 1
    (no checkpoint, or an unreadable one, now ``checkpoint.pth.broken``).
    """
    from espnet2.train.reporter import Reporter

    exp_dir = Path(exp_dir)
    for tmp in exp_dir.glob(".*.tmp*"):  # left by a save killed before its rename
        tmp.unlink()
    ckpt_path = exp_dir / "checkpoint.pth"
    if not ckpt_path.exists():
        return None
    try:
        state = load_trainer_checkpoint(ckpt_path)
        reporter = Reporter()
        reporter.load_state_dict(state["reporter"])
        model_state = state["model"]
    except CheckpointError as e:
        _move_aside(ckpt_path, f"{e}; the training restarts from epoch 1")
        return None
    except (KeyError, TypeError, AttributeError) as e:
        _move_aside(ckpt_path, f"{ckpt_path}: not an ESPnet trainer checkpoint ({_reason(e)}); "
                    "the training restarts from epoch 1")
        return None
    epoch = reporter.get_epoch()
    last = exp_dir / f"{epoch}epoch.pth"
    try:
        if not _same_weights(load_weights(last, hint=""), model_state):
            raise CheckpointError(f"{last}: not the model of {ckpt_path.name} (epoch {epoch})")
    except CheckpointError as e:
        logging.warning(f"{e}; rewriting {last.name} from {ckpt_path.name}")
        atomic_save(model_state, last)
    # an older n-best epoch cannot be rebuilt: set it aside, the links pick the next best
    for p in exp_dir.glob("*epoch.pth"):
        e = p.name[: -len("epoch.pth")]
        if e.isdecimal() and int(e) != epoch and p.is_file():
            try:
                load_weights(p, hint="")
            except CheckpointError as err:
                _move_aside(p, str(err))
    atomic_symlink(last.name, exp_dir / "latest.pth")
    for phase, key, mode in best_model_criterion:
        if not reporter.has(phase, key):
            continue
        for e, _ in reporter.sort_epochs_and_values(phase, key, mode):
            if (exp_dir / f"{e}epoch.pth").is_file():
                atomic_symlink(f"{e}epoch.pth", exp_dir / f"{phase}.{key}.best.pth")
                break
    return epoch
