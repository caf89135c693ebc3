"""File-level scorers: read Kaldi-style tables, score, write ``score.json`` + ``result.txt``.

Each ``score_*`` function is what the matching ``local/score_*.py`` command line runs,
and what ``local/make_results.py --score`` calls per decode directory. ``command`` is the
exact command line recorded in score.json; when None, the equivalent ``local/score_*.py``
command is recorded.
"""

import shlex
from pathlib import Path
from typing import Dict, Optional, Sequence

from espnet_blsp.scoring import metrics
from espnet_blsp.scoring.tables import read_and_match, write_score


def _cmd(script: str, pairs: Sequence[tuple], flags: Sequence[str] = ()) -> str:
    args = [f"local/{script}"]
    for k, v in pairs:
        args += [f"--{k}", str(v)]
    return "python " + shlex.join(args + list(flags))


def score_wer(ref, hyp, out_dir, allow_missing: bool = False, normalize: bool = True,
              command: Optional[str] = None, excluded=None) -> dict:
    """WER of ``hyp`` against ``ref`` (see ``metrics.wer``); per-utterance alignments in result.txt.

    ``excluded``: stage 2's ``excluded.txt`` of the test set; its utterances are not scored
    (as for every scorer here).
    """
    m = read_and_match(ref, hyp, allow_missing, excluded)
    r = metrics.wer(m.refs, m.hyps, normalize=normalize)
    details = []
    for key, u in zip(m.keys, r["per_utt"]):
        errors = u["sub"] + u["del"] + u["ins"]
        details.append(f"{key}  N={u['ref_words']} S={u['sub']} D={u['del']} I={u['ins']}"
                       + ("" if errors == 0 else "  *"))
        details += metrics.format_alignment(u["ops"]) + [""]
    scores = {k: r[k] for k in ("wer", "sub", "del", "ins", "ref_words")}
    flags = (["--allow_missing"] if allow_missing else []) + ([] if normalize else ["--no_normalize"])
    pairs = [("ref", ref), ("hyp", hyp), ("out", out_dir)] + ([("excluded", excluded)] if excluded else [])
    return write_score(out_dir, "wer", "wer", scores, len(m.keys), m.missing, ref, hyp,
                       command or _cmd("score_wer.py", pairs, flags), details, excluded=m.excluded,
                       normalized=normalize)


def score_bleu(directions: Sequence[Dict[str, str]], out_dir, allow_missing: bool = False,
               tokenize: Optional[str] = None, command: Optional[str] = None) -> dict:
    """Corpus BLEU per direction and their mean.

    ``directions``: ``[{"ref": path, "hyp": path, "lang": target, "name": label}, ...]``, each
    optionally with ``"excluded"``: stage 2's excluded.txt of its test set;
    ``tokenize`` overrides the per-language tokenizer (``metrics.bleu_tokenizer``).
    score.json ``scores``: ``bleu`` (the mean over directions) and ``bleu_<name>`` each.
    """
    if not directions:
        raise ValueError("no --ref/--hyp/--lang direction given")
    names = [d["name"] for d in directions]
    if len(set(names)) != len(names):
        raise ValueError(f"direction names must differ: {names} (give --name for each)")
    per_dir, details, n_utts, missing, excluded = {}, [], 0, [], []
    for d in directions:
        m = read_and_match(d["ref"], d["hyp"], allow_missing, d.get("excluded"))
        tok = tokenize or metrics.bleu_tokenizer(d["lang"])
        b = metrics.bleu_details(m.refs, m.hyps, tok)
        per_dir[d["name"]] = {"bleu": b["bleu"], "lang": d["lang"], "tokenize": tok, "num_utts": len(m.keys),
                              "num_missing": len(m.missing), "ref": str(d["ref"]), "hyp": str(d["hyp"]),
                              "signature": b["signature"], "precisions": b["precisions"], "bp": b["bp"]}
        details.append(f"{d['name']}: BLEU {b['bleu']:.2f}  ({b['signature']})  "
                       f"precisions {'/'.join(f'{p:.1f}' for p in b['precisions'])}  BP {b['bp']:.3f}  "
                       f"utts {len(m.keys)}  ref {d['ref']}  hyp {d['hyp']}")
        n_utts += len(m.keys)
        missing += [f"{d['name']}:{k}" for k in m.missing]
        excluded += [f"{d['name']}:{k}" for k in m.excluded]
    scores = {"bleu": metrics.average([v["bleu"] for v in per_dir.values()])}
    if len(per_dir) > 1:
        scores.update({f"bleu_{name}": v["bleu"] for name, v in per_dir.items()})
    pairs = []
    for d in directions:
        pairs += [("ref", d["ref"]), ("hyp", d["hyp"]), ("lang", d["lang"]), ("name", d["name"])]
        pairs += [("excluded", d["excluded"])] if d.get("excluded") else []
    flags = (["--allow_missing"] if allow_missing else []) + (["--tokenize", tokenize] if tokenize else [])
    ref = " ".join(str(d["ref"]) for d in directions)
    hyp = " ".join(str(d["hyp"]) for d in directions)
    return write_score(out_dir, "bleu", "bleu", scores, n_utts, missing, ref, hyp,
                       command or _cmd("score_bleu.py", pairs + [("out", out_dir)], flags), details,
                       excluded=excluded, directions=per_dir)


