"""Metrics as pure functions over aligned lists of reference and hypothesis strings.

WER
    jiwer word alignment after ``espnet_blsp.text.normalizer.EnglishNormalizer`` on both
    sides. An empty (normalised) reference is fine: its hypothesis words count as
    insertions. WER = 100 * (S + D + I) / N with N the number of reference words; with
    N = 0 the WER is undefined (``None``).
BLEU
    sacrebleu corpus BLEU. Tokeniser by target language (``bleu_tokenizer``): ``13a``
    by default, sacrebleu's pure-Python ``zh`` for Chinese, ``char`` for Japanese
    (``ja-mecab`` needs MeCab, which is not available offline). Several directions are
    averaged with a plain mean of the per-direction corpus BLEU, as the papers do.
Self-BLEU / Self-ROUGE-L (BLSP-KD, Sec. 5.2)
    The Text+LLM outputs are the reference. Self-BLEU is corpus BLEU (13a) of the
    system outputs against them. Self-ROUGE-L is the mean over utterances of the
    ROUGE-L F-measure (beta = 1, LCS of words), x100. Words are the lowercased
    ``\\w+`` runs (whitespace and punctuation split). Two empty outputs score 1, one
    empty output scores 0.
SLU accuracy, label-matching rule
    The LLM answers in free text, so each response is mapped to a class:

    1. Both the response and every candidate class are normalised into words:
       CamelCase is split (``SwitchLightOff`` -> ``switch light off``), the text is
       lowercased, and punctuation and whitespace only separate words.
    2. A class occurs in the response where a run of consecutive response words,
       concatenated, equals the class's words concatenated. So ``switch light off``,
       ``SwitchLightOff`` and ``switchlightoff`` all match ``SwitchLightOff``, while
       ``activate lamp`` does not match inside ``deactivate lamp`` (word boundaries).
    3. The prediction is the class that occurs; if several occur, the longest one
       (characters of the concatenated class words) wins, ties broken by the earliest
       position in the response. No class occurring is a wrong answer.
    4. A reference label must be one of the classes (after the same normalisation);
       anything else is an error naming the utterance, not a silent miss.

    Class lists (``SLU_CLASSES``) are those of the instructions in Table 11 of the
    BLSP paper.
"""

import re
from typing import Dict, List, Optional, Sequence, Tuple

# ---------------------------------------------------------------------------- WER


def _normalizer():
    from espnet_blsp.text.normalizer import EnglishNormalizer  # lazy: owned elsewhere

    return EnglishNormalizer()


