#!/usr/bin/env python3
"""The mini corpus text: the project's own sentence grammar, deterministic per seed.

Usage:
    python local/mini/sentences.py --num_train 2000 --num_dev 100 --num_test 100 --out_dir mini/text

Writes ``train.txt``, ``dev.txt``, ``test.txt`` (one sentence per line); dev and test
sentences never occur in train.
"""

import argparse
import random
from pathlib import Path
from typing import Dict, List

PEOPLE = ["my neighbour", "the old farmer", "a young teacher", "her brother", "the doctor", "our guide",
          "the baker", "a tired student", "the captain", "my grandmother", "the new manager", "a quiet boy",
          "the painter", "his sister", "the engineer", "a kind stranger", "the children", "the musicians"]
PLACES = ["the market", "the river", "the small village", "the train station", "the museum", "the library",
          "the harbour", "the mountain path", "the city park", "the kitchen", "the hospital", "the old bridge",
          "the forest", "the school garden", "the beach", "the office", "the bakery", "the airport"]
THINGS = ["a letter", "fresh bread", "an old map", "the blue umbrella", "a cup of tea", "the heavy box",
          "a wooden chair", "the morning paper", "a bag of apples", "the broken clock", "a warm coat",
          "the red bicycle", "a basket of eggs", "the silver key", "a new camera", "the green lamp"]
TIMES = ["this morning", "yesterday evening", "last winter", "every Sunday", "after lunch", "before dawn",
         "on Friday night", "in the spring", "at noon", "during the storm", "late last night", "next week"]
ADJS = ["quiet", "crowded", "beautiful", "cold", "busy", "peaceful", "dark", "bright", "noisy", "warm",
        "empty", "famous", "muddy", "sunny", "windy", "strange"]
VERBS_T = ["carried", "found", "painted", "repaired", "sold", "bought", "cleaned", "opened", "lost",
           "borrowed", "wrapped", "delivered", "forgot", "described", "noticed", "dropped"]
VERBS_I = ["walked to", "waited at", "arrived at", "ran towards", "stayed near", "looked around",
           "sat down near", "returned to", "hurried past", "slept near", "worked at", "sang near"]
TOPICS = ["the weather", "the harvest", "the history of the town", "a famous scientist", "the price of rice",
          "an ancient castle", "the football match", "a recipe for soup", "the night sky", "the election",
          "a journey by sea", "the new bridge", "an old legend", "the school concert"]
FEELINGS = ["happy", "worried", "surprised", "curious", "nervous", "proud", "calm", "excited", "sad", "confused"]


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _sentence(rng: random.Random) -> str:
    p, q = rng.sample(PEOPLE, 2)
    templates = [
        lambda: f"{_cap(p)} {rng.choice(VERBS_T)} {rng.choice(THINGS)} {rng.choice(TIMES)}.",
        lambda: f"{_cap(p)} {rng.choice(VERBS_I)} {rng.choice(PLACES)} {rng.choice(TIMES)}.",
        lambda: f"{_cap(rng.choice(TIMES))}, {p} {rng.choice(VERBS_I)} {rng.choice(PLACES)} with {q}.",
        lambda: f"{_cap(rng.choice(PLACES))} was {rng.choice(ADJS)} and {rng.choice(ADJS)} {rng.choice(TIMES)}.",
        lambda: f"{_cap(p)} told {q} a long story about {rng.choice(TOPICS)}.",
        lambda: f"{_cap(p)} felt {rng.choice(FEELINGS)} when {q} {rng.choice(VERBS_T)} {rng.choice(THINGS)}.",
        lambda: f"Why did {p} leave {rng.choice(THINGS)} near {rng.choice(PLACES)}?",
        lambda: f"{_cap(p)} and {q} talked about {rng.choice(TOPICS)} at {rng.choice(PLACES)}.",
        lambda: f"We heard that {p} {rng.choice(VERBS_T)} {rng.choice(THINGS)} at {rng.choice(PLACES)}.",
        lambda: f"{_cap(rng.choice(TIMES))} the road to {rng.choice(PLACES)} was {rng.choice(ADJS)}.",
        lambda: f"{_cap(p)} wrote a short book about {rng.choice(TOPICS)} and gave it to {q}.",
        lambda: f"If it is {rng.choice(ADJS)} {rng.choice(TIMES)}, {p} will stay at {rng.choice(PLACES)}.",
    ]
    return rng.choice(templates)()


def make_splits(num_train: int, num_dev: int, num_test: int, seed: int = 1) -> Dict[str, List[str]]:
    rng = random.Random(seed)
    total = num_train + num_dev + num_test
    seen, ordered = set(), []
    for _ in range(total * 50):
        s = _sentence(rng)
        if s not in seen:
            seen.add(s)
            ordered.append(s)
        if len(ordered) == total:
            break
    if len(ordered) < total:
        raise ValueError(f"the grammar yielded only {len(ordered)} distinct sentences, {total} asked")
    # test, dev, then train: the test and dev sets do not depend on --num_train, so a CPU run
    # (2,000) and a GPU run (20,000) are scored on the same sentences
    return {"test": ordered[:num_test], "dev": ordered[num_test : num_test + num_dev],
            "train": ordered[num_test + num_dev :]}


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_train", type=int, default=2000)
    p.add_argument("--num_dev", type=int, default=100)
    p.add_argument("--num_test", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out_dir", required=True)
    args = p.parse_args(cmd)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, sents in make_splits(args.num_train, args.num_dev, args.num_test, args.seed).items():
        (out / f"{name}.txt").write_text("\n".join(sents) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
