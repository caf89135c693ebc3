#!/usr/bin/env python3
"""ASR probe (BLSP-KD Sec. 5.3, Table 4): how much of the transcript the LLM's hidden states hold.

Usage:
    python -m espnet_blsp.bin.asr_probe --exp_dir exp/train_blsp --config conf/mini/asr_probe.yaml \
        --train_dir dump/mini_train --test_dir dump/mini_test --ref_text data/mini_test/text \
        --out_dir exp/train_blsp/analysis/asr_probe
    python -m espnet_blsp.bin.asr_probe ... --layers 0 30      # other layers than the config's

The speech encoder, the adapter and the LLM of ``--exp_dir`` stay frozen. For each layer l
of ``layers`` (0 = the adapter outputs, the LLM's input embeddings; L = its final layer), a
2-layer transformer with a CTC output (:mod:`espnet_blsp.analysis.probe`; why CTC: there)
learns to emit the transcript's LLM token ids from the states at the speech positions of
the prompt ``prefix(instruction) + speech``, on a fixed subset of ``--train_dir``. Its greedy
transcripts of ``--test_dir`` are scored with stage 6's WER (Whisper normaliser) against
``--ref_text`` (default ``<test_dir>/text``), beside the WER of the model itself told to
repeat the words (stage 6's ``<exp_dir>/decode_asr_<test set>/text`` if complete, else
decoded here with ``--max_new_tokens``).

Writes to ``--out_dir`` (default ``<exp_dir>/analysis/asr_probe``); every step resumes:

    states_{train,test}.pt   the frozen states at the chosen layers (made once)
    layer<l>/checkpoint.pt   the probe after each epoch (a killed run continues from it)
    layer<l>/text            its test transcripts;  layer<l>/score/  their WER (score.json)
    decode_asr_<set>/        the repeat-instruction decoding, when stage 5 has none
    asr_probe.md, results.json   the per-layer WER table (make_results.py embeds the .md)
    config.yaml, cmd         the resolved config and this command line
"""

import argparse
import json
import logging
import math
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import yaml

from espnet_blsp.analysis.probe import CTCProbe, ProbeVocab, ctc_loss, greedy_ctc


def load_probe_config(path: Path, layers: Optional[List[int]]) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"probe config {path} not found (e.g. conf/mini/asr_probe.yaml)")
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    required = ("instruction", "probe_conf", "optim_conf", "max_epoch", "batch_size")
    lost = [k for k in required if k not in cfg]
    if lost:
        raise ValueError(f"{path} lacks {lost}")
    if layers:
        cfg["layers"] = list(layers)
    return cfg


def resolve_layers(layers: Optional[Sequence[int]], num_layers: int) -> List[int]:
    """The probe layers; None: 0, L/4, L/2, 3L/4, L. Each must be in 0..L."""
    if layers is None:
        layers = sorted({round(num_layers * q / 4) for q in range(5)})
    bad = [layer for layer in layers if not 0 <= int(layer) <= num_layers]
    if bad:
        raise ValueError(f"layer(s) {bad} out of range: the LLM has {num_layers} layers, so 0..{num_layers} "
                         f"(0 = the adapter outputs / input embeddings, {num_layers} = the final layer)")
    return sorted(set(int(layer) for layer in layers))


def read_set(data_dir: Path, num_utts: int, seed: Optional[int], what: str):
    """(keys, feats.scp, transcripts): all, a fixed random subset (seed), or the first N (seed None)."""
    from espnet_blsp.data.kaldi_dir import read_kv

    for name, role in (("feats.scp", "the features of stage 2"), ("text", "the transcripts the probe learns")):
        if not (data_dir / name).exists():
            raise FileNotFoundError(f"{data_dir / name} not found: the {what} set needs {role}")
    feats, texts = read_kv(data_dir / "feats.scp"), read_kv(data_dir / "text")
    keys = sorted(k for k in feats if not k.endswith("-rp"))
    lost = [k for k in keys if not texts.get(k, "").strip()]
    if lost:
        raise ValueError(f"{data_dir / 'text'}: no transcript for {len(lost)} utterances of feats.scp, e.g. {lost[:5]}")
    if num_utts and num_utts < len(keys):
        keys = sorted(random.Random(seed).sample(keys, num_utts)) if seed is not None else keys[:num_utts]
    if not keys:
        raise ValueError(f"{data_dir}: no utterances")
    return keys, feats, texts


