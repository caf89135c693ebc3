#!/usr/bin/env python3
"""Stage 6: score every decoding of an experiment and write RESULTS.md.

Usage:
    python local/score_all.py --exp_dir exp/train_blsp --data_root data \
        --test_sets "mini_test real_librivox" --tasks "asr continuation"

Layout read: ``<exp>/decode_<task>_<set>/text`` (the trained model) and
``<exp>/baselines/{text_llm,whisper_llm,untrained}/decode_<task>_<set>/text``.
Metrics: asr -> WER against data/<set>/text (the Whisper+LLM row also gets the
standalone Whisper WER); continuation/qa -> Self-BLEU and Self-ROUGE-L against the
Text+LLM outputs; st -> BLEU against data/<set>/translation; snips/fsc/slue -> accuracy
against data/<set>/label.
"""

import argparse
import datetime
import json
import platform
from pathlib import Path

import importlib.util
import sys

_spec = importlib.util.spec_from_file_location("score", Path(__file__).with_name("score.py"))
score_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(score_mod)

SYSTEMS = [("Text+LLM", "baselines/text_llm"), ("Whisper+LLM", "baselines/whisper_llm"),
           ("untrained adapter", "baselines/untrained"), ("trained", ".")]


def score_one(exp: Path, sysdir: str, task: str, dset: str, data_root: Path, st_lang: str):
    dec = exp / sysdir / f"decode_{task}_{dset}"
    hyp = dec / "text"
    if not hyp.exists():
        return None
    if task == "asr":
        return score_mod.score("wer", data_root / dset / "text", hyp, dec / "score")
    if task in ("continuation", "qa"):
        ref = exp / "baselines/text_llm" / f"decode_{task}_{dset}" / "text"
        return score_mod.score("self", ref, hyp, dec / "score") if ref.exists() else None
    if task == "st":
        return score_mod.score("bleu", data_root / dset / "translation", hyp, dec / "score", lang=st_lang)
    return score_mod.score("slu", data_root / dset / "label", hyp, dec / "score", task=task)


def fmt(result, task):
    if result is None:
        return "-"
    if task == "asr":
        return f"{result['wer']:.1f}"
    if task in ("continuation", "qa"):
        return f"{result['self_bleu']:.1f} / {result['self_rouge_l']:.1f}"
    return f"{result.get('bleu', result.get('acc')):.1f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--data_root", default="data")
    p.add_argument("--test_sets", required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--st_lang", default="de")
    args = p.parse_args(argv)
    exp, data_root = Path(args.exp_dir), Path(args.data_root)
    cols = [(t, s) for t in args.tasks.split() for s in args.test_sets.split()]
    names = {"asr": "ASR WER%", "continuation": "Self-BLEU / Self-ROUGE-L", "qa": "QA Self-BLEU / ROUGE-L",
             "st": f"ST BLEU (en-{args.st_lang})", "snips": "SNIPS ACC%", "fsc": "FSC ACC%", "slue": "SLUE ACC%"}
    header = "| system | " + " | ".join(f"{names.get(t, t)} {s}" for t, s in cols) + " |"
    lines = [header, "|" + "---|" * (len(cols) + 1)]
    whisper_wer = []
    for label, sysdir in SYSTEMS:
        row = []
        for t, s in cols:
            try:
                row.append(fmt(score_one(exp, sysdir, t, s, data_root, args.st_lang), t))
            except ValueError as e:  # an interrupted or failed decoding: say so, don't guess
                print(f"WARNING: {exp / sysdir}/decode_{t}_{s} not scored: {e}", file=sys.stderr)
                row.append("incomplete")
            asr_text = exp / sysdir / f"decode_{t}_{s}" / "asr_text"
            if label == "Whisper+LLM" and t == "asr" and asr_text.exists():
                r = score_mod.score("wer", data_root / s / "text", asr_text, asr_text.parent / "score_whisper")
                whisper_wer.append(f"{s}: {r['wer']:.1f}")
        if any(v != "-" for v in row):
            lines.append(f"| {label if sysdir != '.' else exp.name} | " + " | ".join(row) + " |")
    try:
        import torch

        env = f"torch {torch.__version__}, " + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU")
    except ImportError:
        env = "torch not importable"
    cmd_file = exp / "run.sh.cmd"
    out = [f"# RESULTS: {exp.name}", "",
           f"- date: {datetime.datetime.now():%Y-%m-%d %H:%M}", f"- host: {platform.node()} ({env})",
           f"- commands: see `{cmd_file}` and each `decode_*/cmd`",
           "- Self-BLEU / Self-ROUGE-L use the Text+LLM outputs as the reference (BLSP-KD, Sec. 5.2).", ""]
    out += lines
    if whisper_wer:
        out += ["", "Standalone Whisper (encoder + decoder) WER%: " + ", ".join(whisper_wer)]
    (exp / "RESULTS.md").write_text("\n".join(out) + "\n")
    print(f"wrote {exp / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
