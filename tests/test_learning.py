"""Training learns: synthetic "speech" made from the transcript's token embeddings.

Each token's (frozen, tiny) LLM embedding is stretched to 2-5 noisy frames; the
adapters must learn to undo that. The encoder is bypassed (precomputed_encoder).
"""

import collections
import math
import random

import pytest
import torch

from espnet_blsp.adapters import CFormerAdapter, CNNAdapter
from espnet_blsp.encoders.whisper import WhisperSpeechEncoder
from espnet_blsp.espnet_model import BLSPModel
from espnet_blsp.llm.causal_lm import SpeechLLM
from espnet_blsp.testing.tiny import TINY_WHISPER_CONFIG, _WORDS


def _peaky(llm):
    """A random tiny LM predicts near-uniformly; sharpen its head so KL has signal."""
    with torch.no_grad():
        llm.model.get_output_embeddings().weight.mul_(40.0)
    return llm


def _data(llm, n, seed, max_new_tokens=6):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    t = llm.template
    emb = llm.model.get_input_embeddings().weight.detach()
    items = []
    for _ in range(n):
        text = " ".join(rng.choice(_WORDS[:60]) for _ in range(rng.randint(3, 7)))
        ids = t.text_ids(text)
        frames = [emb[i] / emb[i].norm() * 4 for i in ids for _ in range(rng.randint(2, 5))]
        feats = torch.stack(frames) + 0.1 * torch.randn(len(frames), emb.shape[1], generator=g)
        items.append((feats, ids))
    # BLSP's targets: the frozen LLM's own greedy continuation of the transcript
    prefix = torch.tensor(t.prefix_ids("Continue the text."))
    suffix = torch.tensor(t.suffix_ids())
    resps = llm.generate([prefix] * n, [torch.tensor(i) for _, i in items], [suffix] * n, middle_is_speech=False, max_new_tokens=max_new_tokens)
    return [(f, i, r or [t.eos_id]) for (f, i), r in zip(items, resps)]


def _batch(llm, items):
    t = llm.template
    pad = lambda xs, v: torch.nn.utils.rnn.pad_sequence(xs, batch_first=True, padding_value=v)  # noqa: E731
    ids = lambda xs: [torch.tensor(x) for x in xs]  # noqa: E731
    feats, texts, resp = zip(*items)
    B = len(items)
    return dict(
        speech=pad(list(feats), 0.0), speech_lengths=torch.tensor([f.shape[0] for f in feats]),
        text=pad(ids(texts), -1), text_lengths=torch.tensor([len(x) for x in texts]),
        prefix=pad(ids([t.prefix_ids("Continue the text.")] * B), -1),
        prefix_lengths=torch.tensor([len(t.prefix_ids("Continue the text."))] * B),
        suffix=pad(ids([t.suffix_ids()] * B), -1), suffix_lengths=torch.tensor([len(t.suffix_ids())] * B),
        response=pad(ids(resp), -1), response_lengths=torch.tensor([len(x) for x in resp]),
    )


