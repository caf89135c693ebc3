#!/usr/bin/env python3
"""Corpus BLEU (sacrebleu) of one or more translation directions, and their mean.

Usage:
    python local/score_bleu.py --ref data/covost_de/translation --hyp exp/x/decode_st_covost_de/text \
        --lang de --out exp/x/decode_st_covost_de/score
    python local/score_bleu.py \
        --ref data/mustc_de/translation --hyp exp/x/decode_st_mustc_de/text --lang de \
        --ref data/mustc_es/translation --hyp exp/x/decode_st_mustc_es/text --lang es \
        --out exp/x/score_st_mustc

Each direction is one ``--ref``/``--hyp``/``--lang`` triple, paired in the order given
(``--lang`` is the target language; it picks the tokenizer: 13a, zh for Chinese, char for
Japanese). ``--name`` labels a direction (default: the decode dir of its ``--hyp``).
The headline ``bleu`` is the plain mean over directions, as in the BLSP/BLSP-KD papers.
Writes ``<out>/score.json`` and ``<out>/result.txt``, prints one line.
"""

import argparse
import sys

from espnet_blsp.scoring.scorers import default_direction_name, score_bleu
from espnet_blsp.scoring.tables import cli_command


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", action="append", required=True, help="reference translations (repeatable)")
    p.add_argument("--hyp", action="append", required=True, help="hypotheses (repeatable)")
    p.add_argument("--lang", action="append", required=True, help="target language code (repeatable)")
    p.add_argument("--name", action="append", default=None, help="direction label (repeatable, optional)")
    p.add_argument("--out", required=True, help="output dir for score.json and result.txt")
    p.add_argument("--tokenize", default=None, help="sacrebleu tokenizer for every direction (overrides --lang)")
    p.add_argument("--allow_missing", action="store_true",
                   help="score reference ids without a hypothesis as empty (reported) instead of failing")
    p.add_argument("--excluded", action="append", default=None,
                   help="stage 2's excluded.txt of each direction's test set (repeatable, one per --ref)")
    args = p.parse_args(argv)
    n = len(args.ref)
    if len(args.hyp) != n or len(args.lang) != n or (args.name is not None and len(args.name) != n) or \
            (args.excluded is not None and len(args.excluded) != n):
        p.error(f"give one --hyp, --lang (and --name, if any) per --ref: {n} --ref, {len(args.hyp)} --hyp, "
                f"{len(args.lang)} --lang, {len(args.name or [])} --name")
    names = args.name or [default_direction_name(h) for h in args.hyp]
    directions = [dict(ref=r, hyp=h, lang=lang, name=name, excluded=x)
                  for r, h, lang, name, x in zip(args.ref, args.hyp, args.lang, names, args.excluded or [None] * n)]
    try:
        score_bleu(directions, args.out, allow_missing=args.allow_missing, tokenize=args.tokenize,
                   command=cli_command(None if argv is None else [__file__, *argv]))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"{p.prog}: error: {e}")


if __name__ == "__main__":
    main()
