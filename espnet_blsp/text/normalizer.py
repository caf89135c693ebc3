"""English text normalisation: for WER scoring (Whisper-style) and for LLM prompts.

    EnglishNormalizer()(text)   scoring form: "Um, I've 2 colours (laughs)" -> "i have 2 colors"
    normalize_for_prompt(text)  prompt form:  "I 'VE TWO COLOURS ." -> "I've two colours."

EnglishNormalizer builds on the Whisper English normaliser shipped in transformers
(``transformers.models.whisper.english_normalizer.EnglishTextNormalizer``): lowercase,
drop spans in <> [] () and the fillers hmm/mm/mhm/mmm/uh/um, expand contractions and
titles, spell numbers as digits ("twenty one" -> "21", "five dollars" -> "$5"), strip
accents and punctuation, collapse whitespace. It needs a British -> American spelling
table; Whisper's own table is not shipped with transformers, so ``SPELLINGS`` below is
a short hand-written one. Before the Whisper steps, ``{...}`` spans (Kaldi noise
markers such as {NOISE}) are dropped too. Nothing is downloaded.

normalize_for_prompt keeps words, numbers and punctuation and only fixes what an LLM
would find unnatural in corpus transcripts (the official BLSP normalises transcripts
before prompting): single-case text (ALL CAPS LibriSpeech/GigaSpeech, all-lowercase
TED-LIUM) becomes sentence case, tokenised clitics are re-attached ("it 's" -> "it's",
"do n't" -> "don't"), and the spacing around punctuation is fixed.
"""

import re
import unicodedata
from typing import Callable, Dict, Optional

# British -> American spellings (hand-written; Whisper maps ~1.7k such words).
SPELLINGS: Dict[str, str] = {
    "aeroplane": "airplane", "analyse": "analyze", "analysed": "analyzed", "apologise": "apologize",
    "apologised": "apologized", "behaviour": "behavior", "behaviours": "behaviors", "centre": "center",
    "centres": "centers", "cheque": "check", "colour": "color", "coloured": "colored", "colours": "colors",
    "defence": "defense", "favour": "favor", "favourite": "favorite", "favourites": "favorites",
    "flavour": "flavor", "grey": "gray", "harbour": "harbor", "honour": "honor", "honoured": "honored",
    "humour": "humor", "jewellery": "jewelry", "labour": "labor", "licence": "license", "litre": "liter",
    "litres": "liters", "metre": "meter", "metres": "meters", "neighbour": "neighbor",
    "neighbours": "neighbors", "neighbourhood": "neighborhood", "offence": "offense", "organisation": "organization",
    "organise": "organize", "organised": "organized", "practise": "practice", "programme": "program",
    "programmes": "programs", "realise": "realize", "realised": "realized", "recognise": "recognize",
    "recognised": "recognized", "rumour": "rumor", "savour": "savor", "theatre": "theater",
    "theatres": "theaters", "travelled": "traveled", "travelling": "traveling", "tyre": "tire",
    "tyres": "tires", "vapour": "vapor", "vigour": "vigor",
}

_CURLY = re.compile(r"\{[^}]*\}")


class EnglishNormalizer:
    """Whisper-style English normaliser for WER; callable ``str -> str``.

    Args:
        spellings: British -> American spelling table (default ``SPELLINGS``; {} for none).
    """

    def __init__(self, spellings: Optional[Dict[str, str]] = None):
        # The transformers module is pure Python (re, regex); importing it downloads nothing.
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        self._whisper: Callable[[str], str] = EnglishTextNormalizer(SPELLINGS if spellings is None else spellings)

    def __call__(self, text: str) -> str:
        return self._whisper(_CURLY.sub(" ", text))


# Clitics that tokenised transcripts (TED-LIUM, Penn-style) split off: "it 's", "we 're".
_CLITIC = re.compile(r"(?<=\w) (?=(?:'(?:s|m|d|re|ve|ll)|n't)\b)", re.IGNORECASE)
_SPACE_BEFORE = re.compile(r"\s+(?=[,.!?;:%)\]}])")
_SPACE_AFTER_OPEN = re.compile(r"(?<=[(\[{])\s+")
_NO_SPACE_AFTER = re.compile(r"(?<=[,;:!?])(?=[A-Za-z])")
_PRONOUN_I = re.compile(r"\bi\b(?=$|[^\w']|'(?:m|d|ll|ve)\b)")
_SENTENCE_START = re.compile(r"(^\W*|[.!?][\"')\]]*\s+\W*)([a-z])")


def normalize_for_prompt(text: str) -> str:
    """Light normalisation of a transcript before it goes into an LLM prompt.

    Keeps the words and the punctuation. Collapses whitespace (and applies Unicode NFC),
    re-attaches split clitics, removes spaces before ``, . ! ? ; : % ) ]`` and after
    ``( [``, adds a space after ``, ; : ! ?`` glued to a following word, and turns
    single-case text (no lowercase letters, or no uppercase ones) into sentence case:
    lowercase, capitalise the first letter of each sentence and the pronoun "I".
    Mixed-case text keeps its casing.
    """
    s = " ".join(unicodedata.normalize("NFC", text).split())
    s = _CLITIC.sub("", s)
    s = _SPACE_BEFORE.sub("", s)
    s = _SPACE_AFTER_OPEN.sub("", s)
    s = _NO_SPACE_AFTER.sub(" ", s)
    letters = [c for c in s if c.isalpha()]
    if letters and (all(c.isupper() for c in letters) or all(c.islower() for c in letters)):
        s = s.lower()
        s = _PRONOUN_I.sub("I", s)
        s = _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), s)
    return s
