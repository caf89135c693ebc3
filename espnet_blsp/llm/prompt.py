"""Prompt templates: where the instruction, the speech (or transcript) and the response go.

Usage::

    tok = AutoTokenizer.from_pretrained(llm_dir)
    t = PromptTemplate(tok, "blsp")
    ids = t.prefix_ids(INSTRUCTIONS["asr"]) + <speech or t.text_ids(transcript)> + t.suffix_ids()
    # training appends t.text_ids(response) + [t.eos_id]
    # a multi-turn conversation, cut at its speech clips (PLACEHOLDER marks each one):
    pieces = t.conversation_ids([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                                 {"role": "user", "content": INSTRUCTIONS["asr"] + PLACEHOLDER}])

Kinds (a registry; an unknown name raises):

``blsp`` (both papers): ``BOS ###[Human]:{instruction}`` + middle + ``\\n\\n\\n###[Assistant]:``
+ response + EOS. The suffix carries no BOS. ``eos_id`` is the tokenizer's EOS.
Without a prompt (``start_ids``): ``BOS ###[Human]:`` + middle.

``chat``: the tokenizer's own ``chat_template`` applied to one user turn whose content is
``instruction + <placeholder>``, with the generation prompt; the rendered text is split at
the placeholder: the prefix is the part before it and the suffix the part after it
(end of the user turn + assistant header). ``eos_id`` is the token that ends an assistant
turn in that template (e.g. ``<|im_end|>`` for Qwen2/SmolLM2, ``<|eot_id|>`` for Llama-3),
found by rendering a short assistant reply; it falls back to the tokenizer's EOS when the
reply is not closed by a special token.

The pieces are tokenised separately (as the official BLSP code does), so a prompt's ids are
prefix + middle + suffix, never a re-tokenisation of the joined text.
"""

from typing import Callable, Dict, List, Optional

# Instructions of the BLSP paper: Sec. 3 (continuation, repetition) and Table 11 (tasks).
INSTRUCTIONS: Dict[str, str] = {
    "continuation": "Continue the following text in a coherent and engaging style with less than 40 words.",
    "repetition": "Please repeat the following words.",
    "asr": "Please repeat the following words.",
    "st": "Please translate the following English text into {target} text.",
    "snips": (
        "Please classify the intent of the text, choose from [DecreaseBrightness, IncreaseBrightness, "
        "SetLightBrightness, SetLightColor, SwitchLightOff, SwitchLightOn]."
    ),
    "fsc": (
        "Please classify the intent of the text, choose from [bring newspaper, deactivate lamp, "
        "change language English, deactivate music, increase heat, change language Korean, "
        "change language none, bring shoes, change language German, activate lights, bring socks, "
        "change language Chinese, decrease heat, decrease volume, increase volume, activate music, "
        "activate lamp, bring juice]."
    ),
    "slue": "Please classify the emotional tone of the text as either positive, negative, or neutral.",
}

BLSP_HUMAN = "###[Human]:"
BLSP_ASSISTANT = "\n\n\n###[Assistant]:"
BLSP_TURN_SEP = "\n\n\n"  # after a reply (or a system text) in a multi-turn blsp prompt
PLACEHOLDER = "<|espnet_blsp_middle|>"
_REPLY = "<|espnet_blsp_reply|>"


