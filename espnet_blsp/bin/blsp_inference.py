#!/usr/bin/env python3
"""Stage 5: batched decoding of a test set with a task instruction (BLSP Table 11).

Usage:
    python -m espnet_blsp.bin.blsp_inference --exp_dir exp/blsp --data_dir dump/test_clean \
        --task asr --out_dir exp/blsp/decode_asr_test_clean
    # several tasks and test sets in one process (the model is loaded once):
    python -m espnet_blsp.bin.blsp_inference --exp_dir exp/blsp \
        --data_dir dump/test_clean dump/test_other --task asr continuation \
        --out_dir 'exp/blsp/decode_{task}_{dset}'

Modes (``--mode``):
    speech     the trained model: speech -> encoder -> adapter -> LLM (default)
    untrained  the same model with its adapter left at random init (a floor)
    text       Text+LLM baseline: the transcript goes to the LLM
    whisper    Whisper+LLM baseline: the Whisper decoder transcribes, then the LLM answers
               (the transcripts are also written to ``out_dir/asr_text``)
    cascade    CTC+LLM baseline (BLSP Table 2): the CTC model of ``bin/cascade_asr`` on the frozen
               encoder (``--cascade_asr DIR``) transcribes, then the LLM answers (``out_dir/asr_text``)

Writes ``out_dir/text`` (Kaldi style, one response per line) and ``out_dir/cmd``.
Resumable: utterances already in ``out_dir/text`` are skipped; ``out_dir/decode_opts.json`` records
the options that decide the responses, and resuming with other ones is refused.
"""

import argparse
import json
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import yaml
from tqdm import tqdm

from espnet_blsp.bin.dump_feats import load_feats
from espnet_blsp.utils.dtype import resolve_device, resolve_dtype_name
from espnet_blsp.utils.checkpoint import CheckpointError, load_trainer_checkpoint, load_weights, reporter_globals
from espnet_blsp.utils.resumable import LineAppender, recover_lines

# Instruction of each task (BLSP paper, Table 11; continuation from Table 1).
TASKS = {
    "asr": "Please repeat the following words.",
    "continuation": (
        "Continue the following text in a coherent and engaging style with less than 40 words."
    ),
    "st": "Please translate the following English text into {target} text.",
    "snips": (
        "Please classify the intent of the text, choose from [DecreaseBrightness, "
        "IncreaseBrightness, SetLightBrightness, SetLightColor, SwitchLightOff, SwitchLightOn]."
    ),
    "fsc": (
        "Please classify the intent of the text, choose from [bring newspaper, deactivate lamp, "
        "change language English, deactivate music, increase heat, change language Korean, "
        "change language none, bring shoes, change language German, activate lights, "
        "bring socks, change language Chinese, decrease heat, decrease volume, increase volume, "
        "activate music, activate lamp, bring juice]."
    ),
    "slue": (
        "Please classify the emotional tone of the text as either positive, negative, or neutral."
    ),
    "qa": None,  # per-utterance question from data_dir/question
}
# classes besides tensors and plain values that DeepSpeed's model states may hold (ESPnet's
# reporter stats); anything else is refused instead of unpickled
DEEPSPEED_SAFE_GLOBALS = reporter_globals()
LANGS = {"de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "nl": "Dutch",
         "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "ca": "Catalan",
         "id": "Indonesian", "ja": "Japanese", "sl": "Slovenian", "sv": "Swedish",
         "zh": "Chinese", "en": "English"}


def read_kv(path) -> Dict[str, str]:
    from espnet_blsp.data.kaldi_dir import read_kv as _read_kv

    return _read_kv(Path(path))


def instructions_for(task: str, data_dir: Path, keys: List[str], target_lang: Optional[str]) -> Dict[str, str]:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(TASKS)}")
    if task == "qa":
        questions = read_kv(data_dir / "question")
        lost = [k for k in keys if k not in questions]
        if lost:
            raise ValueError(f"{data_dir / 'question'} lacks {lost[:5]}")
        return {k: questions[k] for k in keys}
    text = TASKS[task]
    if task == "st":
        if not target_lang:
            raise ValueError("--task st needs --target_lang (e.g. de)")
        text = text.format(target=LANGS.get(target_lang, target_lang))
    return {k: text for k in keys}


