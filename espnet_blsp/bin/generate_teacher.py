#!/usr/bin/env python3
"""Stage 3: the LLM's own responses to transcripts (BLSP continuation data).

Usage:
    python -m espnet_blsp.bin.generate_teacher --llm assets/smollm2-135m-instruct \
        --text dump/train/text --out dump/train/split4/continuation_ids.1 --nj 4 --job 1

Batched greedy decoding with a KV cache, at most ``--max_new_tokens`` (64) new tokens,
on transcripts sorted by length. Each job writes the generated token ids, ``<utt> <id> <id>
...`` (without the EOS that stopped decoding): training uses exactly these ids, because
decoding them to text and tokenising that again need not give them back (byte-level BPE:
"The" vs " The"). Lines are appended and flushed per batch; a killed job resumes where it
stopped, redoing and duplicating nothing. ``--reuse FILE...`` (run.sh passes the jobs' files
of another ``--nj`` whose generation mark matches) copies the continuations those files already
hold instead of generating them again.

    python -m espnet_blsp.bin.generate_teacher --mix --llm assets/smollm2-135m-instruct \
        --dump_dir dump/train --out_dir dump/train_cw --nj 4 --rp_ratio 1:9

``--max_utts N`` (both steps, same value) uses a fixed random subset of N utterances, e.g.
to fit the CPU mini run's time budget; the rest of the set gets no training entry.

``--mix`` merges the jobs' continuations and writes a training directory whose
``response_ids``/``instruction`` hold continuation data plus, with ``--rp_ratio a:b``,
repetition data (the response is the transcript, ``<utt>-rp``) at a:b to the continuations.
``response_ids`` is what training reads; ``response`` holds the same responses as text, for
people (continuations decoded, transcripts as they are).
"""

import argparse
import logging
import random
import time
from pathlib import Path

import torch
from tqdm import tqdm

from espnet_blsp.utils.dtype import resolve_device, resolve_dtype_name
from espnet_blsp.utils.resumable import LineAppender, recover_lines, split_for_job, threads_per_job

CONTINUATION = (
    "Continue the following text in a coherent and engaging style with less than 40 words."
)
REPETITION = "Please repeat the following words."


def read_kv(path):
    from espnet_blsp.data.kaldi_dir import read_kv as _read_kv

    return _read_kv(Path(path))


def subset(keys, max_utts: int, seed: int = 0):
    """All ``keys`` sorted, or a fixed random subset of ``max_utts`` of them (sorted)."""
    keys = sorted(keys)
    if max_utts and max_utts < len(keys):
        keys = sorted(random.Random(seed).sample(keys, max_utts))
    return keys


def generate(args) -> None:
    from espnet_blsp.llm.causal_lm import SpeechLLM

    texts = read_kv(args.text)
    keys = split_for_job(subset(texts, args.max_utts, args.seed), args.nj, args.job)
    out = Path(args.out)
    done = recover_lines(out)
    todo = [k for k in keys if k not in done]
    if todo and args.reuse:  # continuations of the same generation under another --nj
        found = {}
        for f in args.reuse:
            found.update(recover_lines(f))
        reused = [k for k in todo if k in found]
        if reused:
            with LineAppender(out) as writer:
                writer.write((k, found[k]) for k in reused)
            logging.info(f"job {args.job}/{args.nj}: {len(reused)} continuations taken from {len(args.reuse)} "
                         f"files of another --nj")
            done.update((k, found[k]) for k in reused)
            todo = [k for k in todo if k not in found]
    logging.info(f"job {args.job}/{args.nj}: {len(keys)} transcripts, {len(done)} done")
    if not todo:
        return
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(threads_per_job(args.nj))
    dtype = resolve_dtype_name(args.dtype or "auto", device)
    llm = SpeechLLM(args.llm, dtype=dtype, prompt_template=args.prompt_template).to(device).eval()
    t = llm.template
    prefix = torch.tensor(t.prefix_ids(args.instruction), device=device)
    suffix = torch.tensor(t.suffix_ids(), device=device)
    ids = {k: t.text_ids(texts[k]) for k in todo}
    empty = [k for k in todo if not ids[k]]
    if empty:
        raise ValueError(f"{args.text}: empty transcripts for {empty[:5]}")
    todo.sort(key=lambda k: -len(ids[k]))  # long first: memory peaks early
    n_tokens, t0 = 0, time.time()
    with LineAppender(out) as writer:
        for i in tqdm(range(0, len(todo), args.batch_size), desc=f"teacher job {args.job}", mininterval=5):
            batch = todo[i : i + args.batch_size]
            middle = [torch.tensor(ids[k], device=device) for k in batch]
            with torch.no_grad():
                hyps = llm.generate(
                    [prefix] * len(batch), middle, [suffix] * len(batch),
                    middle_is_speech=False, max_new_tokens=args.max_new_tokens,
                )
            n_tokens += sum(len(h) for h in hyps)
            writer.write((k, " ".join(map(str, h))) for k, h in zip(batch, hyps))
    dt = time.time() - t0
    logging.info(f"job {args.job}: {n_tokens} tokens in {dt:.1f} s ({n_tokens / max(dt, 1e-9):.1f} tok/s)")