def wer(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> Dict[str, object]:
    """Corpus WER (%) with S/D/I counts; ``per_utt`` holds each utterance's alignment.

    Returns ``{"wer", "sub", "del", "ins", "hits", "ref_words", "per_utt"}`` where
    ``per_utt[i] = {"ref": [...], "hyp": [...], "ops": [(op, ref_word, hyp_word), ...],
    "sub", "del", "ins", "ref_words"}`` with ``op`` in ``= S D I`` and ``""`` for the
    missing side of an insertion or deletion.
    """
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    norm = _normalizer() if normalize else (lambda s: " ".join(s.split()))
    r_norm = [norm(x) for x in refs]
    h_norm = [norm(x) for x in hyps]
    out = jiwer.process_words(r_norm, h_norm)
    per_utt = []
    for r_words, h_words, chunks in zip(out.references, out.hypotheses, out.alignments):
        ops: List[Tuple[str, str, str]] = []
        for c in chunks:
            rs, hs = r_words[c.ref_start_idx:c.ref_end_idx], h_words[c.hyp_start_idx:c.hyp_end_idx]
            if c.type == "equal":
                ops += [("=", r, h) for r, h in zip(rs, hs)]
            elif c.type == "substitute":
                ops += [("S", r, h) for r, h in zip(rs, hs)]
            elif c.type == "delete":
                ops += [("D", r, "") for r in rs]
            elif c.type == "insert":
                ops += [("I", "", h) for h in hs]
            else:
                raise ValueError(f"unknown jiwer alignment chunk {c.type!r}")
        per_utt.append({
            "ref": r_words, "hyp": h_words, "ops": ops, "ref_words": len(r_words),
            "sub": sum(o == "S" for o, _, _ in ops), "del": sum(o == "D" for o, _, _ in ops),
            "ins": sum(o == "I" for o, _, _ in ops),
        })
    S = sum(u["sub"] for u in per_utt)
    D = sum(u["del"] for u in per_utt)
    I = sum(u["ins"] for u in per_utt)  # noqa: E741
    N = sum(u["ref_words"] for u in per_utt)
    return {"wer": 100.0 * (S + D + I) / N if N else None, "sub": S, "del": D, "ins": I,
            "hits": N - S - D, "ref_words": N, "per_utt": per_utt}


def format_alignment(ops: Sequence[Tuple[str, str, str]]) -> List[str]:
    """``REF:``/``HYP:``/``EVAL:`` lines with aligned columns; ``*`` marks a gap."""
    cols = []
    for op, r, h in ops:
        r, h = r or "*", h or "*"
        w = max(len(r), len(h))
        cols.append((r.ljust(w), h.ljust(w), ("" if op == "=" else op).ljust(w)))
    return [line.rstrip() for line in ("REF:  " + " ".join(c[0] for c in cols),
                                       "HYP:  " + " ".join(c[1] for c in cols),
                                       "EVAL: " + " ".join(c[2] for c in cols))]


# --------------------------------------------------------------------------- BLEU

# target language -> sacrebleu tokenizer; any other language uses DEFAULT_BLEU_TOKENIZER
BLEU_TOKENIZERS = {"zh": "zh", "ja": "char"}
DEFAULT_BLEU_TOKENIZER = "13a"


def bleu_tokenizer(lang: str) -> str:
    """The sacrebleu tokenizer used for a target language code (``de``, ``zh``, ...)."""
    return BLEU_TOKENIZERS.get(lang.split("-")[-1].split("_")[-1].lower(), DEFAULT_BLEU_TOKENIZER)


def bleu_details(refs: Sequence[str], hyps: Sequence[str], tokenize: str = DEFAULT_BLEU_TOKENIZER) -> Dict[str, object]:
    """sacrebleu corpus BLEU with its n-gram precisions, brevity penalty and signature."""
    from sacrebleu.metrics import BLEU

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    metric = BLEU(tokenize=tokenize)
    s = metric.corpus_score(list(hyps), [list(refs)])
    return {"bleu": s.score, "precisions": list(s.precisions), "bp": s.bp, "sys_len": s.sys_len,
            "ref_len": s.ref_len, "signature": str(metric.get_signature())}


def bleu(refs: Sequence[str], hyps: Sequence[str], lang: str = "en") -> float:
    """Corpus BLEU with the tokenizer of the target language ``lang``."""
    return bleu_details(refs, hyps, bleu_tokenizer(lang))["bleu"]


def average(values: Sequence[float]) -> float:
    """Plain mean, e.g. BLEU over translation directions (as the papers report)."""
    if not values:
        raise ValueError("nothing to average")
    return sum(values) / len(values)


# ------------------------------------------------------------ Self-BLEU / ROUGE-L

def words(text: str) -> List[str]:
    """Lowercased words: runs of ``\\w`` (whitespace and punctuation split)."""
    return re.findall(r"\w+", text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) dynamic program)."""
    if len(b) > len(a):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l(ref: str, hyp: str) -> float:
    """ROUGE-L F-measure (beta = 1) in [0, 1]: F = 2PR / (P + R), P = LCS/|hyp|, R = LCS/|ref|."""
    r, h = words(ref), words(hyp)
    if not r or not h:
        return float(not r and not h)
    lcs = lcs_length(r, h)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(h), lcs / len(r)
    return 2 * p * rec / (p + rec)


def self_scores(text_llm: Sequence[str], hyps: Sequence[str]) -> Dict[str, float]:
    """Self-BLEU and Self-ROUGE-L (both x100) against the Text+LLM outputs."""
    if len(text_llm) != len(hyps):
        raise ValueError(f"{len(text_llm)} Text+LLM outputs but {len(hyps)} hypotheses")
    if not hyps:
        raise ValueError("no utterances to score")
    return {
        "self_bleu": bleu_details(text_llm, hyps)["bleu"],
        "self_rouge_l": 100.0 * sum(rouge_l(r, h) for r, h in zip(text_llm, hyps)) / len(hyps),
    }


# ---------------------------------------------------------------- SLU accuracy

# Class lists of the instructions in Table 11 of the BLSP paper.
SLU_CLASSES: Dict[str, List[str]] = {
    "snips": ["DecreaseBrightness", "IncreaseBrightness", "SetLightBrightness", "SetLightColor",
              "SwitchLightOff", "SwitchLightOn"],
    "fsc": ["bring newspaper", "deactivate lamp", "change language English", "deactivate music",
            "increase heat", "change language Korean", "change language none", "bring shoes",
            "change language German", "activate lights", "bring socks", "change language Chinese",
            "decrease heat", "decrease volume", "increase volume", "activate music", "activate lamp",
            "bring juice"],
    "slue": ["positive", "negative", "neutral"],
}


def slu_classes(task: str) -> List[str]:
    """The class list of an SLU task (``snips``, ``fsc``, ``slue``)."""
    if task not in SLU_CLASSES:
        raise ValueError(f"unknown SLU task {task!r}; choose from {sorted(SLU_CLASSES)}")
    return SLU_CLASSES[task]


def slu_words(text: str) -> List[str]:
    """Rule step 1: split CamelCase, lowercase, keep ``\\w+`` runs."""
    return words(re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", text))


def _find(resp: List[str], target: str) -> Optional[int]:
    """Rule step 2: first word index where consecutive words concatenate to ``target``."""
    for i in range(len(resp)):
        acc = ""
        for w in resp[i:]:
            acc += w
            if acc == target:
                return i
            if not target.startswith(acc):
                break
    return None


def slu_prediction(response: str, classes: Sequence[str]) -> Optional[str]:
    """The class a free-text response names (rule in the module docstring); None if none."""
    resp = slu_words(response)
    best: Optional[Tuple[int, int, str]] = None  # (-length, position, class)
    for c in classes:
        target = "".join(slu_words(c))
        if not target:
            raise ValueError(f"class {c!r} has no words")
        pos = _find(resp, target)
        if pos is not None and (best is None or (-len(target), pos) < best[:2]):
            best = (-len(target), pos, c)
    return None if best is None else best[2]


def slu_label_to_class(label: str, classes: Sequence[str]) -> Optional[str]:
    """The class a reference label names (same normalisation), or None."""
    key = "".join(slu_words(label))
    for c in classes:
        if "".join(slu_words(c)) == key:
            return c
    return None


def slu_details(labels: Sequence[str], hyps: Sequence[str], classes: Sequence[str],
                keys: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Accuracy (%) with the per-utterance predictions and the count of unmatched responses.

    Raises if a reference label is not one of ``classes`` (naming the utterance ids).
    """
    if len(labels) != len(hyps):
        raise ValueError(f"{len(labels)} labels but {len(hyps)} hypotheses")
    if not labels:
        raise ValueError("no utterances to score")
    keys = list(keys) if keys is not None else [str(i) for i in range(len(labels))]
    norm = ["".join(slu_words(c)) for c in classes]
    if len(set(norm)) != len(norm):
        raise ValueError(f"classes collide after normalisation: {list(classes)}")
    gold = [slu_label_to_class(lab, classes) for lab in labels]
    bad = [f"{k}:{lab!r}" for k, lab, g in zip(keys, labels, gold) if g is None]
    if bad:
        raise ValueError(f"{len(bad)} reference labels are not among the classes {list(classes)}, "
                         f"e.g. {' '.join(bad[:10])}")
    preds = [slu_prediction(h, classes) for h in hyps]
    correct = [p == g for p, g in zip(preds, gold)]
    return {"acc": 100.0 * sum(correct) / len(correct), "correct": sum(correct),
            "no_match": sum(p is None for p in preds), "gold": gold, "pred": preds}


def slu_accuracy(labels: Sequence[str], hyps: Sequence[str], classes: Sequence[str]) -> float:
    """SLU accuracy (%) under the label-matching rule of the module docstring."""
    return slu_details(labels, hyps, classes)["acc"]
