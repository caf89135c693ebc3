#!/usr/bin/env python3
"""Training sentences of broad vocabulary from Debian's ``fortunes`` package (quotations,
proverbs, literature, poems; ~13,000 usable sentences, 42 of the 45 distinct words of the
LibriVox test clips), for the mini corpus.

Usage:
    python local/mini/fortune_sentences.py --num 600 [--dir /usr/share/games/fortunes]

The grammar of sentences.py has ~200 words; the LLM-written sentences (llm_sentences.py) cost
minutes of generation per thousand. The fortune files are read, not generated: each entry
(between ``%`` lines) loses its attribution lines (``-- Author``), entries holding anything
but letters, spaces and simple punctuation (digits, code, ASCII art, foreign letters) are
dropped whole, the rest are split into sentences, and a sentence is kept if it starts with a
capital and has 5-20 words; it is written as the mini corpus writes its text (lower case,
no punctuation but apostrophes). The choice is seeded and stable for a given package version.
"""

import argparse
import random
import re
from pathlib import Path
from typing import Iterable, List

DEFAULT_DIR = "/usr/share/games/fortunes"
_PLAIN = re.compile(r"[^A-Za-z ,.;:'!?\"-]")
_ATTRIBUTION = re.compile(r"^\s*--")


def normalize(sentence: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", sentence.lower().replace("-", " ")).split()).strip("'")


def fortune_files(root: Path) -> List[Path]:
    """The fortune files of ``root``: the plain-text ones, not their ``.dat`` indexes or ``.u8`` links."""
    return sorted(p for p in root.iterdir() if p.is_file() and "." not in p.name)


def sentences_of(text: str, min_words: int = 5, max_words: int = 20) -> Iterable[str]:
    for entry in text.split("\n%\n"):
        body = " ".join(line.strip() for line in entry.split("\n") if not _ATTRIBUTION.match(line))
        if not body or _PLAIN.search(body):
            continue
        for s in re.split(r"(?<=[.!?])\s+", body):
            words = normalize(s).split()
            if s.lstrip("\"'")[:1].isupper() and min_words <= len(words) <= max_words:
                yield " ".join(words)


def read_sentences(num: int, seed: int, exclude: Iterable[str] = (), root: str = DEFAULT_DIR) -> List[str]:
    """``num`` distinct fortune sentences (seeded), none of them in ``exclude``. Raises SystemExit
    naming the package when ``root`` is missing or holds fewer usable sentences."""
    d = Path(root)
    if not d.is_dir():
        raise SystemExit(
            f"{d} not found: the fortune sentences need Debian's 'fortunes' package "
            "(apt-get install fortunes; make install-mini does it as root), or --mini_num_fortune_train 0"
        )
    seen = set(exclude)
    pool = set()
    for f in fortune_files(d):
        pool.update(s for s in sentences_of(f.read_text(encoding="utf-8", errors="replace")) if s not in seen)
    pool = sorted(pool)
    if len(pool) < num:
        raise SystemExit(f"{d} holds {len(pool)} usable sentences, fewer than the {num} asked for")
    return random.Random(seed).sample(pool, num)


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir", default=DEFAULT_DIR)
    args = p.parse_args(cmd)
    print("\n".join(read_sentences(args.num, args.seed, root=args.dir)))


if __name__ == "__main__":
    main()
