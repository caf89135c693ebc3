#!/usr/bin/env python3
"""Training sentences on many topics, written once by the mini LLM itself and cached.

Usage:
    python local/mini/llm_sentences.py --llm assets/smollm2-135m-instruct --num 600 --out mini/llm_sentences.txt

The grammar of sentences.py has ~200 words, which teaches the adapter nothing about the words
of real speech (the LibriVox test clips). This asks the LLM for one sentence at a time over
topics x styles for four sentences at a time (sampled, temperature 0.9, top-p 0.95, seeded),
keeps each complete sentence of plain English of 6-16 words (letters and simple
punctuation, no digits), and drops duplicates. Lines are appended per batch; a killed run resumes and a finished file
is reused as it is (the corpus's sentences.json then holds the same sentences).
"""

import argparse
import logging
import random
import re
from pathlib import Path
from typing import List

TOPICS = [
    "the sea", "a rainy morning", "a family dinner", "an old letter", "the harvest", "a long journey",
    "a country house", "a wedding", "a sick friend", "money and debts", "a garden in spring",
    "a difficult neighbour", "a brother and a sister", "a walk in the woods", "a winter evening",
    "a piano lesson", "a stranger at the door", "a village church", "a ship in a storm", "a kind uncle",
    "a proud lady", "a young soldier", "a school teacher", "a market day", "the king and his court",
    "a small shop", "an inheritance", "a broken promise", "a secret", "a horse ride", "the mountains",
    "a city street at night", "a good book", "cooking soup", "a lost dog", "the moon and the stars",
    "a quarrel", "an apology", "friendship", "a holiday by the lake", "a new dress", "an old castle",
    "a doctor's visit", "a train station", "a cold wind", "a birthday", "a letter from abroad", "the weather",
]
STYLES = [
    "Write four simple sentences about {t}.",
    "Write four sentences from a nineteenth-century novel about {t}.",
    "Write four sentences that a mother might say about {t}.",
    "Write four questions someone might ask about {t}.",
    "Write four sentences describing {t}.",
    "Write four sentences a polite gentleman might say about {t}.",
    "Write four sad sentences about {t}.",
    "Write four cheerful sentences about {t}.",
]
_OK = re.compile(r"^[A-Za-z][A-Za-z ,;'.?!-]*[.?!]$")


def clean(reply: str) -> List[str]:
    """The complete sentences of ``reply`` that are plain English of 6-16 words."""
    text = " ".join(re.sub(r"^\s*(\d+[.)]|[-*])\s*", "", line) for line in reply.replace('"', " ").splitlines())
    out = []
    for m in re.finditer(r"([^.?!]+[.?!])(?=\s|$)", text):
        s = m.group(1).strip()
        if _OK.match(s) and 6 <= len(s.split()) <= 16 and not s.lower().startswith(("sure", "here", "i can", "as an")):
            out.append(s)
    return out


def write_sentences(llm_dir: str, out: Path, num: int, seed: int = 0, batch_size: int = 64,
                    exclude: List[str] = ()) -> List[str]:
    """``num`` distinct sentences in ``out`` (one per line); the cached ones are kept."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    have = out.read_text(encoding="utf-8").splitlines() if out.is_file() else []
    have = list(dict.fromkeys(s for s in have if s))
    if len(have) >= num:
        return have[:num]
    if not Path(llm_dir).is_dir():
        raise SystemExit(f"the LLM for the corpus sentences is not a directory: {llm_dir}")
    tok = AutoTokenizer.from_pretrained(llm_dir)
    tok.padding_side = "left"
    from espnet_blsp.utils.dtype import resolve_dtype_name

    dtype = getattr(torch, resolve_dtype_name("auto", "cpu"))  # bfloat16 is ~30x slower without AVX512-BF16/AMX
    model = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=dtype).eval()
    seen = set(have) | set(exclude)
    rng = random.Random(seed + len(have))
    prompts = [s.format(t=t) for t in TOPICS for s in STYLES]
    out.parent.mkdir(parents=True, exist_ok=True)
    tries = 0
    with open(out, "a", encoding="utf-8") as f:
        while len(have) < num:
            tries += 1
            if tries > 10 * (num // batch_size + 1):
                raise SystemExit(f"{llm_dir} wrote only {len(have)} usable sentences of {num}")
            batch = [rng.choice(prompts) for _ in range(batch_size)]
            texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                             add_generation_prompt=True) for p in batch]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            torch.manual_seed(rng.randrange(2**31))
            with torch.no_grad():
                gen = model.generate(**enc, do_sample=True, temperature=0.9, top_p=0.95, max_new_tokens=64,
                                     pad_token_id=tok.pad_token_id or tok.eos_token_id)
            new = []
            for row in gen[:, enc["input_ids"].shape[1]:]:
                for s in clean(tok.decode(row, skip_special_tokens=True)):
                    if s not in seen:
                        seen.add(s)
                        new.append(s)
            new = new[: num - len(have)]
            f.writelines(s + "\n" for s in new)
            f.flush()
            have += new
            logging.info(f"LLM sentences: {len(have)}/{num}")
    return have


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llm", required=True)
    p.add_argument("--num", type=int, default=600)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(cmd)
    for s in write_sentences(args.llm, args.out, args.num, args.seed)[:5]:
        print(s)


if __name__ == "__main__":
    main()
