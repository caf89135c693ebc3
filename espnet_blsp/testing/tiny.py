"""Tiny random Whisper and LLM checkpoints built in code, for tests and CI (no downloads)."""

import functools
import os

from espnet_blsp.testing.tiny_whisper import TINY_WHISPER_CONFIG, make_tiny_whisper  # noqa: F401

_WORDS = (
    "the a an of to and in is was for on that with as it his her they we you he she at by "
    "from this be are have had not but what all were when there can said which one do time "
    "people year way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program question work number "
    "night point home water room mother area money story fact month lot right study book eye "
    "job word business issue side kind head house service friend father power hour game line "
    "end member law car city name team minute idea kid body information back parent face "
    "please repeat following words continue text coherent engaging style less than forty "
    "translate english german classify intent emotional tone positive negative neutral "
    "weather rain sun cold warm river mountain train station coffee bread garden music"
).split()


@functools.lru_cache(maxsize=None)
def _tokenizer_json() -> str:
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(0)
    lines = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 16))) for _ in range(400)]
    lines += [w.capitalize() + "." for w in _WORDS] + ["###[Human]:", "\n\n\n###[Assistant]:"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(lines, trainer)
    return tok.to_str()


CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def make_tiny_tokenizer():
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_tiny_llm(out_dir: str, arch: str = "llama", seed: int = 0) -> str:
    """Save a random 2-layer causal LM (hidden 64) and its tokenizer to ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = make_tiny_tokenizer()
    common = dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(bos_token_id=tok.bos_token_id, **common))
    elif arch == "qwen2":
        tok.bos_token = None
        model = Qwen2ForCausalLM(Qwen2Config(bos_token_id=None, **common))
    else:
        raise ValueError(f"unknown arch {arch!r} (llama | qwen2)")
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
