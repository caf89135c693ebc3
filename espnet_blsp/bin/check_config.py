#!/usr/bin/env python3
"""Check a recipe's configs and model paths before any stage runs (run.sh calls this).

Usage:
    python -m espnet_blsp.bin.check_config --train_config conf/train_blsp.yaml --decode_config conf/decode.yaml
    python -m espnet_blsp.bin.check_config --train_config conf/train_blsp.yaml --mark exp/train_blsp/.config_checked
    python -m espnet_blsp.bin.check_config --speech_encoder assets/whisper-base --llm assets/smollm2-135m-instruct
    python -m espnet_blsp.bin.check_config --train_config conf/mini/train_blsp.yaml \
        --pretrain_config conf/mini/train_adapter_ctc.yaml

Training config: every top-level key must be an option of ``BLSPTask.get_parser()`` (the
ESPnet trainer's options plus the task's, among them the recipe keys run.sh reads:
``use_responses``, ``rp_ratio``, ``llm_conf.prompt_template``, ``llm_conf.dtype``), every
class choice (``speech_adapter``, ``optim``, ``scheduler``) a registered name, and every key
of a nested ``*_conf`` an argument of the constructor it is passed to (``CONF_TARGETS``),
recursively for ``llm_conf.lora_conf``. Decode config: every key an option of
``blsp_inference``. Pretraining config (run.sh ``--pretrain_config``): a training config
too, trained on the transcripts alone (``use_responses: false``), whose adapter has the
architecture of the training config's, so that its checkpoint initialises it
(``--init_param``; ESPnet would skip every mismatched tensor with a warning). Model paths: see ``espnet_blsp.utils.model_paths``.

Each problem is one line on stderr, e.g.::

    unknown key 'bottleneck_dm' in speech_adapter_conf of conf/x.yaml (did you mean 'bottleneck_dim'?)

and the exit status is 1 when there is any. With ``--mark FILE`` a passed check is recorded
(the configs by content, the espnet_blsp sources and the espnet version), and the check is
skipped while that record holds: importing ESPnet's task takes 5-20 s, on every run.sh call.
"""

import argparse
import difflib
import inspect
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import yaml


def suggest(key: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def constructor_args(fn: Callable, skip: Iterable[str] = ()) -> Optional[List[str]]:
    """Keyword arguments a config may give ``fn`` (a class or function); None when it
    takes ``**kwargs`` (then any key is accepted)."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    params = inspect.signature(target).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    skip = set(skip) | {"self"}
    return [p.name for p in params if p.name not in skip and p.kind is not inspect.Parameter.VAR_POSITIONAL]


def conf_targets(config: dict) -> Dict[str, Tuple[Callable, Tuple[str, ...]]]:
    """``*_conf`` section -> (the constructor it is passed to, arguments filled in by code).

    The choice-dependent ones (speech_adapter_conf, optim_conf, scheduler_conf) follow the
    config's choice (or the task's default); an unknown choice is reported separately.
    """
    from espnet2.tasks.abs_task import optim_classes, scheduler_classes

    from espnet_blsp.encoders.whisper import WhisperSpeechEncoder
    from espnet_blsp.espnet_model import BLSPModel
    from espnet_blsp.llm.causal_lm import SpeechLLM
    from espnet_blsp.llm.partial_lora import inject_partial_lora
    from espnet_blsp.tasks.blsp import speech_adapter_choices

    targets: Dict[str, Tuple[Callable, Tuple[str, ...]]] = {
        "speech_encoder_conf": (WhisperSpeechEncoder, ()),
        "llm_conf": (SpeechLLM, ()),
        "llm_conf.lora_conf": (inject_partial_lora, ("model",)),
        "model_conf": (BLSPModel, ("encoder", "adapter", "llm")),
    }
    adapter = config.get("speech_adapter") or speech_adapter_choices.default
    if adapter in speech_adapter_choices.classes:
        targets["speech_adapter_conf"] = (speech_adapter_choices.classes[adapter], ("input_size", "output_size"))
    optim = str(config.get("optim") or "adadelta").lower()
    if optim in optim_classes:
        targets["optim_conf"] = (optim_classes[optim], ("params",))
    scheduler = config.get("scheduler")
    if scheduler and str(scheduler).lower() in scheduler_classes:
        targets["scheduler_conf"] = (scheduler_classes[str(scheduler).lower()], ("optimizer",))
    return targets


# keys a section accepts beyond its constructor's arguments (build_blsp_model pops them first)
EXTRA_KEYS = {"speech_encoder_conf": ("dtype",)}


def check_section(name: str, conf, target: Tuple[Callable, Tuple[str, ...]], path: str,
                  targets: Dict[str, Tuple[Callable, Tuple[str, ...]]]) -> List[str]:
    """Problems of one ``*_conf`` dict, recursing into nested sections with a target."""
    if conf is None:
        return []
    if not isinstance(conf, dict):
        return [f"{name} of {path} must be a mapping of key: value, got {type(conf).__name__}"]
    known = constructor_args(*target)
    if known is None:
        return []
    known = known + list(EXTRA_KEYS.get(name, ()))
    problems = [f"unknown key '{k}' in {name} of {path}{suggest(str(k), known)}" for k in conf if k not in known]
    for k, v in conf.items():
        sub = f"{name}.{k}"
        if sub in targets and k in known:
            problems += check_section(sub, v, targets[sub], path, targets)
    return problems


def check_train_config(path: str) -> List[str]:
    """Problems of a training config: unknown keys, unknown class choices, nested typos."""
    from espnet2.tasks.abs_task import optim_classes, scheduler_classes

    from espnet_blsp.tasks.blsp import BLSPTask, speech_adapter_choices

    config = _load_yaml(path)
    if isinstance(config, str):
        return [config]
    options = {a.dest for a in BLSPTask.get_parser()._actions if a.dest != "help"}
    problems = [f"unknown key '{k}' in {path}{suggest(str(k), options)}" for k in config if k not in options]
    choices = {"speech_adapter": list(speech_adapter_choices.classes), "optim": list(optim_classes),
               "scheduler": list(scheduler_classes)}
    for key, names in choices.items():
        value = config.get(key)
        if value is not None and str(value).lower() not in names:
            problems.append(f"unknown {key} '{value}' in {path}{suggest(str(value).lower(), names)} "
                            f"(choose from {', '.join(names)})")
    targets = conf_targets(config)
    for name, target in targets.items():
        if "." not in name and name in config:
            problems += check_section(name, config[name], target, path, targets)
    return problems


def check_decode_config(path: str) -> List[str]:
    """Problems of a decode config: every key must be an option of blsp_inference."""
    from espnet_blsp.bin.blsp_inference import get_parser

    config = _load_yaml(path)
    if isinstance(config, str):
        return [config]
    options = {a.dest for a in get_parser()._actions if a.dest != "help"}
    return [f"unknown key '{k}' in {path}{suggest(str(k), options)}" for k in config if k not in options]


def adapter_shapes(config: dict) -> Dict[str, Tuple[int, ...]]:
    """Parameter name -> shape of the config's adapter, built on small stand-in sizes (the
    encoder and LLM sizes are the same for every config of one run)."""
    from espnet_blsp.tasks.blsp import speech_adapter_choices

    cls = speech_adapter_choices.classes[str(config.get("speech_adapter") or speech_adapter_choices.default).lower()]
    adapter = cls(input_size=16, output_size=16, **(config.get("speech_adapter_conf") or {}))
    return {k: tuple(v.shape) for k, v in adapter.state_dict().items()}


def check_pretrain_config(path: str, train_config: str) -> List[str]:
    """Problems of a pretraining config (run.sh --pretrain_config) beside ``train_config``:
    its own key problems, responses it would need (it has no stage 3), and an adapter whose
    checkpoint could not initialise the training config's (other parameters or shapes)."""
    problems = check_train_config(path)
    pre, main = _load_yaml(path), _load_yaml(train_config)
    if problems or isinstance(pre, str) or isinstance(main, str):
        return problems
    if pre.get("use_responses", True) is not False:
        problems.append(f"{path} is a pretraining config, so it trains on the transcripts alone: it needs "
                        f"'use_responses: false' (stage 3 makes responses for {train_config} only)")
    try:
        same = adapter_shapes(pre) == adapter_shapes(main)
    except Exception as e:  # a bad adapter setting: say which config, not where in torch
        return problems + [f"cannot build the adapters of {path} and {train_config}: {e}"]
    if not same:
        describe = lambda c: f"{c.get('speech_adapter') or 'cnn'} {c.get('speech_adapter_conf') or {}}"  # noqa: E731
        problems.append(f"the adapter of {path} ({describe(pre)}) has other parameters than that of {train_config} "
                        f"({describe(main)}): its checkpoint cannot initialise the training")
    return problems


