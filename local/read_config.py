#!/usr/bin/env python3
"""Read one key of a YAML config for run.sh.

Usage:
    python local/read_config.py conf/train_blsp.yaml rp_ratio 0     # value or default
    python local/read_config.py conf/train_blsp.yaml llm_conf.prompt_template blsp
    python local/read_config.py conf/decode.yaml --as_args          # --key value ...
    python local/read_config.py conf/mini/preset_cpu.yaml --as_shell  # key='value' lines (run.sh presets)
"""

import shlex
import sys

import yaml


def main(argv) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    with open(argv[0], encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    if argv[1] == "--as_args":
        print(" ".join(f"--{k} {v}" for k, v in cfg.items()))
        return
    if argv[1] == "--as_shell":
        for k, v in cfg.items():
            if isinstance(v, (dict, list)):
                raise SystemExit(f"{argv[0]}: {k} must be a single value, got {type(v).__name__}")
            v = str(v).lower() if isinstance(v, bool) else " ".join(str(v).split())
            print(f"{k}={shlex.quote(v)}")
        return
    value = cfg
    for part in argv[1].split("."):  # dotted keys: llm_conf.prompt_template
        value = value.get(part) if isinstance(value, dict) else None
    if value is None and len(argv) > 2:
        value = argv[2]
    if value is None:
        raise SystemExit(f"{argv[0]} has no key {argv[1]!r}")
    print(str(value).lower() if isinstance(value, bool) else value)


if __name__ == "__main__":
    main(sys.argv[1:])
