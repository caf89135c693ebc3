#!/usr/bin/env python3
"""Stage 1: prepare a Kaldi data dir from a corpus layout.

Usage:
    python local/data_prep.py --corpus librispeech --src /data/LibriSpeech --dst data/test_clean --subset test-clean
    python local/data_prep.py --corpus kaldi --src mini/data/mini_test --dst data/mini_test
"""

import argparse
import logging

from espnet_blsp.data.corpora import CORPORA, prepare


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help=" | ".join(sorted(CORPORA)))
    p.add_argument("--src", required=True, help="corpus root (or Kaldi dir)")
    p.add_argument("--dst", required=True, help="output data dir")
    p.add_argument("--subset", default="", help="corpus subset, e.g. test-clean (LibriSpeech), test (Common Voice)")
    args = p.parse_args(cmd)
    logging.info(f"data prep: {args.corpus} {args.src} ({args.subset or '-'}) -> {args.dst}")
    prepare(args.corpus, args.src, args.dst, args.subset)


if __name__ == "__main__":
    main()
