"""A split of a feature store as a ``torch.utils.data.Dataset`` (read into RAM once, float32 tensors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cavnet.extract.store.reader import FeatureStore


class StoreDataset(Dataset):
    """The usable rows of ``split`` (all splits if None; only labelled ones if ``labelled``). Item ``i`` is a
    dict: ``visual`` (n, Dv), ``vmask`` (n,), ``audio`` (m, Da), ``amask`` (m,), ``text`` (Dt,), ``label``
    () and ``row`` (its row in the store); ``ids`` are the video ids. The default collate stacks them."""

    def __init__(self, store: FeatureStore | str | Path, split: str | None = None, labelled: bool = False) -> None:
        own = not isinstance(store, FeatureStore)
        s = FeatureStore(store) if own else store
        try:
            rows = s.rows()
            self.index = rows.select(split, labelled=labelled)
            self.ids = [str(v) for v in rows.ids[self.index]]
            self.class_names = list(s.class_names)
            f = s.read(self.index)
        finally:
            if own:
                s.close()
        self._t = {"visual": torch.from_numpy(f.visual), "vmask": torch.from_numpy(f.vmask),
                   "audio": torch.from_numpy(f.audio), "amask": torch.from_numpy(f.amask),
                   "text": torch.from_numpy(f.text), "label": torch.from_numpy(f.labels),
                   "row": torch.from_numpy(np.asarray(self.index, np.int64))}

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self._t.items()}
