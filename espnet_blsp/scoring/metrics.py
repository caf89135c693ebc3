"""Metrics over Kaldi-style hypothesis/reference tables matched by utterance id."""

import re
from typing import Dict, List, Sequence, Tuple

from espnet_blsp.text.normalizer import EnglishNormalizer


def match(ref: Dict[str, str], hyp: Dict[str, str], allow_missing: bool = False) -> Tuple[List[str], List[str], List[str]]:
    """Align by utterance id; missing hypotheses are an error unless ``allow_missing``."""
    extra = sorted(set(hyp) - set(ref))
    if extra:
        raise ValueError(f"{len(extra)} hypotheses have no reference, e.g. {extra[:5]}")
    missing = sorted(set(ref) - set(hyp))
    if missing and not allow_missing:
        raise ValueError(f"{len(missing)} references have no hypothesis, e.g. {missing[:5]}")
    keys = sorted(ref)
    return keys, [ref[k] for k in keys], [hyp.get(k, "") for k in keys]


def wer(refs: Sequence[str], hyps: Sequence[str]) -> Dict[str, float]:
    """WER (%) after Whisper-style normalisation, with S/D/I counts (jiwer)."""
    import jiwer

    norm = EnglishNormalizer()
    r = [norm(x) for x in refs]
    h = [norm(x) for x in hyps]
    S = D = I = N = 0
    for ri, hi in zip(r, h):
        if not ri:
            I += len(hi.split())
            continue
        out = jiwer.process_words(ri, hi if hi else "")
        S, D, I, N = S + out.substitutions, D + out.deletions, I + out.insertions, N + len(ri.split())
    return {"wer": 100.0 * (S + D + I) / max(N, 1), "sub": S, "del": D, "ins": I, "ref_words": N}


def bleu(refs: Sequence[str], hyps: Sequence[str], lang: str = "en") -> float:
    """sacrebleu corpus BLEU; character tokenisation for zh/ja (no MeCab offline)."""
    import sacrebleu

    tok = "char" if lang in ("zh", "ja") else "13a"
    return sacrebleu.corpus_bleu(list(hyps), [list(refs)], tokenize=tok).score


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _words(s: str) -> List[str]:
    return re.findall(r"\w+", s.lower())


def rouge_l(ref: str, hyp: str) -> float:
    """ROUGE-L F-measure (beta = 1) over lowercased words."""
    r, h = _words(ref), _words(hyp)
    if not r or not h:
        return float(r == h)
    lcs = _lcs(r, h)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(h), lcs / len(r)
    return 2 * p * rec / (p + rec)


def self_scores(text_llm: Sequence[str], hyps: Sequence[str]) -> Dict[str, float]:
    """Self-BLEU and Self-ROUGE-L (x100): the Text+LLM outputs are the reference."""
    return {
        "self_bleu": bleu(text_llm, hyps),
        "self_rouge_l": 100.0 * sum(rouge_l(r, h) for r, h in zip(text_llm, hyps)) / max(len(hyps), 1),
    }


def slu_prediction(response: str, classes: Sequence[str]) -> str:
    """Label matching rule: normalise (lowercase, strip punctuation, split CamelCase)
    the response and each class; the prediction is the longest class that occurs in the
    response, ties broken by the earliest occurrence; no match -> ""."""
    def norm(s):
        s = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", s)
        return " " + " ".join(_words(s)) + " "

    text = norm(response)
    best, best_key = "", None
    for c in classes:
        pos = text.find(norm(c))
        if pos >= 0:
            key = (-len(norm(c)), pos)
            if best_key is None or key < best_key:
                best, best_key = c, key
    return best


def slu_accuracy(labels: Sequence[str], hyps: Sequence[str], classes: Sequence[str]) -> float:
    preds = [slu_prediction(h, classes) for h in hyps]
    norm = lambda s: " ".join(_words(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", s)))  # noqa: E731
    return 100.0 * sum(norm(p) == norm(l) for p, l in zip(preds, labels)) / max(len(labels), 1)
