#!/usr/bin/env python3
"""Train BLSP / BLSP-KD with ESPnet's trainer (also ``--collect_stats true``).

Usage:
    python -m espnet_blsp.bin.blsp_train --config conf/train_blsp.yaml \
        --train_data_path_and_name_and_type dump/train/feats.scp,speech,kaldi_ark \
        --train_data_path_and_name_and_type dump/train/text,text,text \
        --train_data_path_and_name_and_type dump/train/response_ids,response_ids,text_int \
        --valid_data_path_and_name_and_type ... --train_shape_file ... \
        --output_dir exp/blsp --ngpu 1

Multi-GPU: ``--ngpu N --multiprocessing_distributed true`` (DDP) or torchrun; DeepSpeed:
``--use_deepspeed true --deepspeed_config ds.json``. Resume: ``--resume true``.
Checkpoints hold only the trainable weights (adapter, Partial LoRA, and the encoder
when it is unfrozen).
"""

from espnet_blsp.tasks.blsp import BLSPTask


def get_parser():
    return BLSPTask.get_parser()


def main(cmd=None):
    BLSPTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
