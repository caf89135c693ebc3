#!/usr/bin/env python3
"""Word error rate of a decoding (jiwer, after the English normaliser on both sides).

Usage:
    python local/score_wer.py --ref data/test_clean/text \
        --hyp exp/train_blsp/decode_asr_test_clean/text --out exp/train_blsp/decode_asr_test_clean/score

Writes ``<out>/score.json`` (wer %, sub, del, ins, ref_words, num_utts, the command) and
``<out>/result.txt`` (summary and per-utterance REF/HYP/EVAL alignments), prints one line.
Hypothesis and reference lines are ``<utt_id> <text>``, matched by utterance id.
"""

import argparse
import sys

from espnet_blsp.scoring.scorers import score_wer
from espnet_blsp.scoring.tables import cli_command


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="reference transcripts, <utt_id> <text>")
    p.add_argument("--hyp", required=True, help="hypotheses, <utt_id> <text>")
    p.add_argument("--out", required=True, help="output dir for score.json and result.txt")
    p.add_argument("--allow_missing", action="store_true",
                   help="score reference ids without a hypothesis as empty (reported) instead of failing")
    p.add_argument("--no_normalize", action="store_true",
                   help="compare whitespace-split words as they are (no English normaliser)")
    p.add_argument("--excluded", default=None,
                   help="stage 2's dump/<set>/excluded.txt: its utterances are not scored (logged)")
    args = p.parse_args(argv)
    try:
        score_wer(args.ref, args.hyp, args.out, allow_missing=args.allow_missing,
                  normalize=not args.no_normalize, excluded=args.excluded,
                  command=cli_command(None if argv is None else [__file__, *argv]))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"{p.prog}: error: {e}")


if __name__ == "__main__":
    main()
