#!/usr/bin/env python3
"""Stage 6: collect the score.json files of decode dirs into RESULTS.md (one table).

Usage:
    python local/make_results.py --exp exp/train_blsp --score --data_root data --st_lang de
    python local/make_results.py --exp exp/train_blsp --exp exp/train_blsp_kd5 \
        --system "BLSP+RP=exp/train_blsp_rp" --out exp/RESULTS.md

Rows: Text+LLM and Whisper+LLM (``<first exp>/baselines/{text_llm,whisper_llm}``), each
``--exp`` (named by its tag), each ``--system NAME=DIR``, then the untrained adapter
(``<first exp>/baselines/untrained``). Columns: ASR WER, ST BLEU (+ Self-BLEU and the
average over ST sets), SLU accuracy, continuation/QA Self-BLEU / Self-ROUGE-L, per test
set. The directory naming contract is in ``espnet_blsp/scoring/results.py``. An ``--exp``
with ``curves/learning_curve.md`` (``python -m espnet_blsp.bin.learning_curve``) gets its
plot linked and its table copied under "Learning curves". One with ``analysis/analysis.md``
(``python -m espnet_blsp.bin.analyze``) and/or ``analysis/asr_probe/asr_probe.md``
(``python -m espnet_blsp.bin.asr_probe``) gets their tables and figures under "Analysis".

With ``--score``, every ``decode_<task>_<testset>/text`` is (re)scored first against
``<data_root>/<testset>/{text,translation,label}`` or the Text+LLM outputs; without it,
existing ``score/score.json`` files are only collected. Utterances that stage 2 excluded
(``<dump_root>/<testset>/excluded.txt``: bad audio, too long, too short) are not scored;
RESULTS.md says per test set how many stages 1 and 2 excluded, why, and links the lists.
Exits 1 (after writing
RESULTS.md, which lists them) if any decode dir could not be scored.
"""

import argparse
import logging
import sys
from pathlib import Path

from espnet_blsp.scoring.results import exclusion_notes, make_systems, parse_st_lang, render, score_systems
from espnet_blsp.scoring.tables import cli_command


def parse_system(spec: str):
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {spec!r}")
    return name.strip(), Path(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", action="append", default=[], type=Path, help="experiment dir exp/<tag> (repeatable)")
    p.add_argument("--system", action="append", default=[], type=parse_system,
                   help="extra row NAME=DIR, DIR holding decode_<task>_<testset> dirs (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="output file (default: <first --exp>/RESULTS.md)")
    p.add_argument("--title", default=None, help="heading (default: the first --exp tag)")
    p.add_argument("--score", action="store_true", help="(re)score every decode dir before collecting")
    p.add_argument("--data_root", type=Path, default=Path("data"), help="where <testset>/{text,...} live")
    p.add_argument("--dump_root", type=Path, default=Path("dump"),
                   help="where stage 2 wrote <testset>/excluded.txt (its utterances are not scored)")
    p.add_argument("--st_lang", default="de", help='ST target language: "de", or "set1=de set2=fr"')
    p.add_argument("--allow_missing", action="store_true", help="score missing hypotheses as empty")
    p.add_argument("--tasks", default=None, help='only these tasks, e.g. "asr st" (default: all found)')
    p.add_argument("--test_sets", default=None, help="only these test sets, in this column order")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if args.out is None and not args.exp:
        p.error("give --out when no --exp is given")
    out = args.out or args.exp[0] / "RESULTS.md"
    try:
        systems = make_systems(args.exp, args.system)
        problems = []
        if args.score:
            problems = score_systems(systems, args.data_root, parse_st_lang(args.st_lang), args.allow_missing,
                                     dump_root=args.dump_root)
        test_sets = args.test_sets.split() if args.test_sets else sorted({ts for s in systems for _, ts in s.decodes})
        title = args.title or (args.exp[0].resolve().name if args.exp else out.parent.resolve().name)
        text = render(systems, title, cli_command(None if argv is None else [__file__, *argv]), args.exp,
                      tasks=args.tasks.split() if args.tasks else None,
                      test_sets=args.test_sets.split() if args.test_sets else None, problems=problems,
                      out_path=out, exclusions=exclusion_notes(test_sets, args.data_root, args.dump_root, out))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"{p.prog}: error: {e}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    if problems:
        print(f"{len(problems)} decode dirs could not be scored:\n  " + "\n  ".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