def _train(model, data, steps, lr, key, cosine=False, batch_size=8):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    # optionally 50 warmup steps, then cosine decay to 0 (as a real recipe would schedule)
    decay = lambda i: min(1.0, (i + 1) / 50) * 0.5 * (1 + math.cos(math.pi * i / steps)) if cosine else 1.0  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, decay)
    rng = random.Random(0)
    model.train()
    first = last = None
    history = []
    for step in range(steps):
        loss, stats, _ = model(**_batch(model.llm, rng.sample(data, batch_size)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(stats[key]))
        if step == 9:
            first = sum(history) / len(history)
    last = sum(history[-10:]) / 10
    return first, last


def _duration_baseline(train, test):
    """Share of ``test`` whose token count is within +-1 of round(frames / c), with the
    frames-per-token c that is best on ``train``: what a count read off the clip length alone
    achieves (the frames per token are random, so this is ~92 %)."""
    def close(items, c):
        return sum(abs(math.floor(f.shape[0] / c + 0.5) - len(i)) <= 1 for f, i, _ in items) / len(items)

    c = max((close(train, c), c) for c in [2.0 + 0.05 * k for k in range(61)])[1]
    return close(test, c)


@pytest.mark.slow
def test_cformer_learns_input_kl_and_cif(tiny_llm):
    torch.manual_seed(0)
    llm = _peaky(SpeechLLM(tiny_llm, dtype="float32"))
    H = llm.hidden_size
    adapter = CFormerAdapter(H, H, attention_heads=4, linear_units=128, num_pre_layers=4, num_post_layers=1, dropout_rate=0.0)
    model = BLSPModel(
        WhisperSpeechEncoder(config=TINY_WHISPER_CONFIG), adapter, llm, ce_weight=0.0,
        kl_input_weight=1.0, cif_weight=1.0, precomputed_encoder=True,
    )
    # Many utterances, so the count is learned rather than memorised (the responses are
    # unused by these losses: one token each keeps generation cheap)
    data = _data(llm, 8000, seed=0, max_new_tokens=1)
    first, last = _train(model, data, steps=750, lr=2e-3, key="loss_kl_input", cosine=True, batch_size=32)
    assert last <= 0.1 * first, (first, last)
    model.eval()
    test = _data(llm, 1500, seed=1, max_new_tokens=1)  # held out; 1500 so the share is +-0.5 %
    with torch.no_grad():
        b = _batch(llm, test)
        _, y_lens, _ = model.encode(b["speech"], b["speech_lengths"])
    close = float(((y_lens - b["text_lengths"]).abs() <= 1).float().mean())
    baseline = _duration_baseline(data[:2000], test)
    # CIF fires within +-1 of the transcript's token count, and better than the clip length
    # alone predicts it: the alphas follow the token segments in the speech
    assert close >= 0.95 and close > baseline + 0.02, (close, baseline)


def _ending_responses(llm, n, seed, max_new_tokens=12):
    """Utterances whose continuation the frozen LLM ends by itself.

    A random tiny LM never emits its tokenizer's EOS, so the EOS that BLSP appends to every
    response would be a target no input can make likely (the LLM fed the true transcript
    scores CE ~4 on it). The token the LM most often emits after its first two becomes the
    end of response (``template.eos_id``: generation stops there and training appends it),
    and only the continuations that end within ``max_new_tokens`` are kept.
    """
    t = llm.template
    counts = collections.Counter(tok for _, _, r in _data(llm, 300, seed=seed + 1000) for tok in r[2:] if tok not in r[:2])
    t.eos_id = counts.most_common(1)[0][0]
    data = _data(llm, n, seed, max_new_tokens=max_new_tokens)
    return [(f, i, r) for f, i, r in data if r != [t.eos_id] and len(r) < max_new_tokens]


@pytest.mark.slow
def test_cnn_learns_response_ce(tiny_llm):
    torch.manual_seed(0)
    llm = _peaky(SpeechLLM(tiny_llm, dtype="float32"))
    H = llm.hidden_size
    model = BLSPModel(
        WhisperSpeechEncoder(config=TINY_WHISPER_CONFIG), CNNAdapter(H, H, num_layers=1, bottleneck_dim=64), llm,
        ce_weight=1.0, precomputed_encoder=True,
    )
    data = _ending_responses(llm, 600, seed=0)
    assert len(data) >= 100, len(data)
    data = data[:200]
    first, last = _train(model, data, steps=800, lr=3e-3, key="loss_ce")
    assert last <= 0.1 * first, (first, last)
    # the adapter carries the utterance: the same responses with another utterance's speech score far worse
    model.eval()
    with torch.no_grad():
        _, matched, _ = model(**_batch(llm, data[:64]))
        _, swapped, _ = model(**_batch(llm, [(data[(k + 1) % 64][0], i, r) for k, (_, i, r) in enumerate(data[:64])]))
    assert swapped["loss_ce"] >= 5 * matched["loss_ce"], (float(matched["loss_ce"]), float(swapped["loss_ce"]))