def cached_states(path: Path, setup: dict, make) -> dict:
    """``path``'s states if made with ``setup``, else ``make()`` saved there (atomically)."""
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved["setup"] == json.dumps(setup, sort_keys=True):
            logging.info(f"{path}: reused")
            return saved["states"]
        logging.info(f"{path}: made with other settings, extracted again")
    t0 = time.time()
    states = make()
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"setup": json.dumps(setup, sort_keys=True), "states": states}, tmp)
    tmp.replace(path)
    logging.info(f"{path}: extracted in {time.time() - t0:.1f} s")
    return states


def check_layer_setup(path: Path, setup: dict) -> None:
    """Write ``setup`` to ``path`` on the first run; on a re-run it must be the same (a layer's
    checkpoint and score are only reused for the same probe, data and model)."""
    if path.exists():
        if json.loads(path.read_text(encoding="utf-8")) != json.loads(json.dumps(setup)):
            raise ValueError(f"{path.parent} was made with another config, data or checkpoint: delete it "
                             "(or choose another --out_dir) to train this probe again")
        return
    path.write_text(json.dumps(setup) + "\n", encoding="utf-8")


def _batches(n: int, batch_size: int, seed: int):
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _pad(xs: Sequence[torch.Tensor]):
    return torch.nn.utils.rnn.pad_sequence(list(xs), batch_first=True), torch.tensor([x.shape[0] for x in xs])


def train_probe(layer_dir: Path, states: List[torch.Tensor], targets: List[List[int]], vocab: ProbeVocab,
                cfg: dict, device) -> CTCProbe:
    """Train (or resume, from ``layer_dir/checkpoint.pt``) one probe; returns it in eval mode."""
    torch.manual_seed(cfg.get("seed", 0))
    probe = CTCProbe(states[0].shape[-1], len(vocab), **cfg["probe_conf"]).to(device)
    optim = torch.optim.AdamW(probe.parameters(), **cfg["optim_conf"])
    steps_per_epoch = -(-len(states) // cfg["batch_size"])
    total, warmup = cfg["max_epoch"] * steps_per_epoch, max(1, cfg.get("warmup_steps", 0))
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then cosine to 0
        optim, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s, total) / total))))
    ckpt_path, start = layer_dir / "checkpoint.pt", 1
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        probe.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optim"])
        sched.load_state_dict(ckpt["sched"])
        start = ckpt["epoch"] + 1
        logging.info(f"{ckpt_path}: resuming after epoch {ckpt['epoch']}")
    classes = [vocab.encode(t) for t in targets]
    for epoch in range(start, cfg["max_epoch"] + 1):
        probe.train()
        t0, total_loss = time.time(), 0.0
        for idx in _batches(len(states), cfg["batch_size"], cfg.get("seed", 0) + epoch):
            x, x_lens = _pad([states[i].float() for i in idx])
            log_probs, lens = probe(x.to(device), x_lens.to(device))
            loss = ctc_loss(log_probs, lens, [classes[i] for i in idx])
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(probe.parameters(), cfg.get("grad_clip", 5.0))
            optim.step()
            sched.step()
            total_loss += loss.item() * len(idx)
        torch.save({"epoch": epoch, "model": probe.state_dict(), "optim": optim.state_dict(),
                    "sched": sched.state_dict()}, ckpt_path.with_name("checkpoint.pt.tmp"))
        ckpt_path.with_name("checkpoint.pt.tmp").replace(ckpt_path)
        logging.info(f"{layer_dir.name}: epoch {epoch}/{cfg['max_epoch']}, CTC loss "
                     f"{total_loss / len(states):.3f} ({time.time() - t0:.1f} s)")
    return probe.eval()


@torch.no_grad()
def transcribe(probe: CTCProbe, states: List[torch.Tensor], vocab: ProbeVocab, tokenizer, device,
               batch_size: int = 32) -> List[str]:
    out = []
    for i in range(0, len(states), batch_size):
        x, x_lens = _pad([s.float() for s in states[i : i + batch_size]])
        log_probs, lens = probe(x.to(device), x_lens.to(device))
        out += [" ".join(tokenizer.decode(ids, skip_special_tokens=True).split())
                for ids in vocab.decode_batch(greedy_ctc(log_probs, lens))]
    return out


def write_kaldi(path: Path, rows: Dict[str, str]) -> None:
    """``<utt> <text>`` lines sorted by id, written atomically (an empty text: the id alone)."""
    from espnet_blsp.data.kaldi_dir import write_kv

    write_kv(path, {k: " ".join(v.split()) for k, v in rows.items()})


