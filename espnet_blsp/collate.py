"""Collate function of the BLSP task (ESPnet's own one imports g2p_en, which
tries to download NLTK data at import time).

``[(utt_id, {name: (L, ...) ndarray})] -> (utt_ids, {name: (B, L_max, ...), name_lengths: (B,)})``
Float arrays are padded with 0.0 and integer ids with -1; lengths are the true lengths.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch


class BLSPCollateFn:
    def __init__(self, float_pad_value: float = 0.0, int_pad_value: int = -1):
        self.float_pad_value = float_pad_value
        self.int_pad_value = int_pad_value

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(float_pad_value={self.float_pad_value}, "
            f"int_pad_value={self.int_pad_value})"
        )

    def __call__(
        self, data: Sequence[Tuple[str, Dict[str, np.ndarray]]]
    ) -> Tuple[List[str], Dict[str, torch.Tensor]]:
        uttids = [u for u, _ in data]
        names = list(data[0][1])
        for u, d in data:
            if list(d) != names:
                raise ValueError(
                    f"utterance {u} has fields {sorted(d)}, expected {sorted(names)}: "
                    "every data file must list the same utterance ids"
                )
        batch: Dict[str, torch.Tensor] = {}
        for name in names:
            arrays = [d[name] for _, d in data]
            pad = (
                self.int_pad_value
                if arrays[0].dtype.kind in "iu"
                else self.float_pad_value
            )
            lengths = [a.shape[0] for a in arrays]
            shape = (len(arrays), max(lengths)) + arrays[0].shape[1:]
            out = np.full(shape, pad, dtype=arrays[0].dtype)
            for i, a in enumerate(arrays):
                out[i, : a.shape[0]] = a
            batch[name] = torch.from_numpy(out)
            batch[f"{name}_lengths"] = torch.tensor(lengths, dtype=torch.long)
        return uttids, batch