def deepspeed_epoch_checkpoints(exp_dir: Path) -> Dict[int, Path]:
    """{epoch: ``checkpoint_<e>/<e>/mp_rank_00_model_states.pt``} left by ESPnet's DeepSpeed
    trainer (which writes these instead of ``<e>epoch.pth`` and keeps every epoch)."""
    found = {}
    for p in Path(exp_dir).glob("checkpoint_*/*/mp_rank_00_model_states.pt"):
        epoch = p.parent.parent.name[len("checkpoint_"):]
        if epoch.isdecimal() and p.parent.name == epoch:
            found[int(epoch)] = p
    return found


def epoch_checkpoints(exp_dir: Path) -> Dict[int, Path]:
    """{epoch: checkpoint} of every epoch whose model is still on disk, in epoch order.

    ESPnet's trainer writes ``<e>epoch.pth`` each epoch and deletes those that are not among
    the ``--keep_nbest_models`` best (by ``best_model_criterion``) once a later epoch is saved,
    so all of them are left only with ``--keep_nbest_models`` >= ``max_epoch``. DeepSpeed's
    ``checkpoint_<e>/`` dirs are all kept; an epoch with both takes the ``.pth``.
    """
    found = deepspeed_epoch_checkpoints(exp_dir)
    for p in Path(exp_dir).glob("*epoch.pth"):
        epoch = p.name[: -len("epoch.pth")]
        if epoch.isdecimal() and p.is_file():
            found[int(epoch)] = p
    return dict(sorted(found.items()))


def load_reporter(path: Path):
    """ESPnet's ``Reporter`` (per-epoch train/valid stats) saved in a trainer checkpoint:
    ``checkpoint.pth`` or DeepSpeed's ``mp_rank_00_model_states.pt``; None if it holds none."""
    from espnet2.train.reporter import Reporter

    if path.name == "checkpoint.pth":
        state = load_trainer_checkpoint(path)
    else:  # weights only: the DeepSpeed states hold tensors, plain values and the stats' timedeltas
        state = load_weights(path, allow=DEEPSPEED_SAFE_GLOBALS)
    if not state.get("reporter"):
        return None
    reporter = Reporter()
    reporter.load_state_dict(state["reporter"])
    return reporter


def _deepspeed_checkpoint(exp_dir: Path) -> Optional[Path]:
    """The best epoch's model states left by ESPnet's DeepSpeed trainer, or None.

    That trainer writes ``checkpoint_<e>/<e>/mp_rank_00_model_states.pt`` instead of
    ``<e>epoch.pth``, so ESPnet's ``valid.loss.best.pth`` is never made and a 1-best
    ``*.ave.pth`` link dangles. The epoch with the lowest valid loss (else the highest valid
    acc, else the last) is read from the reporter saved in the last checkpoint.
    """
    found = deepspeed_epoch_checkpoints(exp_dir)
    if not found:
        return None
    last = found[max(found)]
    reporter = load_reporter(last)
    if reporter is not None:
        for phase, key, mode in (("valid", "loss", "min"), ("valid", "acc", "max")):
            if reporter.has(phase, key):
                for epoch, _ in reporter.sort_epochs_and_values(phase, key, mode):
                    if epoch in found:
                        return found[epoch]
    return last


def find_checkpoint(exp_dir: Path, name: Optional[str]) -> Path:
    """``exp_dir/name``, else the first of ESPnet's usual model files that exists (a
    dangling link does not), else the best DeepSpeed checkpoint. An exp dir trained first
    without and then with DeepSpeed keeps the older ``.pth`` files: pass ``--checkpoint``."""
    candidates = [name] if name else ["valid.loss.best.pth", "valid.acc.best.pth", "latest.pth", "valid.loss.ave.pth"]
    for c in candidates:
        p = exp_dir / c
        if p.exists():
            return p
    ds = None if name else _deepspeed_checkpoint(exp_dir)
    if ds is not None:
        return ds
    raise FileNotFoundError(f"no checkpoint {candidates} (nor DeepSpeed checkpoint_<epoch>/) in {exp_dir}")