def repeat_wer(model, exp_dir: Path, test_dir: Path, keys, feats_scp, ref_text: Path, out_dir: Path,
               args, device) -> dict:
    """The model's own repeat-instruction WER on ``keys``: stage 5's hypotheses if they cover
    them, else decoded into ``out_dir/decode_asr_<set>`` (resumable)."""
    from espnet_blsp.bin.blsp_inference import decode_speech, instructions_for, prefix_tensors
    from espnet_blsp.data.kaldi_dir import read_kv
    from espnet_blsp.scoring.scorers import score_wer
    from espnet_blsp.utils.resumable import LineAppender, recover_lines

    stage5 = exp_dir / f"decode_asr_{test_dir.name}" / "text"
    if stage5.exists() and set(keys) <= set(read_kv(stage5)):
        hyps, source = read_kv(stage5), str(stage5)
    else:
        hyp_path = out_dir / f"decode_asr_{test_dir.name}" / "text"
        hyp_path.parent.mkdir(parents=True, exist_ok=True)
        todo = [k for k in keys if k not in recover_lines(hyp_path)]
        if todo:
            logging.info(f"repeat instruction: decoding {len(todo)} utterances of {test_dir} -> {hyp_path}")
            prefixes = prefix_tensors(model.llm, instructions_for("asr", test_dir, todo, None), device)
            with LineAppender(hyp_path) as writer:
                decode_speech(model, todo, feats_scp, prefixes, args, writer, device)
        hyps, source = recover_lines(hyp_path), str(hyp_path)
    sub = out_dir / "repeat"
    write_kaldi(sub / "text", {k: hyps[k] for k in keys})
    score = score_wer(ref_text, sub / "text", sub / "score")
    return {"wer": score["scores"]["wer"], "source": source}


def render_markdown(tag: str, results: Dict[int, float], repeat: dict, about: List[str], num_layers: int) -> str:
    cols = [f"layer {layer}" + (" (adapter out)" if layer == 0 else " (final)" if layer == num_layers else "")
            for layer in results]
    lines = [f"# ASR probe: {tag}", ""] + [f"- {a}" for a in about] + [""]
    lines += ["| WER↓ | " + " | ".join(cols) + " | prompted (repeat instruction) |",
              "|---|" + "---:|" * (len(cols) + 1),
              "| " + " | ".join([tag] + [f"{w:.1f}" for w in results.values()] + [f"{repeat['wer']:.1f}"]) + " |"]
    return "\n".join(lines) + "\n"


def get_parser() -> argparse.ArgumentParser:
    from espnet_blsp.bin.blsp_inference import add_decode_arguments  # the decode config's options

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True, type=Path, help="training dir (config.yaml + checkpoint)")
    p.add_argument("--config", type=Path, default=Path("conf/mini/asr_probe.yaml"), help="the probe's config")
    p.add_argument("--train_dir", required=True, type=Path, help="dump/<train set>: feats.scp and text")
    p.add_argument("--test_dir", required=True, type=Path, help="dump/<test set>: feats.scp and text")
    p.add_argument("--ref_text", type=Path, default=None, help="WER reference (default: <test_dir>/text)")
    p.add_argument("--out_dir", type=Path, default=None, help="default: <exp_dir>/analysis/asr_probe")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="override the config's layers")
    p.add_argument("--checkpoint", default=None, help="file name inside --exp_dir (default: as stage 5)")
    add_decode_arguments(p, max_new_tokens=64, batch_help="repeat-instruction decoding batch")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return p


