"""BLSPTask: the BLSP / BLSP-KD model as an ESPnet2 task.

Data names (``--train_data_path_and_name_and_type path,name,type``)::

    speech       kaldi_ark   dump/<set>/feats.scp        log-mel (T, n_mels) or encoder outputs
    text         text        dump/<set>/text             prompt-normalised transcript
    response_ids text_int    dump/<set>/response_ids     response token ids (optional; stage 3)
    response     text        dump/<set>/response         response text, tokenised when there is
                                                         no response_ids (optional)
    instruction  text        dump/<set>/instruction      per-utterance instruction (optional)

Config keys (YAML mirrors the constructors)::

    speech_encoder_conf: {model_name_or_path, freeze, dtype}
    speech_adapter: cnn | cformer        speech_adapter_conf: {...}
    llm_conf: {model_name_or_path, dtype, attn_implementation, prompt_template,
               lora_conf: {r, alpha, dropout, target_modules}, gradient_checkpointing}
    model_conf: {ce_weight, kl_resp_weight, kl_input_weight, cif_weight, temperature, ...}
"""

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import espnet2.main_funcs.average_nbest_models
import espnet2.train.trainer
import numpy as np
import torch
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.class_choices import ClassChoices
from espnet2.train.trainer import Trainer
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str2bool, str_or_none

from espnet_blsp.adapters import CFormerAdapter, CNNAdapter
from espnet_blsp.collate import BLSPCollateFn
from espnet_blsp.espnet_model import BLSPModel
from espnet_blsp.preprocess import build_preprocessor
from espnet_blsp.utils.checkpoint import atomic_save, repair_experiment
from espnet_blsp.utils.dtype import torch_dtype
from espnet_blsp.utils.resumable import threads_per_job

# ``--adapter`` belongs to ESPnet's own LoRA/Houlsby options, hence ``speech_adapter``.
speech_adapter_choices = ClassChoices(
    name="speech_adapter",
    classes=dict(cnn=CNNAdapter, cformer=CFormerAdapter),
    default="cnn",
)

# YAML 1.1 (PyYAML, hence ESPnet's configs and --*_conf key=value options) reads a number in
# exponent form without a dot, e.g. 2e-3, as a string; torch's optimizers then fail deep inside
_EXP_FLOAT = re.compile(r"^[+-]?\d+[eE][+-]?\d+$")


def coerce_exponent_floats(value, where: str = ""):
    """Turn the strings YAML left of exponent-form numbers (``"2e-3"``) into floats, recursively
    through dicts and lists; every other value is returned unchanged. Logs each conversion."""
    if isinstance(value, dict):
        return {k: coerce_exponent_floats(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_exponent_floats(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and _EXP_FLOAT.match(value.strip()):
        logging.info(f"{where}: read {value!r} as the number {float(value)!r} (YAML 1.1 reads 2e-3 as a string)")
        return float(value)
    return value


class _TorchWithAtomicSave:
    """``torch`` as ESPnet's trainer modules see it inside :class:`BLSPTrainer`: every
    attribute is torch's own, except ``save``, which is :func:`atomic_save`."""

    def __getattr__(self, name):
        return atomic_save if name == "save" else getattr(torch, name)


@contextlib.contextmanager
def atomic_espnet_saves():
    """Within this block, the checkpoints ESPnet's Trainer.run and average_nbest_models
    write (checkpoint.pth, <N>epoch.pth, *.ave_*.pth) are complete or absent."""
    modules = (espnet2.train.trainer, espnet2.main_funcs.average_nbest_models)
    saved = [m.torch for m in modules]
    for m in modules:
        m.torch = _TorchWithAtomicSave()
    try:
        yield
    finally:
        for m, t in zip(modules, saved):
            m.torch = t


class BLSPTrainer(Trainer):
    """ESPnet's Trainer whose checkpoints are written atomically, and which repairs the
    experiment dir (``repair_experiment``) before it resumes."""

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        if trainer_options.resume:
            if not distributed_option.distributed or distributed_option.dist_rank == 0:
                repair_experiment(trainer_options.output_dir, trainer_options.best_model_criterion)
            if distributed_option.distributed:
                torch.distributed.barrier()  # the other ranks resume from the repaired dir
        with atomic_espnet_saves():
            super().run(
                model=model, optimizers=optimizers, schedulers=schedulers,
                train_iter_factory=train_iter_factory, valid_iter_factory=valid_iter_factory,
                plot_attention_iter_factory=plot_attention_iter_factory,
                trainer_options=trainer_options, distributed_option=distributed_option,
            )


class BLSPTask(AbsTask):
    num_optimizers: int = 1
    class_choices_list = [speech_adapter_choices]
    trainer = BLSPTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="BLSP task related")
        group.add_argument(
            "--speech_encoder_conf",
            action=NestedDictAction,
            default=dict(model_name_or_path=None, freeze=True, dtype="float32"),
            help="Whisper encoder: model_name_or_path, freeze, dtype",
        )
        group.add_argument(
            "--llm_conf",
            action=NestedDictAction,
            default=dict(
                model_name_or_path=None,
                dtype="auto",
                attn_implementation="sdpa",
                prompt_template="blsp",
                lora_conf=None,
                gradient_checkpointing=False,
            ),
            help="LLM: model_name_or_path, dtype, attn_implementation, "
            "prompt_template (blsp|chat), lora_conf (Partial LoRA), gradient_checkpointing",
        )
        group.add_argument(
            "--model_conf",
            action=NestedDictAction,
            default=get_default_kwargs(BLSPModel),
            help="BLSPModel arguments: loss weights, temperature, ...",
        )
        group.add_argument(
            "--default_instruction",
            type=str_or_none,
            default=None,
            help="instruction for utterances without an 'instruction' entry "
            "(default: the BLSP continuation instruction)",
        )
        group.add_argument(
            "--response_from_text",
            type=str2bool,
            default=False,
            help="the transcript is every utterance's response, under --default_instruction "
            "(ASR pretraining, BLSP Sec. 2 / Appendix A; conf/train_asr_pretrain.yaml)",
        )
        group.add_argument(
            "--use_responses",
            type=str2bool,
            default=True,
            help="recipe: train on stage-3 responses (false: ASR data only, "
            "BLSP-KD variant 4); kept in config.yaml for reproducibility",
        )
        group.add_argument(
            "--rp_ratio",
            type=str,
            default="0",
            help="recipe: repetition:continuation mixing ratio of stage 3, e.g. 1:9",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        return BLSPCollateFn(float_pad_value=0.0, int_pad_value=-1)

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]]:
        return build_preprocessor(args.llm_conf, args.default_instruction, args.response_from_text)

    @classmethod
    def required_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("speech",) if inference else ("speech", "text")

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        if inference:
            return ("text", "instruction")
        return ("response_ids", "response", "instruction")

    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None, cmd: Optional[List[str]] = None):
        if args is None:
            args = cls.get_parser().parse_args(cmd)
        for name, value in vars(args).items():  # optim_conf, scheduler_conf, model_conf, ...
            if name.endswith("_conf") and isinstance(value, dict):
                setattr(args, name, coerce_exponent_floats(value, name))
        if args.use_deepspeed and not (args.collect_stats or args.print_config):
            check_deepspeed_args(args)
            cls.trainer = Trainer  # ESPnet swaps in its DeepSpeedTrainer only for its own Trainer
        super().main(args=args)

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> BLSPModel:
        return build_blsp_model(
            args.speech_encoder_conf,
            args.speech_adapter,
            args.speech_adapter_conf,
            args.llm_conf,
            args.model_conf,
        )