def load_trainable_state(path: Path) -> Dict[str, torch.Tensor]:
    """The trainable weights in an ESPnet ``.pth`` or a DeepSpeed ``mp_rank_00_model_states.pt``
    (loaded weights only); a missing or unreadable file is a CheckpointError naming it."""
    state = load_weights(path, allow=DEEPSPEED_SAFE_GLOBALS)
    if isinstance(state.get("module"), dict):  # DeepSpeed: the model's state_dict under "module"
        state = state["module"]
    return state


def load_config(exp_dir: Path) -> dict:
    """The training config ESPnet wrote to ``exp_dir/config.yaml`` (every option, resolved)."""
    config_path = Path(exp_dir) / "config.yaml"
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} not found: train the model (stage 4) first")
    with open(config_path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def model_from_config(cfg: dict, speech_encoder: Optional[str] = None, llm: Optional[str] = None):
    """BLSPModel of a training config (``exp_dir/config.yaml``), its trainable weights at their
    seeded random init; ``speech_encoder`` / ``llm`` replace the recorded checkpoint paths."""
    from espnet_blsp.tasks.blsp import build_blsp_model

    enc_conf, llm_conf = dict(cfg["speech_encoder_conf"]), dict(cfg["llm_conf"])
    if speech_encoder is not None:
        enc_conf["model_name_or_path"] = str(speech_encoder)
    if llm is not None:
        llm_conf["model_name_or_path"] = str(llm)
    torch.manual_seed(cfg.get("seed", 0))
    return build_blsp_model(enc_conf, cfg["speech_adapter"], cfg["speech_adapter_conf"], llm_conf, cfg["model_conf"])


def build_model(exp_dir: Path, device: torch.device, checkpoint: Optional[str], load: bool):
    """The model of ``exp_dir/config.yaml`` in eval mode; with ``load``, the trainable weights
    of ``find_checkpoint(exp_dir, checkpoint)``, else the adapter at its seeded random init."""
    cfg = load_config(exp_dir)
    # auto (the mini configs) is resolved for the device of this decode, not the trainer's
    cfg["llm_conf"] = dict(cfg["llm_conf"], dtype=resolve_dtype_name(cfg["llm_conf"].get("dtype", "auto"), device))
    model = model_from_config(cfg)
    if load:
        ckpt = find_checkpoint(exp_dir, checkpoint)
        logging.info(f"loading {ckpt}")
        try:
            model.load_state_dict(load_trainable_state(ckpt))
        except CheckpointError as e:
            raise SystemExit(str(e)) from None
    return model.to(device).eval()


def prefix_tensors(llm, instructions: Dict[str, str], device) -> Dict[str, torch.Tensor]:
    """{utt: token ids of the prompt up to the input} for per-utterance instructions."""
    return {k: torch.tensor(llm.template.prefix_ids(v), device=device) for k, v in instructions.items()}


def batches(keys: List[str], lengths: Dict[str, int], batch_size: int):
    keys = sorted(keys, key=lambda k: -lengths[k])
    for i in range(0, len(keys), batch_size):
        yield keys[i : i + batch_size]


def decode_speech(model, keys, feats_scp, prefixes, args, writer, device) -> None:
    """Decode ``keys`` from their features, longest first in batches of ``args.batch_size``
    (``args.max_new_tokens``, ``args.beam_size``, ``args.repetition_penalty``); ``writer.write`` gets each batch's
    ``(utt, response)`` pairs (a ``LineAppender``, or anything with that method)."""
    llm = model.llm
    suffix = torch.tensor(llm.template.suffix_ids(), device=device)
    lengths = {k: load_feats(feats_scp[k], k).shape[0] for k in keys}
    for batch in tqdm(list(batches(keys, lengths, args.batch_size)), desc="decode", mininterval=5):
        mats = [torch.from_numpy(load_feats(feats_scp[k], k).copy()) for k in batch]
        lens = torch.tensor([m.shape[0] for m in mats], device=device)
        speech = torch.nn.utils.rnn.pad_sequence(mats, batch_first=True).to(device)
        hyps = model.generate(
            speech, lens, [prefixes[k] for k in batch], [suffix] * len(batch), utt_id=batch,
            max_new_tokens=args.max_new_tokens, num_beams=args.beam_size,
            repetition_penalty=args.repetition_penalty,
        )
        writer.write((k, llm.tokenizer.decode(h, skip_special_tokens=True)) for k, h in zip(batch, hyps))


def decode_text(llm, keys, texts, prefixes, args, writer, device) -> None:
    suffix = torch.tensor(llm.template.suffix_ids(), device=device)
    ids = {k: llm.template.text_ids(texts[k]) for k in keys}
    for batch in tqdm(list(batches(keys, {k: len(v) for k, v in ids.items()}, args.batch_size)), desc="decode", mininterval=5):
        hyps = llm.generate(
            [prefixes[k] for k in batch], [torch.tensor(ids[k], device=device) for k in batch],
            [suffix] * len(batch), middle_is_speech=False,
            max_new_tokens=args.max_new_tokens, num_beams=args.beam_size,
            repetition_penalty=args.repetition_penalty,
        )
        writer.write((k, llm.tokenizer.decode(h, skip_special_tokens=True)) for k, h in zip(batch, hyps))


def whisper_transcribe(whisper_path: str, wav_dir: Path, keys: List[str], out: Path, args, device) -> Dict[str, str]:
    """Whisper (encoder + decoder) transcripts, resumable in ``out``."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from espnet_blsp.bin.dump_feats import AudioSource

    done = recover_lines(out)
    todo = [k for k in keys if k not in done]
    if todo:
        from espnet_blsp.utils.model_paths import resolve_model_dir

        path = resolve_model_dir(whisper_path, "whisper")  # a dir, or a hub id's cached snapshot
        processor = WhisperProcessor.from_pretrained(path, local_files_only=True)
        model = WhisperForConditionalGeneration.from_pretrained(path, local_files_only=True).to(device).eval()
        source = AudioSource(wav_dir)
        is_multilingual = bool(getattr(model.generation_config, "is_multilingual", False))
        kwargs = dict(language="en", task="transcribe") if is_multilingual else {}
        with LineAppender(out) as w:
            for i in tqdm(range(0, len(todo), args.batch_size), desc="whisper", mininterval=5):
                batch = todo[i : i + args.batch_size]
                audio = [source(k) for k in batch]
                feats = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
                with torch.no_grad():
                    out_ids = model.generate(feats.to(device), max_new_tokens=200, **kwargs)
                texts = processor.batch_decode(out_ids, skip_special_tokens=True)
                w.write(zip(batch, (t.strip() for t in texts)))
        done = recover_lines(out)
    return {k: done[k] for k in keys}


def cascade_transcribe(model, cascade, feats_scp, keys: List[str], out: Path, args) -> Dict[str, str]:
    """The CTC+LLM cascade's transcripts (``bin/cascade_asr``), resumable in ``out``."""
    done = recover_lines(out)
    todo = [k for k in keys if k not in done]
    with LineAppender(out) as w:
        for i in tqdm(range(0, len(todo), args.batch_size), desc="cascade asr", mininterval=5):
            batch = todo[i : i + args.batch_size]
            mats = [torch.from_numpy(load_feats(feats_scp[k], k).copy()) for k in batch]
            w.write(zip(batch, cascade.transcribe(model, mats, args.batch_size, batch)))
    done = recover_lines(out)
    return {k: done[k] for k in keys}


def add_decode_arguments(p: argparse.ArgumentParser, max_new_tokens: int = 128, batch_help: str = None) -> None:
    """The decode-config options (``conf/decode.yaml`` keys): run.sh passes the same config to
    this script, ``bin/learning_curve`` and ``bin/asr_probe``, and check_config checks its keys
    against this parser, so all three take them from here."""
    p.add_argument("--batch_size", type=int, default=8, help=batch_help)
    p.add_argument("--beam_size", type=int, default=1)
    p.add_argument("--max_new_tokens", type=int, default=max_new_tokens)
    p.add_argument("--repetition_penalty", type=float, default=1.0,
                   help="CTRL penalty on tokens already generated (1.0: off; HF semantics)")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True, nargs="+", help="dump/<set> dirs with feats.scp and text")
    p.add_argument("--out_dir", required=True,
                   help="output dir; with several tasks or data dirs, a pattern with {task} and {dset} "
                   "(the data dir's name)")
    p.add_argument("--task", default=["asr"], nargs="+", help="one or more of " + "|".join(TASKS))
    p.add_argument("--mode", default="speech", choices=["speech", "untrained", "text", "whisper", "cascade"])
    p.add_argument("--exp_dir", help="training dir (config.yaml + checkpoints); speech/untrained/text modes")
    p.add_argument("--checkpoint", default=None, help="file name inside exp_dir")
    p.add_argument("--llm", help="LLM dir for text/whisper modes (default: from exp_dir config)")
    p.add_argument("--whisper", help="Whisper checkpoint (encoder+decoder) for --mode whisper")
    p.add_argument("--cascade_asr", help="dir of bin/cascade_asr (model.pt) for --mode cascade")
    p.add_argument("--wav_data_dir", nargs="+",
                   help="data/<set> dirs with wav.scp for --mode whisper, one per --data_dir")
    p.add_argument("--target_lang", default=None)
    add_decode_arguments(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None, help="LLM dtype for text/whisper modes (default: the experiment's llm_conf.dtype)")
    p.add_argument("--prompt_template", default="blsp", help="text/whisper modes without --exp_dir")
    return p


