#!/usr/bin/env python3
"""Score one decoding output (each metric runs on its own).

Usage:
    python local/score.py wer  --ref data/test_clean/text --hyp exp/x/decode_asr_test_clean/text --out exp/x/decode_asr_test_clean/score
    python local/score.py bleu --ref data/covost_de/translation --hyp .../text --lang de --out ...
    python local/score.py slu  --ref data/snips/label --hyp .../text --task snips --out ...
    python local/score.py self --ref exp/x/baselines/text_llm/decode_continuation_test/text --hyp .../text --out ...

Writes ``<out>/score.json`` and ``<out>/result.txt`` and prints a one-line summary.
"""

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

from espnet_blsp.data.kaldi_dir import read_kv
from espnet_blsp.scoring import metrics


def slu_classes(task: str):
    from espnet_blsp.bin.blsp_inference import TASKS

    if task == "slue":
        return ["positive", "negative", "neutral"]
    m = re.search(r"\[(.*)\]", TASKS[task] or "")
    if not m:
        raise ValueError(f"task {task} has no class list")
    return [c.strip() for c in m.group(1).split(",")]


def score(metric: str, ref_path: str, hyp_path: str, out: str, lang: str = "en", task: str = "", allow_missing: bool = False, cmd: str = "") -> dict:
    keys, refs, hyps = metrics.match(read_kv(ref_path), read_kv(hyp_path), allow_missing)
    if metric == "wer":
        result = metrics.wer(refs, hyps)
    elif metric == "bleu":
        result = {"bleu": metrics.bleu(refs, hyps, lang), "lang": lang}
    elif metric == "slu":
        result = {"acc": metrics.slu_accuracy(refs, hyps, slu_classes(task)), "task": task}
    elif metric == "self":
        result = metrics.self_scores(refs, hyps)
    else:
        raise ValueError(f"unknown metric {metric!r} (wer | bleu | slu | self)")
    result.update(metric=metric, num_utts=len(keys), ref=str(ref_path), hyp=str(hyp_path), command=cmd)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "score.json").write_text(json.dumps(result, indent=2) + "\n")
    summary = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items() if k not in ("ref", "hyp", "command"))
    (out_dir / "result.txt").write_text(summary + "\n")
    print(f"{hyp_path}: {summary}")
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metric", choices=["wer", "bleu", "slu", "self"])
    p.add_argument("--ref", required=True)
    p.add_argument("--hyp", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--lang", default="en")
    p.add_argument("--task", default="", help="slu: snips | fsc | slue")
    p.add_argument("--allow_missing", action="store_true", help="score missing hypotheses as empty")
    args = p.parse_args(argv)
    score(args.metric, args.ref, args.hyp, args.out, args.lang, args.task, args.allow_missing,
          "python local/score.py " + shlex.join(argv if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    main()
