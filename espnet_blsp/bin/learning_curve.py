#!/usr/bin/env python3
"""Learning curves (BLSP Figure 4): decode every epoch checkpoint on a validation subset.

Usage:
    python -m espnet_blsp.bin.learning_curve --exp_dir exp/train_blsp --data_dir dump/mini_dev_cw_n40 \
        --num_utts 32 --out_dir exp/train_blsp/curves
    # the decoding options of stage 5, and the corpus transcripts as the WER reference:
    python -m espnet_blsp.bin.learning_curve --exp_dir exp/train_blsp --data_dir dump/dev_cw \
        --ref_text data/dev/text --batch_size 32 --max_new_tokens 48 --out_dir exp/train_blsp/curves

Training must keep every epoch's model: ESPnet deletes the ``<e>epoch.pth`` outside the
``--keep_nbest_models`` best, so train with ``--keep_nbest_models`` >= ``max_epoch``, and
with ``--num_iters_per_epoch K`` to get a point every K steps (DeepSpeed's
``checkpoint_<e>/`` dirs are all kept and are read too).

For the untrained adapter (step 0, as ``blsp_inference --mode untrained`` builds it) and
each epoch ``e`` (step ``e * num_iters_per_epoch`` of ``exp_dir/config.yaml``; without
``num_iters_per_epoch``, the reporter's count of training iterations), the first
``--num_utts`` utterance ids (sorted) of ``--data_dir`` are decoded twice with
``blsp_inference``'s batched decoding:

    asr           "Please repeat the following words."  -> WER against ``text`` (or --ref_text)
    continuation  the continuation instruction          -> Self-BLEU / Self-ROUGE-L against
                  ``response``, the Text+LLM (teacher) continuation; ``-rp`` rows are skipped

Steps count training iterations (batches); with ``accum_grad`` A the optimizer made
steps / A updates. The losses (``loss``, ``loss_*``, ``acc``, train and valid) come from the
reporter in ``exp_dir/checkpoint.pth``.

Writes to ``--out_dir`` (default ``exp_dir/curves``):

    points.jsonl        one line per point: epoch, step, scores, hypotheses (resumable: a
                        re-run decodes only the checkpoints that have no point yet or changed)
    learning_curve.png  repeat WER | Self-BLEU, Self-ROUGE-L | losses, against steps
    learning_curve.md   a table of the points and a link to the PNG (make_results.py embeds it)
    cmd                 this command line
"""

import argparse
import importlib.util
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from espnet_blsp.bin.blsp_inference import (
    add_decode_arguments, build_model, decode_speech, epoch_checkpoints, instructions_for, load_config,
    load_reporter, load_trainable_state, prefix_tensors, read_kv,
)
from espnet_blsp.utils.dtype import resolve_device
from espnet_blsp.scoring import curves
from espnet_blsp.utils.checkpoint import CheckpointError


class _Collect:
    """A ``decode_speech`` writer that keeps the hypotheses in a dict."""

    def __init__(self):
        self.hyps: Dict[str, str] = {}

    def write(self, items) -> None:
        self.hyps.update(items)


def subset_keys(data_dir: Path, ref_text: Path, num_utts: int) -> List[str]:
    """The first ``num_utts`` sorted ids of ``data_dir/response`` (``-rp`` rows skipped),
    after checking that each has features and a transcript."""
    for path, what in ((ref_text, "the transcripts (the repeat WER reference)"),
                       (data_dir / "response", "the Text+LLM continuations of stage 3 (the Self-BLEU "
                        "reference); give the validation dump dir dump/<valid_set>_cw..."),
                       (data_dir / "feats.scp", "the features of stage 2")):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: it should hold {what}")
    keys = sorted(k for k in read_kv(data_dir / "response") if not k.endswith("-rp"))
    if not keys:
        raise ValueError(f"{data_dir / 'response'} holds no continuation rows")
    keys = keys[:num_utts]
    for path in (ref_text, data_dir / "feats.scp"):
        lost = sorted(set(keys) - set(read_kv(path)))
        if lost:
            raise ValueError(f"{path} lacks {len(lost)} of the utterances, e.g. {lost[:5]}")
    return keys