def run(args, command: str) -> Dict[str, object]:
    from espnet_blsp.analysis.representations import speech_position_states
    from espnet_blsp.bin.analyze import llm_num_layers
    from espnet_blsp.bin.blsp_inference import build_model, find_checkpoint, load_config
    from espnet_blsp.utils.dtype import resolve_device
    from espnet_blsp.scoring.scorers import score_wer

    cfg = load_probe_config(args.config, args.layers)
    exp_cfg = load_config(args.exp_dir)
    ckpt = find_checkpoint(args.exp_dir, args.checkpoint)  # before any work: a clear error
    num_layers = llm_num_layers(exp_cfg["llm_conf"])
    layers = resolve_layers(cfg.get("layers"), num_layers)
    cfg["layers"] = layers
    ref_text = args.ref_text or args.test_dir / "text"
    if not ref_text.exists():
        raise FileNotFoundError(f"{ref_text} not found: the WER reference")
    train_keys, train_feats, train_texts = read_set(args.train_dir, cfg.get("num_train_utts", 0),
                                                    cfg.get("seed", 0), "training")
    test_keys, test_feats, _ = read_set(args.test_dir, cfg.get("num_test_utts", 0), None, "test")
    from espnet_blsp.data.kaldi_dir import read_kv

    refs = read_kv(ref_text)
    lost = [k for k in test_keys if k not in refs]
    if lost:
        raise ValueError(f"{ref_text} has no reference for {len(lost)} test utterances, e.g. {lost[:5]}")
    out_dir = args.out_dir or args.exp_dir / "analysis" / "asr_probe"
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_subset = out_dir / "ref_text"  # the references of the scored utterances
    write_kaldi(ref_subset, {k: refs[k] for k in test_keys})
    (out_dir / "cmd").write_text(command + "\n", encoding="utf-8")
    (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")

    device = resolve_device(args.device)
    model = build_model(args.exp_dir, device, args.checkpoint, load=True)
    tokenizer = model.llm.tokenizer
    mtime = ckpt.stat().st_mtime_ns

    def states_of(split, data_dir, keys, feats_scp):
        import kaldiio

        setup = {"exp_dir": str(args.exp_dir), "checkpoint": str(ckpt), "mtime": mtime, "layers": layers,
                 "instruction": cfg["instruction"], "data_dir": str(data_dir), "keys": keys}

        def make():
            mats = [torch.from_numpy(kaldiio.load_mat(feats_scp[k]).copy()) for k in keys]
            logging.info(f"{split}: states of {len(keys)} utterances of {data_dir} at layers {layers}")
            return speech_position_states(model, mats, cfg["instruction"], layers,
                                          cfg.get("extract_batch_size", 8), keys)
        return cached_states(out_dir / f"states_{split}.pt", setup, make)

    train_states = states_of("train", args.train_dir, train_keys, train_feats)
    test_states = states_of("test", args.test_dir, test_keys, test_feats)
    targets = [model.llm.template.text_ids(train_texts[k]) for k in train_keys]
    vocab = ProbeVocab.from_targets(targets)
    logging.info(f"probe vocabulary: {len(vocab) - 1} LLM token ids of the {len(train_keys)} training transcripts")

    results: Dict[int, float] = {}
    for layer in layers:
        layer_dir = out_dir / f"layer{layer}"
        layer_dir.mkdir(exist_ok=True)
        check_layer_setup(layer_dir / "setup.json", {"config": {k: v for k, v in cfg.items() if k != "layers"},
                                                    "vocab": vocab.ids, "train_keys": train_keys,
                                                    "test_keys": test_keys, "checkpoint": str(ckpt), "mtime": mtime})
        done = layer_dir / "score" / "score.json"
        if not done.exists():
            t0 = time.time()
            probe = train_probe(layer_dir, train_states[layer], targets, vocab, cfg, device)
            hyps = transcribe(probe, test_states[layer], vocab, tokenizer, device)
            write_kaldi(layer_dir / "text", dict(zip(test_keys, hyps)))
            score_wer(ref_subset, layer_dir / "text", layer_dir / "score")
            logging.info(f"layer {layer}: trained and scored in {time.time() - t0:.1f} s")
        results[layer] = json.loads(done.read_text(encoding="utf-8"))["scores"]["wer"]
        logging.info(f"layer {layer}: probe WER {results[layer]:.1f} -> {done}")
    repeat = repeat_wer(model, args.exp_dir, args.test_dir, test_keys, test_feats, ref_subset, out_dir, args, device)

    tag = args.exp_dir.resolve().name
    about = [f"experiment `{args.exp_dir}` (`{ckpt}`), frozen; probe: {cfg['probe_conf']['num_layers']}-layer "
             f"transformer (width {cfg['probe_conf']['d_model']}) + CTC on the LLM token ids, "
             f"{cfg['max_epoch']} epochs on {len(train_keys)} utterances of `{args.train_dir}` "
             f"(config `{args.config}`)",
             f"states: the speech positions of \"{cfg['instruction']}\" + speech; layer 0 = the adapter outputs "
             f"(the LLM's input embeddings), layer {num_layers} = the final layer",
             f"WER on {len(test_keys)} utterances of `{args.test_dir}` against `{ref_text}` (stage 6's "
             f"normaliser); prompted: the model told to repeat the words (`{repeat['source']}`)"]
    (out_dir / "asr_probe.md").write_text(render_markdown(tag, results, repeat, about, num_layers), encoding="utf-8")
    summary = {"layers": {str(k): v for k, v in results.items()}, "repeat_wer": repeat["wer"],
               "repeat_source": repeat["source"], "num_train_utts": len(train_keys), "num_test_utts": len(test_keys)}
    (out_dir / "results.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    logging.info(f"wrote {out_dir}/asr_probe.md: " + ", ".join(f"layer {k} {v:.1f}" for k, v in results.items())
                 + f"; repeat instruction {repeat['wer']:.1f}")
    return summary


def main(cmd: Optional[List[str]] = None) -> Dict[str, object]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    command = "python -m espnet_blsp.bin.asr_probe " + shlex.join(cmd if cmd is not None else sys.argv[1:])
    try:
        return run(args, command)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"asr_probe: error: {e}") from None


if __name__ == "__main__":
    main()
