"""English text normalisation for scoring (Whisper-style) and for LLM prompts."""

import re
import unicodedata

_FILLERS = re.compile(r"\b(hmm+|mm+|mhm|mmm|uh+|um+|ah+|eh+|er+)\b")
_BRACKETS = re.compile(r"[<\[][^>\]]*[>\]]|\([^)]*\)")
_CONTRACTIONS = {
    "won't": "will not", "can't": "can not", "let's": "let us", "n't": " not", "'re": " are",
    "'ve": " have", "'ll": " will", "'m": " am",
}


class EnglishNormalizer:
    """Whisper-style normaliser for WER: lowercase, drop bracketed spans and fillers,
    expand common contractions, strip diacritics and punctuation, collapse spaces."""

    def __call__(self, text: str) -> str:
        s = text.lower()
        s = _BRACKETS.sub(" ", s)
        s = _FILLERS.sub(" ", s)
        for k, v in _CONTRACTIONS.items():
            s = s.replace(k, v)
        s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
        s = re.sub(r"(\d),(\d)", r"\1\2", s)
        s = re.sub(r"[^\w\s']|_", " ", s)
        s = re.sub(r"(^|\s)'+|'+(\s|$)", " ", s)
        return " ".join(s.split())


def normalize_for_prompt(text: str) -> str:
    """Light clean-up before prompting the LLM: spacing, ALL-CAPS to sentence case."""
    s = " ".join(text.split())
    s = re.sub(r"\s+([,.!?;:])", r"\1", s)
    letters = [c for c in s if c.isalpha()]
    if letters and all(c.isupper() for c in letters):
        s = s.lower()
        s = re.sub(r"\bi\b", "I", s)
        s = s[:1].upper() + s[1:]
    return s