def step_of(cfg: dict, reporter) -> Callable[[int], int]:
    """epoch -> training steps: ``epoch * num_iters_per_epoch``, else the reporter's count of
    training iterations up to the end of that epoch."""
    k = cfg.get("num_iters_per_epoch")
    counts = {}
    if reporter is not None:
        counts = {e: int(s["train"]["total_count"]) for e, s in reporter.stats.items() if "train" in s}
    if k:
        off = sorted(e for e, n in counts.items() if n != e * k)
        if off:
            logging.warning(f"the reporter counts other iteration totals than epoch x {k} at epochs {off} "
                            "(num_iters_per_epoch changed on resume?); the steps use epoch x num_iters_per_epoch")
        return lambda e: e * k
    if not counts:
        raise ValueError("cannot convert epochs to steps: config.yaml has no num_iters_per_epoch and "
                         "there is no checkpoint.pth with the reporter's iteration counts")

    def from_counts(e: int) -> int:
        if e == 0:
            return 0
        if e not in counts:
            raise ValueError(f"the reporter has no training stats for epoch {e}")
        return counts[e]
    return from_counts


def find_reporter(exp_dir: Path, ckpts: Dict[int, Path]):
    """The reporter of ``checkpoint.pth``, else of the last DeepSpeed checkpoint; None if none."""
    path = exp_dir / "checkpoint.pth"
    if not path.exists():
        ds = [p for p in ckpts.values() if p.name == "mp_rank_00_model_states.pt"]
        path = ds[-1] if ds else None
    if path is None:
        logging.warning(f"{exp_dir}/checkpoint.pth not found: no loss curves")
        return None
    return load_reporter(path)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True, type=Path, help="training dir (config.yaml + <e>epoch.pth)")
    p.add_argument("--data_dir", required=True, type=Path,
                   help="validation dump dir with feats.scp, text and response (dump/<valid_set>_cw...)")
    p.add_argument("--ref_text", type=Path, default=None, help="WER reference (default: <data_dir>/text)")
    p.add_argument("--num_utts", type=int, default=32, help="decode the first N utterance ids (sorted)")
    p.add_argument("--out_dir", type=Path, default=None, help="default: <exp_dir>/curves")
    p.add_argument("--no_untrained", action="store_true", help="no step-0 point (untrained adapter)")
    add_decode_arguments(p)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return p


