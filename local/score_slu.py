#!/usr/bin/env python3
"""SLU accuracy of free-text LLM responses (intent / sentiment classification).

Usage:
    python local/score_slu.py --task snips --ref data/snips_test/label \
        --hyp exp/x/decode_snips_snips_test/text --out exp/x/decode_snips_snips_test/score

``--ref`` lines are ``<utt_id> <label>``; the label must be one of the task's classes
(BLSP paper, Table 11), compared after normalisation, so ``SwitchLightOff`` and
``switch light off`` are the same label. Each response is mapped to a class by the rule
documented in ``espnet_blsp/scoring/metrics.py`` (the longest class named in the
response, ties to the earliest; none named = wrong). ``--classes "a,b,c"`` replaces the
task's class list. Writes ``<out>/score.json`` and ``<out>/result.txt`` (per-utterance
gold, prediction, response), prints one line.
"""

import argparse
import sys

from espnet_blsp.scoring.metrics import SLU_CLASSES
from espnet_blsp.scoring.scorers import score_slu
from espnet_blsp.scoring.tables import cli_command


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="reference labels, <utt_id> <label>")
    p.add_argument("--hyp", required=True, help="LLM responses, <utt_id> <text>")
    p.add_argument("--out", required=True, help="output dir for score.json and result.txt")
    p.add_argument("--task", choices=sorted(SLU_CLASSES), default=None, help="picks the class list")
    p.add_argument("--classes", default=None, help="comma-separated class list (instead of --task)")
    p.add_argument("--allow_missing", action="store_true",
                   help="score reference ids without a hypothesis as empty (reported) instead of failing")
    p.add_argument("--excluded", default=None,
                   help="stage 2's dump/<set>/excluded.txt: its utterances are not scored (logged)")
    args = p.parse_args(argv)
    if (args.task is None) == (args.classes is None):
        p.error("give exactly one of --task and --classes")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        score_slu(args.ref, args.hyp, args.out, task=args.task, classes=classes, allow_missing=args.allow_missing,
                  excluded=args.excluded,
                  command=cli_command(None if argv is None else [__file__, *argv]))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"{p.prog}: error: {e}")


if __name__ == "__main__":
    main()
