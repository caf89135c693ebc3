"""Modality adapters: ``forward(x, x_lens, target_lens=None) -> (y, y_lens, aux)``."""

from espnet_blsp.adapters.cformer import CFormerAdapter
from espnet_blsp.adapters.cnn import CNNAdapter

ADAPTERS = {"cnn": CNNAdapter, "cformer": CFormerAdapter}


def build_adapter(name: str, **conf):
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r}; choose from {sorted(ADAPTERS)}")
    return ADAPTERS[name](**conf)
