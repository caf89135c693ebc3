"""Prompt templates: where the instruction, the speech (or transcript) and the response go.

``blsp`` (the papers): ``###[Human]:{instruction}`` + speech + ``\\n\\n\\n###[Assistant]:``
+ response + EOS. ``chat``: the tokenizer's own chat template around the same pieces.
"""

from typing import Callable, Dict, List

PLACEHOLDER = "<|speech_placeholder|>"


class PromptTemplate:
    """Token ids of the pieces of a prompt for one tokenizer."""

    def __init__(self, tokenizer, kind: str = "blsp"):
        builders: Dict[str, Callable] = {"blsp": self._blsp, "chat": self._chat}
        if kind not in builders:
            raise ValueError(f"unknown prompt template {kind!r}; choose from {sorted(builders)}")
        self.tokenizer = tokenizer
        self.kind = kind
        self.eos_id = tokenizer.eos_token_id
        if self.eos_id is None:
            raise ValueError("the tokenizer has no EOS token")
        builders[kind]()

    def _encode(self, text: str) -> List[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _blsp(self) -> None:
        bos = self.tokenizer.bos_token_id
        self._bos = [bos] if bos is not None else []
        self._human, self._suffix = "###[Human]:", self._encode("\n\n\n###[Assistant]:")

    def _chat(self) -> None:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("prompt_template chat needs a tokenizer with a chat_template")
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": "{instruction}" + PLACEHOLDER}],
            tokenize=False, add_generation_prompt=True,
        )
        self._chat_prefix, _, after = text.partition(PLACEHOLDER)
        self._suffix = self._encode(after)

    def prefix_ids(self, instruction: str) -> List[int]:
        if self.kind == "blsp":
            return self._bos + self._encode(self._human + instruction)
        return self._encode(self._chat_prefix.replace("{instruction}", instruction))

    def suffix_ids(self) -> List[int]:
        return list(self._suffix)

    def text_ids(self, text: str) -> List[int]:
        """Content tokens of a transcript or response (no BOS/EOS)."""
        return self._encode(text)
