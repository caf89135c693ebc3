"""EnglishNormalizer (scoring) and normalize_for_prompt (LLM prompts), hand-written expectations."""

import pytest

from espnet_blsp.text import EnglishNormalizer, normalize_for_prompt


@pytest.fixture(scope="module")
def norm():
    return EnglishNormalizer()


@pytest.mark.parametrize("text, expected", [
    ("Hello, World!", "hello world"),  # case and punctuation
    ("Um, I think, uh, it was (applause) about [noise] fifteen hundred people.",
     "i think it was about 1500 people"),  # fillers, bracketed spans, numbers as digits
    ("I'VE GOT TWENTY ONE COLOURS", "i have got 21 colors"),  # contraction, number, spelling
    ("{NOISE} hello <unk> there", "hello there"),  # Kaldi noise marker, TED-LIUM <unk>
    ("we do n't know , it 's fine", "we do not know it is fine"),  # tokenised clitics
    ("Café naïve", "cafe naive"),  # diacritics
    ("Mr. Smith won't pay $5.", "mister smith will not pay $5"),  # titles, currency kept
    ("  lots\tof   space ", "lots of space"),
    ("hmm", ""),  # only a filler
])
def test_english_normalizer(norm, text, expected):
    assert norm(text) == expected


def test_spelling_table_is_optional():
    assert EnglishNormalizer()("colour") == "color"
    assert EnglishNormalizer(spellings={})("colour") == "colour"
    assert EnglishNormalizer(spellings={"kerb": "curb"})("the kerb") == "the curb"


@pytest.mark.parametrize("text, expected", [
    # LibriSpeech: ALL CAPS, no punctuation -> sentence case, "I" restored
    ("HE HOPED THERE WOULD BE STEW FOR DINNER AND I KNEW IT", "He hoped there would be stew for dinner and I knew it"),
    # GigaSpeech after the punctuation tags are mapped back: every sentence capitalised
    ("AS THEY'RE LEAVING, CAN KASH PULL ZAHRA ASIDE? YES. I'LL GO",
     "As they're leaving, can kash pull zahra aside? Yes. I'll go"),
    # TED-LIUM: lowercase, tokenised clitics
    ("i 'm here today and we do n't know", "I'm here today and we don't know"),
    # mixed case keeps its casing; spacing around punctuation fixed
    ("The U.S. has 3,000 people , right ?", "The U.S. has 3,000 people, right?"),
    ("Well,he said ( quietly ) :no", "Well, he said (quietly): no"),
    ("  too   many  spaces ", "Too many spaces"),
    ('"OK" I SAID', '"Ok" I said'),
])
def test_normalize_for_prompt(text, expected):
    assert normalize_for_prompt(text) == expected


def test_prompt_normalisation_is_idempotent():
    for text in ("HE HOPED THERE WOULD BE STEW", "i 'm here", "The U.S. has 3,000 people , right ?"):
        once = normalize_for_prompt(text)
        assert normalize_for_prompt(once) == once
