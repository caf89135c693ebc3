#!/usr/bin/env python3
"""Write a tiny random Whisper, a tiny random LLM and a fake corpus (for smoke runs).

Usage:
    python -m espnet_blsp.bin.make_demo_assets --out_dir demo
    ./run.sh --corpus kaldi --corpus_dir demo/corpus --train_set train --valid_set dev \
        --test_sets test --speech_encoder demo/whisper --llm demo/llm \
        --train_config conf/tuning/train_tiny_cnn.yaml --baselines "text untrained"

The models are random: the run checks that every stage works, not that anything is learnt.
"""

import argparse
from pathlib import Path

from espnet_blsp.testing.fake_corpus import make_fake_corpus
from espnet_blsp.testing.tiny import make_tiny_llm, make_tiny_whisper


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default="demo")
    args = p.parse_args(cmd)
    out = Path(args.out_dir)
    if (out / ".done").exists():
        print(f"{out} is done, skipped")
        return
    make_fake_corpus(str(out / "corpus"))
    make_tiny_llm(str(out / "llm"))
    make_tiny_whisper(str(out / "whisper"))
    (out / ".done").touch()
    print(f"wrote {out}/corpus, {out}/llm, {out}/whisper")


if __name__ == "__main__":
    main()