class PromptTemplate:
    """Token ids of the pieces of a prompt for one tokenizer.

    Args:
        tokenizer: a HF tokenizer (``AutoTokenizer.from_pretrained(llm_dir)``).
        kind: ``blsp`` | ``chat`` (see the module docstring).

    Attributes:
        eos_id: the token that ends a response (training target and decoding stop).
    """

    def __init__(self, tokenizer, kind: str = "blsp"):
        builders: Dict[str, Callable[[], None]] = {"blsp": self._init_blsp, "chat": self._init_chat}
        if kind not in builders:
            raise ValueError(f"unknown prompt template {kind!r}; choose from {sorted(builders)}")
        self.tokenizer = tokenizer
        self.kind = kind
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {type(tokenizer).__name__} has no EOS token")
        self.eos_id: int = tokenizer.eos_token_id
        self._prefix_cache: Dict[str, List[int]] = {}
        builders[kind]()

    # ------------------------------------------------------------------ helpers
    def _encode(self, text: str) -> List[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _render(self, messages: List[Dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    # ------------------------------------------------------------------ kinds
    def _init_blsp(self) -> None:
        bos = self.tokenizer.bos_token_id
        self._bos: List[int] = [bos] if bos is not None else []
        self._suffix = self._encode(BLSP_ASSISTANT)

    def _init_chat(self) -> None:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(
                f"prompt_template 'chat' needs a tokenizer with a chat_template "
                f"({getattr(self.tokenizer, 'name_or_path', '?')} has none); use 'blsp'"
            )
        text = self._render([{"role": "user", "content": PLACEHOLDER}], add_generation_prompt=True)
        if text.count(PLACEHOLDER) != 1:
            raise ValueError("the chat template does not render the user message verbatim")
        self._suffix = self._encode(text.split(PLACEHOLDER)[1])
        self.eos_id = self._end_of_turn_id()

    def _end_of_turn_id(self) -> int:
        """The first token after an assistant reply, if it is a special token; else EOS."""
        try:
            text = self._render(
                [{"role": "user", "content": "a"}, {"role": "assistant", "content": _REPLY}],
                add_generation_prompt=False,
            )
        except Exception:  # templates that refuse a trailing assistant turn
            return self.tokenizer.eos_token_id
        after = text.split(_REPLY, 1)[1] if _REPLY in text else ""
        ids = self._encode(after)
        special = set(self.tokenizer.all_special_ids) | set(
            getattr(self.tokenizer, "added_tokens_decoder", {}).keys()
        )
        if ids and ids[0] in special:
            return ids[0]
        return self.tokenizer.eos_token_id

    # ------------------------------------------------------------------ public
    def prefix_ids(self, instruction: str) -> List[int]:
        """Ids before the middle (speech or transcript): BOS/turn header + instruction."""
        cached: Optional[List[int]] = self._prefix_cache.get(instruction)
        if cached is None:
            if self.kind == "blsp":
                cached = self._bos + self._encode(BLSP_HUMAN + instruction)
            else:
                text = self._render(
                    [{"role": "user", "content": instruction + PLACEHOLDER}], add_generation_prompt=True
                )
                cached = self._encode(text.split(PLACEHOLDER)[0])
            if len(self._prefix_cache) < 1024:
                self._prefix_cache[instruction] = cached
        return list(cached)

    def start_ids(self) -> List[int]:
        """Ids that open the user turn, with no instruction (``prefix_ids("")``): the whole
        prefix of a prompt-free sequence (the input KL alone, BLSP-KD Sec. 4.2). The official
        code keeps this turn opening and drops the instruction and the suffix."""
        return self.prefix_ids("")

    def suffix_ids(self) -> List[int]:
        """Ids after the middle, up to where the response starts (no BOS)."""
        return list(self._suffix)

    def text_ids(self, text: str) -> List[int]:
        """Content tokens of a transcript or response: no BOS/EOS (n = len for CIF)."""
        return self._encode(text)

    def conversation_ids(self, messages: List[Dict[str, str]]) -> List[List[int]]:
        """Token ids of a multi-turn conversation, split at its speech clips.

        ``messages`` are ``{"role": "system" | "user" | "assistant", "content": str}`` in
        order, ending with a user turn; each speech clip stands in a user turn's content as
        ``PLACEHOLDER`` (after the instruction, as in training). Returns k + 1 id lists for k
        clips: the prompt is ``pieces[0] + clip_1 + pieces[1] + ... + clip_k + pieces[k]``,
        and ``pieces[k]`` ends with the assistant header where the reply starts.

        One user turn ``instruction + PLACEHOLDER`` gives exactly
        ``[prefix_ids(instruction), suffix_ids()]``, the prompt of training and stage 5.

        ``chat``: the tokenizer's chat template renders the whole conversation (with the
        generation prompt) and the text is cut at the placeholders. ``blsp``: the turns are
        joined as ``BOS [system\\n\\n\\n]###[Human]:{user}\\n\\n\\n###[Assistant]:{reply}\\n\\n\\n###[Human]:...``
        (the papers show single turns only; the separator after a reply is ours, the one the
        template already puts between the human turn and the assistant header). Each piece
        between two clips is tokenised as one text.
        """
        if not messages or messages[-1].get("role") != "user":
            raise ValueError("a conversation must end with a user turn")
        for i, m in enumerate(messages):
            role = m.get("role")
            if role not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
                raise ValueError(f"message {i}: expected {{'role': system|user|assistant, 'content': str}}, got {m!r}")
            if role == "system" and i != 0:
                raise ValueError(f"message {i}: a system message may only come first")
            if role != "user" and PLACEHOLDER in m["content"]:
                raise ValueError(f"message {i}: speech can only stand in a user turn")
        clips = sum(m["content"].count(PLACEHOLDER) for m in messages)
        if self.kind == "blsp":
            text = ""
            for m in messages:
                if m["role"] == "system":
                    text += m["content"] + BLSP_TURN_SEP
                elif m["role"] == "user":
                    text += BLSP_HUMAN + m["content"] + BLSP_ASSISTANT
                else:
                    text += m["content"] + BLSP_TURN_SEP
            bos = self._bos
        else:
            text = self._render(messages, add_generation_prompt=True)
            bos = []
        pieces = text.split(PLACEHOLDER)
        if len(pieces) != clips + 1:
            raise ValueError(
                f"the {self.kind} template rendered {len(pieces) - 1} of the conversation's {clips} speech clips"
            )
        ids = [self._encode(p) for p in pieces]
        ids[0] = bos + ids[0]
        return ids
