#!/usr/bin/env python3
"""The ASR model of the CTC+LLM cascade (BLSP Table 2): a CTC head on the frozen speech encoder.

Usage:
    python -m espnet_blsp.bin.cascade_asr --exp_dir exp/train_blsp --config conf/mini/cascade_asr.yaml \
        --train_dir dump/mini_train --out_dir exp/train_blsp/cascade_asr
    # then the cascade: its transcripts go to the LLM (standalone WER: asr_text, scored by stage 6)
    python -m espnet_blsp.bin.blsp_inference --mode cascade --cascade_asr exp/train_blsp/cascade_asr \
        --exp_dir exp/train_blsp --data_dir dump/mini_test --task asr continuation \
        --out_dir 'exp/train_blsp/baselines/ctc_llm/decode_{task}_{dset}'

The encoder of ``--exp_dir`` (the one its adapter was trained on; frozen) feeds a small
transformer + CTC (:class:`espnet_blsp.analysis.probe.CTCProbe`, ``probe_conf`` of the config)
that emits the transcript's LLM token ids, trained on the same ``--train_dir`` as the
adapter. With dumped encoder outputs (``--dump_encoder_output true``) the features are read
as they are; with log-mel features the encoder runs once over the training set.

Writes to ``--out_dir``: ``checkpoint.pt`` (every epoch; a killed run resumes), then
``model.pt`` (the probe, its vocabulary and config: what ``--mode cascade`` loads),
``config.yaml`` and ``cmd``.
"""

import argparse
import logging
import shlex
import sys
from pathlib import Path
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
import yaml

from espnet_blsp.analysis.probe import CTCProbe, ProbeVocab, greedy_ctc


def pool_frames(x: torch.Tensor, pool: int) -> torch.Tensor:
    """(T, D) -> (ceil(T / pool), D): the mean of every ``pool`` frames (the last group may be shorter)."""
    if pool == 1:
        return x
    T = x.shape[0]
    groups = torch.arange(T, device=x.device) // pool  # (T,)
    n = -(-T // pool)
    total = x.new_zeros(n, x.shape[1], dtype=torch.float32).index_add_(0, groups, x.float())
    return total / torch.bincount(groups, minlength=n)[:, None].float()


@torch.no_grad()
def encoder_states(model, feats: Sequence[torch.Tensor], batch_size: int = 8, utt_ids: Sequence[str] = None,
                   pool: int = 1) -> List[torch.Tensor]:
    """N tensors (ceil(T'_i / pool), D_enc) bfloat16: the frozen encoder's outputs (the features
    themselves when the model reads dumped encoder outputs), averaged over ``pool`` frames
    (Whisper gives 50 per second; the transcript ~4 tokens per second)."""
    if model.precomputed_encoder:
        return [pool_frames(f, pool).to(torch.bfloat16) for f in feats]
    device = next(model.encoder.parameters()).device
    dtype = next(model.encoder.parameters()).dtype
    out: List[torch.Tensor] = [None] * len(feats)
    order = sorted(range(len(feats)), key=lambda i: -feats[i].shape[0])
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        lens = torch.tensor([feats[i].shape[0] for i in idx], device=device)
        speech = torch.nn.utils.rnn.pad_sequence([feats[i] for i in idx], batch_first=True).to(device, dtype)
        too_long = [utt_ids[i] if utt_ids else f"#{i}" for i, n in zip(idx, lens.tolist())
                    if n > model.encoder.max_frames]
        if too_long:
            raise ValueError(f"utterance(s) {too_long} exceed 30 s: the encoder cannot take them")
        enc, enc_lens = model.encoder(speech, lens)  # (B, T', D_enc)
        for b, i in enumerate(idx):
            out[i] = pool_frames(enc[b, : int(enc_lens[b])], pool).to(torch.bfloat16).cpu()
    return out


@dataclass
class CascadeASR:
    """The trained CTC model: ``probe`` (eval mode), its ``vocab`` and the frame ``pool``."""

    probe: CTCProbe
    vocab: ProbeVocab
    pool: int

    @classmethod
    def load(cls, path: Path, device) -> "CascadeASR":
        f = Path(path) / "model.pt"
        if not f.exists():
            raise FileNotFoundError(f"{f} not found: train the cascade's ASR model first "
                                    "(python -m espnet_blsp.bin.cascade_asr)")
        saved = torch.load(f, map_location="cpu", weights_only=True)
        vocab = ProbeVocab(saved["vocab"])
        probe = CTCProbe(saved["input_size"], len(vocab), **saved["probe_conf"])
        probe.load_state_dict(saved["model"])
        return cls(probe.to(device).eval(), vocab, saved["pool"])

    @torch.no_grad()
    def transcribe(self, model, feats: Sequence[torch.Tensor], batch_size: int = 8,
                   utt_ids: Sequence[str] = None) -> List[str]:
        """Greedy CTC transcripts (text, via the LLM tokenizer) of the features."""
        device = next(self.probe.parameters()).device
        states = encoder_states(model, feats, batch_size, utt_ids, self.pool)
        out = []
        for i in range(0, len(states), batch_size):
            chunk = [s.float() for s in states[i : i + batch_size]]
            x = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True).to(device)
            log_probs, lens = self.probe(x, torch.tensor([c.shape[0] for c in chunk], device=device))
            out += [" ".join(model.llm.tokenizer.decode(ids, skip_special_tokens=True).split())
                    for ids in self.vocab.decode_batch(greedy_ctc(log_probs, lens))]
        return out



