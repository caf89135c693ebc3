"""Modality adapters, all ``forward(x, x_lens, target_lens=None) -> (y, y_lens, aux)``.

Usage::

    from espnet_blsp.adapters import build_adapter
    adapter = build_adapter("cformer", input_size=1280, output_size=4096)
"""

from espnet_blsp.adapters.cformer import CFormerAdapter
from espnet_blsp.adapters.cnn import CNNAdapter

ADAPTERS = {"cnn": CNNAdapter, "cformer": CFormerAdapter}


def build_adapter(name: str, **conf):
    """Instantiate the adapter registered as ``name`` with its constructor arguments."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r}; valid names: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[name](**conf)