def _jobs(args) -> List[Tuple[str, Path, Optional[Path], Path]]:
    """(task, data_dir, wav_data_dir, out_dir) for every task x data dir."""
    data_dirs = [Path(d) for d in args.data_dir]
    wav_dirs = [Path(d) for d in args.wav_data_dir] if args.wav_data_dir else [None] * len(data_dirs)
    if len(wav_dirs) != len(data_dirs):
        raise SystemExit(f"--wav_data_dir needs one dir per --data_dir ({len(wav_dirs)} != {len(data_dirs)})")
    for t in args.task:
        if t not in TASKS:
            raise SystemExit(f"unknown --task {t!r}; choose from {sorted(TASKS)}")
    # each placeholder is needed exactly when its list has more than one value
    if any(n > 1 and key not in args.out_dir for key, n in (("{task}", len(args.task)), ("{dset}", len(data_dirs)))):
        raise SystemExit("with several --task or --data_dir values, --out_dir must be a pattern "
                         "with {task} and {dset}, e.g. 'exp/blsp/decode_{task}_{dset}'")
    return [(t, d, w, Path(args.out_dir.format(task=t, dset=d.name)))
            for t in args.task for d, w in zip(data_dirs, wav_dirs)]


def _load_llm(args, device):
    """The LLM of the text/whisper baselines: the experiment's LLM and prompt template."""
    from espnet_blsp.llm.causal_lm import SpeechLLM

    llm_path, template, dtype = args.llm, args.prompt_template, args.dtype
    if args.exp_dir:
        with open(Path(args.exp_dir) / "config.yaml", encoding="utf-8") as f:
            llm_conf = yaml.safe_load(f)["llm_conf"]
        llm_path = llm_path or llm_conf["model_name_or_path"]
        template = llm_conf.get("prompt_template", template)
        dtype = dtype or llm_conf.get("dtype")
    if not llm_path:
        raise SystemExit(f"--mode {args.mode} needs --llm or --exp_dir")
    dtype = resolve_dtype_name(dtype or "auto", device)
    return SpeechLLM(llm_path, dtype=dtype, prompt_template=template).to(device).eval()