def run(args, command: str) -> Dict[int, dict]:
    exp_dir, data_dir = args.exp_dir, args.data_dir
    out_dir = args.out_dir or exp_dir / "curves"
    ref_text = args.ref_text or data_dir / "text"
    if importlib.util.find_spec("matplotlib") is None:  # fail before decoding, not after
        raise ValueError("the plot needs matplotlib: pip install matplotlib (or pip install -e '.[mini]')")
    cfg = load_config(exp_dir)
    ckpts = epoch_checkpoints(exp_dir)
    max_epoch = cfg.get("max_epoch")
    if not ckpts:
        raise FileNotFoundError(
            f"{exp_dir} holds no <e>epoch.pth (nor DeepSpeed checkpoint_<e>/): ESPnet removes the epoch "
            f"checkpoints outside the n-best, so train with --keep_nbest_models >= max_epoch ({max_epoch})")
    gaps = sorted(set(range(1, max(ckpts) + 1)) - set(ckpts))
    if gaps:
        logging.warning(f"epochs {gaps} have no checkpoint (removed by ESPnet: keep_nbest_models "
                        f"{cfg.get('keep_nbest_models')} < max_epoch {max_epoch}); the curve skips them")
    if args.num_utts < 1:
        raise ValueError(f"--num_utts must be >= 1, got {args.num_utts}")
    keys = subset_keys(data_dir, ref_text, args.num_utts)
    refs, responses = read_kv(ref_text), read_kv(data_dir / "response")
    reporter = find_reporter(exp_dir, ckpts)
    losses = curves.loss_curves(reporter.stats) if reporter is not None else {}
    step = step_of(cfg, reporter)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cmd").write_text(command + "\n", encoding="utf-8")
    points_path = out_dir / "points.jsonl"
    setup = {"data_dir": str(data_dir), "ref_text": str(ref_text), "keys": keys,
             "max_new_tokens": args.max_new_tokens, "beam_size": args.beam_size}
    if args.repetition_penalty != 1.0:  # only when on, so points cached without it stay valid
        setup["repetition_penalty"] = args.repetition_penalty
    points = curves.read_points(points_path)
    for e, p in points.items():
        if p["setup"] != setup:
            diff = sorted(k for k in setup if p["setup"].get(k) != setup[k])
            raise ValueError(f"{points_path}: epoch {e} was decoded with other settings ({', '.join(diff)}); "
                             "delete the file or choose another --out_dir")
    todo = [(0, None)] if not args.no_untrained else []
    todo += list(ckpts.items())
    todo = [(e, c) for e, c in todo
            if e not in points or (c is not None and points[e]["mtime_ns"] != c.stat().st_mtime_ns)]
    logging.info(f"{exp_dir}: epochs {sorted(ckpts)}, {len(points)} points cached in {points_path}, "
                 f"{len(todo)} to decode on {len(keys)} utterances of {data_dir}")
    if todo:
        device = resolve_device(args.device)
        model = build_model(exp_dir, device, None, load=False)  # epoch 0: the untrained adapter
        feats_scp = read_kv(data_dir / "feats.scp")
        prefixes = {task: prefix_tensors(model.llm, instructions_for(task, data_dir, keys, None), device)
                    for task in curves.TASKS}
        for epoch, ckpt in todo:
            if ckpt is not None:
                model.load_state_dict(load_trainable_state(ckpt))
            t0 = time.time()
            hyps = {}
            for task in curves.TASKS:
                out = _Collect()
                decode_speech(model, keys, feats_scp, prefixes[task], args, out, device)
                hyps[task] = dict(sorted(out.hyps.items()))
            point = {"epoch": epoch, "step": step(epoch), "checkpoint": ckpt.name if ckpt else "untrained",
                     "mtime_ns": ckpt.stat().st_mtime_ns if ckpt else None, "setup": setup,
                     **curves.score_point(refs, responses, hyps), "decode_s": round(time.time() - t0, 2),
                     "hyps": hyps}
            curves.append_point(points_path, point)
            points[epoch] = point
            logging.info(f"epoch {epoch} (step {point['step']}): WER {point['wer']}, Self-BLEU "
                         f"{point['self_bleu']:.2f}, Self-ROUGE-L {point['self_rouge_l']:.2f} "
                         f"({point['decode_s']:.1f} s) -> {points_path}")
    points = dict(sorted(points.items()))

    tag = exp_dir.resolve().name
    k, accum = cfg.get("num_iters_per_epoch"), cfg.get("accum_grad", 1)
    search = "greedy" if args.beam_size == 1 else f"beam {args.beam_size}"
    if args.repetition_penalty != 1.0:
        search += f" (repetition penalty {args.repetition_penalty})"
    about = [f"experiment `{exp_dir}`, validation subset: the first {len(keys)} utterance ids (sorted) of "
             f"`{data_dir}`; {search} decoding, at most {args.max_new_tokens} new tokens",
             f"steps: {'epoch x ' + str(k) + ' (num_iters_per_epoch)' if k else 'training iterations (reporter)'}"
             f", batch_size {cfg.get('batch_size')} ({cfg.get('batch_type')})"
             + (f", accum_grad {accum} (optimizer updates = steps / {accum})" if accum != 1 else ""),
             f"repeat WER: \"Please repeat the following words.\" against `{ref_text}`; Self-BLEU / "
             f"Self-ROUGE-L: the continuation instruction against the Text+LLM continuations "
             f"(`{data_dir / 'response'}`)",
             "epoch 0 is the untrained adapter; the losses are ESPnet's per-epoch means (reporter of "
             "checkpoint.pth)"]
    curves.plot(out_dir / "learning_curve.png",
                f"{tag}: learning curves on {len(keys)} utterances of {data_dir.name}", points, losses, step)
    (out_dir / "learning_curve.md").write_text(curves.render_markdown(tag, points, losses, about),
                                               encoding="utf-8")
    logging.info(f"wrote {out_dir}/learning_curve.png and learning_curve.md ({len(points)} points)")
    return points


def main(cmd: Optional[List[str]] = None) -> Dict[int, dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    command = "python -m espnet_blsp.bin.learning_curve " + shlex.join(cmd if cmd is not None else sys.argv[1:])
    try:
        return run(args, command)
    except (FileNotFoundError, ValueError, CheckpointError) as e:
        raise SystemExit(f"learning_curve: error: {e}") from None


if __name__ == "__main__":
    main()