def check_deepspeed_args(args: argparse.Namespace) -> None:
    """Fail early, with the fix, where ESPnet's DeepSpeed trainer would fail deep inside."""
    try:
        import deepspeed  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"--use_deepspeed true needs the deepspeed package ({e}): pip install -e '.[deepspeed]'")
    path = args.deepspeed_config
    if not path or not Path(path).is_file():
        raise SystemExit(f"--use_deepspeed true needs --deepspeed_config FILE.json (got {path!r}); "
                         "e.g. conf/deepspeed/zero2_bf16.json")
    try:
        json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise SystemExit(f"--deepspeed_config {path} is not valid JSON: {e}")
    world = os.environ.get("WORLD_SIZE", "")  # set by torchrun
    if not (args.ngpu > 1 or args.dist_launcher or (world.isdecimal() and int(world) > 1)):
        # ESPnet would only warn and train with its own trainer, ignoring the JSON
        raise SystemExit("--use_deepspeed true needs distributed training: --ngpu > 1, torchrun, "
                         f"or --dist_launcher (got --ngpu {args.ngpu}); drop --use_deepspeed for one GPU")
    if not torch.cuda.is_available():
        raise SystemExit("--use_deepspeed true: ESPnet's DeepSpeed trainer runs on CUDA GPUs only "
                         "(it moves every batch with .cuda()); drop --use_deepspeed to train on CPU")
    if not os.environ.get("OMP_NUM_THREADS", "").isdecimal():
        # ESPnet's init_deepspeed reads int(os.environ["OMP_NUM_THREADS"]) (a KeyError when unset)
        threads = threads_per_job(max(1, args.ngpu))
        print(f"DeepSpeed: OMP_NUM_THREADS is {os.environ.get('OMP_NUM_THREADS')!r}; using {threads} "
              "(CPU cores / --ngpu)", file=sys.stderr)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    print("DeepSpeed: the optimizer, scheduler, gradient accumulation and clipping come from "
          f"{path}; --optim, --scheduler, --accum_grad and --grad_clip are ignored", file=sys.stderr)


def build_blsp_model(
    speech_encoder_conf: Dict,
    speech_adapter: str,
    speech_adapter_conf: Dict,
    llm_conf: Dict,
    model_conf: Dict,
) -> BLSPModel:
    """Build BLSPModel from the four config sections (also used by inference)."""
    from espnet_blsp.encoders.whisper import WhisperSpeechEncoder
    from espnet_blsp.llm.causal_lm import SpeechLLM

    for section, conf in (("speech_encoder_conf", speech_encoder_conf), ("llm_conf", llm_conf)):
        if not conf.get("model_name_or_path"):
            raise ValueError(f"{section}.model_name_or_path is required")

    # 1. speech encoder (frozen unless freeze: false, variants 6 and 7)
    enc_conf = dict(speech_encoder_conf)
    enc_dtype = torch_dtype(enc_conf.pop("dtype", "float32"), what="speech encoder dtype", allow_auto=False)
    encoder = WhisperSpeechEncoder(**enc_conf)
    if enc_conf.get("freeze", True):
        encoder.to(dtype=enc_dtype)

    # 2. LLM (frozen) + optional Partial LoRA
    llm = SpeechLLM(**llm_conf)

    # 3. adapter, shaped like the encoder's layers unless configured
    adapter_conf = dict(speech_adapter_conf)
    adapter_class = speech_adapter_choices.get_class(speech_adapter)
    if adapter_class is CFormerAdapter:
        adapter_conf.setdefault("attention_heads", encoder.num_heads)
        adapter_conf.setdefault("linear_units", encoder.ffn_dim)
    adapter = adapter_class(
        input_size=encoder.output_size(), output_size=llm.hidden_size, **adapter_conf
    )

    # 4. model with its losses
    model = BLSPModel(encoder=encoder, adapter=adapter, llm=llm, **model_conf)
    model.log_trainable()
    return model