def decode_opts(args) -> Dict[str, object]:
    """What decides the responses of a decode dir (not the batch size): resuming a dir made with
    other values would mix two decodes in one ``text``."""
    return dict(mode=args.mode, checkpoint=args.checkpoint, beam_size=args.beam_size,
                max_new_tokens=args.max_new_tokens, repetition_penalty=args.repetition_penalty,
                target_lang=args.target_lang)


def check_decode_opts(out_dir: Path, opts: Dict[str, object], resuming: bool) -> None:
    """Record ``opts`` in ``out_dir/decode_opts.json``; refuse to resume (or skip as done) a
    dir whose responses were made with other values, naming them."""
    path = out_dir / "decode_opts.json"
    if resuming and path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = {k: (old.get(k), v) for k, v in opts.items() if old.get(k) != v}
        if diff:
            raise SystemExit(
                f"{out_dir}/text was decoded with other options ("
                + ", ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in diff.items())
                + f"); remove {out_dir} to decode it again, or pass another --out_dir"
            )
        return
    if resuming:
        logging.warning(f"{out_dir}/text has responses but no {path.name} (an older version): "
                        "resuming it with this run's options, unchecked")
    path.write_text(json.dumps(opts, sort_keys=True) + "\n", encoding="utf-8")


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    device = resolve_device(args.device)
    if args.mode in ("speech", "untrained") and not args.exp_dir:
        raise SystemExit(f"--mode {args.mode} needs --exp_dir")
    if args.mode == "whisper" and not (args.whisper and args.wav_data_dir):
        raise SystemExit("--mode whisper needs --whisper and --wav_data_dir")
    if args.mode == "cascade" and not (args.cascade_asr and args.exp_dir):
        raise SystemExit("--mode cascade needs --cascade_asr and --exp_dir")
    if args.mode == "cascade" and not (Path(args.cascade_asr) / "model.pt").exists():
        raise SystemExit(f"--cascade_asr {args.cascade_asr} holds no model.pt: train the cascade's ASR model "
                         "first (python -m espnet_blsp.bin.cascade_asr)")
    model = llm = None  # loaded on the first job with work left
    asr_files: Dict[Path, Path] = {}  # Whisper transcripts, made once per data dir
    for task, data_dir, wav_dir, out_dir in _jobs(args):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "cmd").write_text(
            "python -m espnet_blsp.bin.blsp_inference " + shlex.join(cmd if cmd is not None else sys.argv[1:]) + "\n"
        )
        texts = read_kv(data_dir / "text")
        keys = sorted(texts)
        out_path = out_dir / "text"
        done = recover_lines(out_path)
        check_decode_opts(out_dir, decode_opts(args), resuming=bool(done))
        todo = [k for k in keys if k not in done]
        logging.info(f"{args.mode}/{task} on {data_dir}: {len(keys)} utterances, {len(done)} done -> {out_path}")
        if not todo:
            continue
        instr = instructions_for(task, data_dir, todo, args.target_lang)
        if llm is None:
            if args.mode in ("speech", "untrained", "cascade"):
                model = build_model(Path(args.exp_dir), device, args.checkpoint, load=args.mode == "speech")
                llm = model.llm
                if args.mode == "cascade":  # the encoder and the LLM of the experiment, not its adapter
                    from espnet_blsp.bin.cascade_asr import CascadeASR

                    cascade = CascadeASR.load(Path(args.cascade_asr), device)
            else:
                llm = _load_llm(args, device)
        prefixes = prefix_tensors(llm, instr, device)
        t0 = time.time()
        with LineAppender(out_path) as writer:
            if args.mode in ("speech", "untrained"):
                feats_scp = read_kv(data_dir / "feats.scp")
                decode_speech(model, todo, feats_scp, prefixes, args, writer, device)
            elif args.mode == "text":
                decode_text(llm, todo, texts, prefixes, args, writer, device)
            else:
                asr_path = out_dir / "asr_text"
                if data_dir in asr_files and not asr_path.exists():
                    shutil.copyfile(asr_files[data_dir], asr_path)
                if args.mode == "whisper":
                    asr = whisper_transcribe(args.whisper, wav_dir, todo, asr_path, args, device)
                else:
                    asr = cascade_transcribe(model, cascade, read_kv(data_dir / "feats.scp"), todo, asr_path, args)
                asr_files[data_dir] = asr_path
                decode_text(llm, todo, asr, prefixes, args, writer, device)
        logging.info(f"decoded {len(todo)} utterances in {time.time() - t0:.1f} s -> {out_path}")


if __name__ == "__main__":
    main()
