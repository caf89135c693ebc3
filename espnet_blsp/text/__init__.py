"""Text normalisation: ``EnglishNormalizer`` (scoring) and ``normalize_for_prompt`` (LLM prompts)."""

from espnet_blsp.text.normalizer import EnglishNormalizer, normalize_for_prompt

__all__ = ["EnglishNormalizer", "normalize_for_prompt"]
