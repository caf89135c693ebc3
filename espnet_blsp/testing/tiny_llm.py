"""A tiny random causal LM and a byte-level BPE tokenizer, built in code (no downloads).

Usage::

    from espnet_blsp.testing.tiny_llm import make_tiny_llm
    path = make_tiny_llm("/tmp/tiny_llama", arch="llama")   # or arch="qwen2"
    AutoTokenizer.from_pretrained(path); AutoModelForCausalLM.from_pretrained(path)

The model: hidden 64, 2 layers, 4 heads, 2 KV heads, intermediate 128, random weights.
The tokenizer (~600 tokens) is trained in code on a few hundred generated English lines
plus the BLSP instructions and prompt markers; its JSON is cached per process.

=========  ======  ===============  ===============  ===============================
arch       BOS     EOS              pad              chat template (a reply ends at)
=========  ======  ===============  ===============  ===============================
llama      <s>     </s>             <pad>            ``<s>role\\ncontent</s>\\n`` (</s>)
qwen2      none    <|endoftext|>    <|endoftext|>    ``<|im_start|>role\\ncontent<|im_end|>\\n``
                                                     (<|im_end|>, not the EOS)
=========  ======  ===============  ===============  ===============================
"""

import functools
import os
import random
from typing import Callable, Dict, List

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_NOUNS = (
    "time people year way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "number night point home water room mother area money story fact month lot right study "
    "book eye job word business issue side kind head house service friend father power hour "
    "game line end member law car city name team minute idea kid body information back parent "
    "face weather rain sun river mountain train station coffee bread garden music light lamp "
    "newspaper shoes socks juice heat volume language brightness color"
).split()
_VERBS = "is was has had sees likes makes takes finds reads wants needs keeps opens brings plays".split()
_ADJS = "good new old great small large warm cold bright dark happy quiet long short green".split()
_OTHER = "the a an of to and in for on that with as it at by from this but all when there".split()


def _lines(n: int = 400, seed: int = 0) -> List[str]:
    """``n`` simple English sentences from a fixed grammar, plus prompt/instruction text."""
    from espnet_blsp.llm.prompt import BLSP_ASSISTANT, BLSP_HUMAN, INSTRUCTIONS

    rng = random.Random(seed)

    def np_() -> str:
        words = [rng.choice(["the", "a", "my", "this"])]
        if rng.random() < 0.5:
            words.append(rng.choice(_ADJS))
        return " ".join(words + [rng.choice(_NOUNS)])

    out = []
    for _ in range(n):
        s = f"{np_()} {rng.choice(_VERBS)} {np_()}"
        if rng.random() < 0.5:
            s += f" {rng.choice(['in', 'at', 'with', 'from', 'and'])} {np_()}"
        if rng.random() < 0.3:
            s += " " + " ".join(rng.choice(_OTHER) for _ in range(rng.randint(1, 4)))
        out.append(s.capitalize() + rng.choice([".", ".", "?", "!"]))
    prompt = [BLSP_HUMAN + v + BLSP_ASSISTANT for v in INSTRUCTIONS.values()]
    return out + prompt * 3 + ["user\nassistant\nsystem\n"] * 3


@functools.lru_cache(maxsize=None)
def tiny_tokenizer_json(vocab_size: int = 600) -> str:
    """The trained byte-level BPE tokenizer as JSON (cached per process)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_lines(), trainer)
    return tok.to_str()


LLAMA_CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
QWEN2_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tiny_tokenizer(arch: str = "llama"):
    """A ``PreTrainedTokenizerFast`` with the special tokens of ``arch`` (see the table above)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    specials: Dict[str, Dict] = {
        "llama": dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"),
        "qwen2": dict(eos_token="<|endoftext|>", pad_token="<|endoftext|>"),
    }
    if arch not in specials:
        raise ValueError(f"unknown tiny LLM arch {arch!r}; choose from {sorted(specials)}")
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tiny_tokenizer_json()), **specials[arch])
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = LLAMA_CHAT_TEMPLATE if arch == "llama" else QWEN2_CHAT_TEMPLATE
    return tok


def _llama(tok, common: Dict):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(bos_token_id=tok.bos_token_id, **common))


def _qwen2(tok, common: Dict):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM(Qwen2Config(bos_token_id=None, **common))


_ARCHS: Dict[str, Callable] = {"llama": _llama, "qwen2": _qwen2}


def make_tiny_llm(out_dir: str, arch: str = "llama", seed: int = 0) -> str:
    """Save a random tiny causal LM of ``arch`` (llama | qwen2) and its tokenizer to ``out_dir``."""
    import torch

    if arch not in _ARCHS:
        raise ValueError(f"unknown tiny LLM arch {arch!r}; choose from {sorted(_ARCHS)}")
    tok = make_tiny_tokenizer(arch)
    common = dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = _ARCHS[arch](tok, common)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
