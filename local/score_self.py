#!/usr/bin/env python3
"""Self-BLEU and Self-ROUGE-L (BLSP-KD, Sec. 5.2): the Text+LLM outputs are the reference.

Usage:
    python local/score_self.py --ref exp/x/baselines/text_llm/decode_qa_giga_test/text \
        --hyp exp/x/decode_qa_giga_test/text --out exp/x/decode_qa_giga_test/score

Self-BLEU is sacrebleu corpus BLEU (13a) of ``--hyp`` against ``--ref``; Self-ROUGE-L is
the mean over utterances of the ROUGE-L F-measure on lowercased words, x100.
Writes ``<out>/score.json`` and ``<out>/result.txt`` (per-utterance ROUGE-L), prints one line.
"""

import argparse
import sys

from espnet_blsp.scoring.scorers import score_self
from espnet_blsp.scoring.tables import cli_command


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="Text+LLM outputs, <utt_id> <text>")
    p.add_argument("--hyp", required=True, help="system outputs, <utt_id> <text>")
    p.add_argument("--out", required=True, help="output dir for score.json and result.txt")
    p.add_argument("--allow_missing", action="store_true",
                   help="score reference ids without a hypothesis as empty (reported) instead of failing")
    p.add_argument("--excluded", default=None,
                   help="stage 2's dump/<set>/excluded.txt: its utterances are not scored (logged)")
    args = p.parse_args(argv)
    try:
        score_self(args.ref, args.hyp, args.out, allow_missing=args.allow_missing, excluded=args.excluded,
                   command=cli_command(None if argv is None else [__file__, *argv]))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"{p.prog}: error: {e}")


if __name__ == "__main__":
    main()