def _load_yaml(path: str):
    """The config as a dict, or a one-line problem (str) naming the file."""
    p = Path(path)
    if not p.is_file():
        return f"config not found: {path}"
    try:
        config = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        return f"{path} is not valid YAML: {' '.join(str(e).split())}"
    if not isinstance(config, dict):
        return f"{path} must be a mapping of key: value, got {type(config).__name__}"
    return config


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_config", help="training config (YAML)")
    p.add_argument("--decode_config", help="decode config (YAML: blsp_inference options)")
    p.add_argument("--pretrain_config", help="pretraining config whose best checkpoint initialises --train_config")
    p.add_argument("--speech_encoder", help="Whisper checkpoint dir or cached hub id")
    p.add_argument("--llm", help="causal-LM checkpoint dir or cached hub id (with its tokenizer)")
    p.add_argument("--mark", help="record of a passed config check; skip the check while it holds")
    return p


def config_mark(args) -> dict:
    """What a config check depends on: the configs' content, this package's sources, espnet."""
    from importlib.metadata import version

    import espnet_blsp
    from espnet_blsp.utils.stage_marks import describe

    files = [f for f in (args.train_config, args.decode_config, args.pretrain_config) if f]
    return describe([f"espnet={version('espnet')}"], files=files, trees=[str(Path(espnet_blsp.__file__).parent)])


def main(argv=None) -> None:
    from espnet_blsp.utils.model_paths import check_model_path

    from espnet_blsp.utils.stage_marks import changes, read_mark, write_mark

    args = get_parser().parse_args(argv)
    mark = config_mark(args) if args.mark else None
    if mark is not None and not changes(read_mark(args.mark), mark):
        args.train_config = args.decode_config = args.pretrain_config = None  # checked before, nothing changed since
    problems: List[str] = []
    if args.pretrain_config:
        if not args.train_config:
            sys.exit("--pretrain_config needs --train_config (the config it initialises)")
        problems += check_pretrain_config(args.pretrain_config, args.train_config)
    if args.train_config:
        problems += check_train_config(args.train_config)
    if args.decode_config:
        problems += check_decode_config(args.decode_config)
    if args.speech_encoder:
        problems += check_model_path(args.speech_encoder, "speech_encoder")
    if args.llm:
        problems += check_model_path(args.llm, "llm")
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        sys.exit(1)
    if mark is not None:
        write_mark(args.mark, mark)


if __name__ == "__main__":
    main()
