"""The LLM side: prompt templates, the frozen causal LM wrapper, Partial LoRA, batched decoding.

Usage::

    from espnet_blsp.llm import SpeechLLM, PromptTemplate, INSTRUCTIONS
    llm = SpeechLLM(llm_dir, dtype="bfloat16", prompt_template="blsp")
"""

from espnet_blsp.llm.causal_lm import PromptBatch, SpeechLLM
from espnet_blsp.llm.partial_lora import PartialLoRALinear, inject_partial_lora, lora_state_dict, speech_positions
from espnet_blsp.llm.prompt import INSTRUCTIONS, PromptTemplate

__all__ = [
    "INSTRUCTIONS",
    "PartialLoRALinear",
    "PromptBatch",
    "PromptTemplate",
    "SpeechLLM",
    "inject_partial_lora",
    "lora_state_dict",
    "speech_positions",
]