def score_slu(ref, hyp, out_dir, task: Optional[str] = None, classes: Optional[Sequence[str]] = None,
              allow_missing: bool = False, command: Optional[str] = None, excluded=None) -> dict:
    """SLU accuracy of free-text responses against ``<utt> <label>`` references.

    The class list is ``classes`` if given, else that of ``task`` (``metrics.SLU_CLASSES``).
    """
    if classes is None:
        if task is None:
            raise ValueError("score_slu needs a task (snips | fsc | slue) or a class list")
        classes = metrics.slu_classes(task)
    m = read_and_match(ref, hyp, allow_missing, excluded)
    try:
        r = metrics.slu_details(m.refs, m.hyps, classes, keys=m.keys)
    except ValueError as e:
        raise ValueError(f"{ref}: {e}") from None
    details = [f"classes: {', '.join(classes)}", "utt_id\tcorrect\tgold\tpred\tresponse"]
    for key, g, p, h in zip(m.keys, r["gold"], r["pred"], m.hyps):
        details.append(f"{key}\t{int(g == p)}\t{g}\t{p if p is not None else '<no match>'}\t{h}")
    scores = {"acc": r["acc"], "correct": r["correct"], "no_match": r["no_match"]}
    pairs = [("ref", ref), ("hyp", hyp), ("out", out_dir)]
    pairs += [("task", task)] if task and classes == metrics.SLU_CLASSES.get(task) else [("classes", ",".join(classes))]
    pairs += [("excluded", excluded)] if excluded else []
    return write_score(out_dir, "slu_acc", "acc", scores, len(m.keys), m.missing, ref, hyp,
                       command or _cmd("score_slu.py", pairs, ["--allow_missing"] if allow_missing else []),
                       details, excluded=m.excluded, task=task, classes=list(classes))


def score_self(ref, hyp, out_dir, allow_missing: bool = False, command: Optional[str] = None,
               excluded=None) -> dict:
    """Self-BLEU and Self-ROUGE-L of ``hyp`` against the Text+LLM outputs ``ref``."""
    m = read_and_match(ref, hyp, allow_missing, excluded)
    scores = metrics.self_scores(m.refs, m.hyps)
    details = ["utt_id\trouge_l"] + [f"{k}\t{100 * metrics.rouge_l(r, h):.1f}"
                                     for k, r, h in zip(m.keys, m.refs, m.hyps)]
    pairs = [("ref", ref), ("hyp", hyp), ("out", out_dir)] + ([("excluded", excluded)] if excluded else [])
    return write_score(out_dir, "self", "self_bleu", scores, len(m.keys), m.missing, ref, hyp,
                       command or _cmd("score_self.py", pairs, ["--allow_missing"] if allow_missing else []),
                       details, excluded=m.excluded)


def default_direction_name(hyp) -> str:
    """A direction's default name: the decode dir holding the hypotheses (``decode_st_covost_de``)."""
    p = Path(hyp)
    return p.parent.name or p.name