def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True, type=Path, help="training dir whose encoder and LLM tokenizer are used")
    p.add_argument("--config", type=Path, default=Path("conf/mini/cascade_asr.yaml"))
    p.add_argument("--train_dir", required=True, type=Path, help="dump/<train set>: feats.scp and text")
    p.add_argument("--out_dir", type=Path, default=None, help="default: <exp_dir>/cascade_asr")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return p


def run(args, command: str) -> Path:
    import kaldiio

    from espnet_blsp.bin.asr_probe import read_set, train_probe
    from espnet_blsp.bin.blsp_inference import build_model
    from espnet_blsp.utils.dtype import resolve_device

    if not args.config.exists():
        raise FileNotFoundError(f"config {args.config} not found (e.g. conf/mini/cascade_asr.yaml)")
    cfg = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
    for key in ("probe_conf", "optim_conf", "max_epoch", "batch_size"):
        if key not in cfg:
            raise ValueError(f"{args.config} lacks {key}")
    out_dir = args.out_dir or args.exp_dir / "cascade_asr"
    keys, feats_scp, texts = read_set(args.train_dir, cfg.get("num_train_utts", 0), cfg.get("seed", 0), "training")
    device = resolve_device(args.device)
    model = build_model(args.exp_dir, device, None, load=False)  # the frozen encoder and the tokenizer only
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cmd").write_text(command + "\n", encoding="utf-8")
    (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    if (out_dir / "model.pt").exists():
        logging.info(f"{out_dir / 'model.pt'} exists: nothing to do")
        return out_dir / "model.pt"
    logging.info(f"encoder outputs of {len(keys)} utterances of {args.train_dir}")
    mats = [torch.from_numpy(kaldiio.load_mat(feats_scp[k]).copy()) for k in keys]
    pool = int(cfg.get("pool", 1))
    states = encoder_states(model, mats, cfg.get("extract_batch_size", 8), keys, pool)
    targets = [model.llm.template.text_ids(texts[k]) for k in keys]
    vocab = ProbeVocab.from_targets(targets)
    probe = train_probe(out_dir, states, targets, vocab, cfg, device)
    tmp = out_dir / "model.pt.tmp"
    torch.save({"model": probe.state_dict(), "vocab": vocab.ids, "input_size": states[0].shape[-1],
                "probe_conf": cfg["probe_conf"], "pool": pool}, tmp)
    tmp.replace(out_dir / "model.pt")
    logging.info(f"wrote {out_dir / 'model.pt'} ({len(vocab) - 1} LLM token ids)")
    return out_dir / "model.pt"


def main(cmd: Optional[List[str]] = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    command = "python -m espnet_blsp.bin.cascade_asr " + shlex.join(cmd if cmd is not None else sys.argv[1:])
    try:
        return run(args, command)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"cascade_asr: error: {e}") from None


if __name__ == "__main__":
    main()
