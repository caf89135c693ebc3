#!/usr/bin/env python3
"""Stage 1: prepare a Kaldi data dir (wav.scp, text, utt2spk, ...) from a corpus layout.

Usage:
    python local/data_prep.py --corpus librispeech --src /data/LibriSpeech --dst data/test_clean --subset test-clean
    python local/data_prep.py --corpus mustc --src /data/MUSTC_v1.0 --dst data/mustc_tst_de --subset tst-COMMON --lang de
    python local/data_prep.py --corpus covost2 --src /data/covost --audio_dir /data/cv/en \
        --dst data/covost_de --subset test --lang de
    python local/data_prep.py --corpus kaldi --src mini/data/mini_test --dst data/mini_test

Corpora and the layouts they read: see the docstrings of espnet_blsp/data/corpora/<corpus>.py.
A finished dst holds ``.done`` and is skipped on re-runs; utterances left out are listed
with their reason in ``<dst>/excluded.txt``.
"""

import argparse
import logging
import sys

from espnet_blsp.data.corpora import CORPORA, corpus_options, prepare


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, choices=sorted(CORPORA), help="corpus layout to read")
    p.add_argument("--src", required=True, help="corpus root (or Kaldi data dir)")
    p.add_argument("--dst", required=True, help="output data dir, e.g. data/test_clean")
    p.add_argument("--subset", default="", help="subset/split, e.g. test-clean, M, tst-COMMON, dev")
    p.add_argument("--lang", default="", help="target language of ST corpora (covost2, mustc), e.g. de")
    p.add_argument("--audio_dir", default="", help="covost2: Common Voice English root holding clips/ (default: --src)")
    return p


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    args = get_parser().parse_args(cmd)
    options = {"subset": args.subset, "lang": args.lang, "audio_dir": args.audio_dir}
    given = ", ".join(f"{k}={v}" for k, v in options.items() if v) or "no options"
    logging.info(f"data prep: {args.corpus} {args.src} -> {args.dst} ({given}; "
                 f"{args.corpus} takes {corpus_options(args.corpus)})")
    prepare(args.corpus, args.src, args.dst, **options)


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:  # bad input: one clear line, no traceback
        logging.error(e)
        sys.exit(1)