def parse_ratio(ratio: str) -> float:
    """'1:9' -> 1/9 repetition utterances per continuation utterance; '0' -> 0."""
    if ratio in ("", "0", "none"):
        return 0.0
    a, sep, b = ratio.partition(":")
    try:
        return float(a) / float(b) if sep else float(a)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"--rp_ratio must look like 1:9 or 0.11, got {ratio!r}") from None


def mix(args) -> None:
    dump_dir, out_dir = Path(args.dump_dir), Path(args.out_dir)
    cont_ids = {}
    for job in range(1, args.nj + 1):
        part = dump_dir / f"split{args.nj}" / f"continuation_ids.{job}"
        if not part.exists():
            raise FileNotFoundError(f"{part} is missing: teacher job {job} has not run")
        cont_ids.update(recover_lines(part))
    feats = read_kv(dump_dir / "feats.scp")
    texts = read_kv(dump_dir / "text")
    if args.max_utts:
        feats = {k: feats[k] for k in subset(feats, args.max_utts, args.seed)}
    missing = sorted(set(feats) - set(cont_ids))
    if missing:
        raise RuntimeError(f"{len(missing)} utterances lack a continuation, e.g. {missing[:5]}")
    from espnet_blsp.preprocess import BLSPPreprocessor

    t = BLSPPreprocessor(args.llm, args.prompt_template).template  # the tokenizer only, as training tokenises
    cont = {}  # utt -> (text for people, ids for training)
    for k in feats:
        ids = cont_ids[k].split()
        cont[k] = (" ".join(t.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True).split()), ids)
    empty = sorted(k for k in feats if not (cont[k][0] and cont[k][1]))  # no ids, or nothing visible
    if empty:
        logging.warning(f"{len(empty)} empty continuations excluded, e.g. {empty[:5]}")
    keys = sorted(set(feats).difference(empty))
    rows = {k: (feats[k], texts[k], cont[k][0], " ".join(cont[k][1]), args.instruction) for k in keys}
    n_rp = round(parse_ratio(args.rp_ratio) * len(keys))
    rng = random.Random(args.seed)
    for k in sorted(rng.sample(keys, min(n_rp, len(keys)))):
        rp_ids = " ".join(map(str, t.text_ids(texts[k])))  # the transcript, as the preprocessor tokenises it
        rows[f"{k}-rp"] = (feats[k], texts[k], texts[k], rp_ids, REPETITION)
    out_dir.mkdir(parents=True, exist_ok=True)
    for col, name in enumerate(("feats.scp", "text", "response", "response_ids", "instruction")):
        with open(out_dir / name, "w", encoding="utf-8") as f:
            f.writelines(f"{k} {rows[k][col]}\n" for k in sorted(rows))
    shapes = read_kv(dump_dir / "speech_shape")
    with open(out_dir / "speech_shape", "w", encoding="utf-8") as f:
        f.writelines(f"{k} {shapes[k.removesuffix('-rp')]}\n" for k in sorted(rows))
    logging.info(f"{out_dir}: {len(keys)} continuation + {n_rp} repetition utterances")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llm", help="LLM checkpoint dir (--mix: only its tokenizer is read)")
    p.add_argument("--text", help="Kaldi text file of prompt-normalised transcripts")
    p.add_argument("--out", help="output file (one job)")
    p.add_argument("--instruction", default=CONTINUATION)
    p.add_argument("--prompt_template", default="blsp", help="blsp | chat (as in the training config)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_new_tokens", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default=None, help="LLM dtype; default auto: bfloat16 where the device runs it natively (GPU, or a CPU with AVX512-BF16/AMX), else float32")
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--job", type=int, default=1)
    p.add_argument("--reuse", nargs="*", default=[],
                   help="continuation files of the same generation (LLM, prompt, length, dtype) written "
                   "under another --nj: their utterances are copied, not generated again")
    p.add_argument("--mix", action="store_true", help="merge jobs and mix repetition data")
    p.add_argument("--dump_dir")
    p.add_argument("--out_dir")
    p.add_argument("--rp_ratio", default="0", help="repetition:continuation, e.g. 1:9")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_utts", type=int, default=0,
                   help="use a fixed random subset of this many utterances (0: all); same value in both steps")
    return p


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    if args.mix:
        for opt in ("llm", "dump_dir", "out_dir"):
            if not getattr(args, opt):
                raise SystemExit(f"--mix: --{opt} is required")
        mix(args)
    else:
        for opt in ("llm", "text", "out"):
            if not getattr(args, opt):
                raise SystemExit(f"--{opt} is required")
        generate(args)


if __name__ == "__main__":
    main()
