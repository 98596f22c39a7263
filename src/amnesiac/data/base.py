"""Datasets that yield ``(x, y, sample_id)``.

Every training record carries a stable integer id (its index in the full training split unless the user
supplies ids), so a deletion request can name it long after training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, RequestError


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: its shape, classes and where it comes from."""

    name: str
    channels: int
    image_size: int
    num_classes: int
    description: str
    source: str = ""
    class_names: tuple[str, ...] = ()


class ArrayDataset(Dataset):
    """An in-memory image dataset with labels and stable sample ids.

    Images are kept in their stored integer form and normalised to [-1, 1] on access (the paper's
    ``Normalize(0.5, 0.5)`` after scaling to [0, 1]). Indexing with an int gives one ``(x, y, id)``;
    indexing with a sequence of positions gives a whole batch at once, which the training loop uses
    to avoid per-sample Python work.

    >>> import torch
    >>> ds = ArrayDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]),
    ...                   max_value=255)
    >>> x, y, i = ds[1]
    >>> x.shape, int(y), int(i), float(x.min())
    (torch.Size([1, 2, 2]), 1, 1, -1.0)
    >>> len(ds.subset([0, 2])), ds.subset([0, 2]).ids.tolist()
    (2, [0, 2])
    """

    _order_cache: tuple[tuple[int, int, int], torch.Tensor, torch.Tensor] | None = None  # see _id_order

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray | Sequence[int],
        ids: torch.Tensor | np.ndarray | Sequence[int] | None = None,
        *,
        max_value: float = 255.0,
        info: DatasetInfo | None = None,
    ) -> None:
        images = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4:
            raise ConfigError(
                f"images must have shape (N, C, H, W) or (N, H, W), got {tuple(images.shape)}"
            )
        if labels.dim() != 1 or labels.numel() != images.shape[0]:
            raise ConfigError(
                f"labels must be a 1-D sequence with one label per image ({images.shape[0]}), "
                f"got shape {tuple(labels.shape)}"
            )
        if ids is None:
            ids_t = torch.arange(images.shape[0], dtype=torch.long)
        else:
            ids_t = torch.as_tensor(np.asarray(ids), dtype=torch.long)
            if ids_t.dim() != 1 or ids_t.numel() != images.shape[0]:
                raise ConfigError(
                    f"ids must give one integer per image ({images.shape[0]}), got shape {tuple(ids_t.shape)}"
                )
            if torch.unique(ids_t).numel() != ids_t.numel():
                raise ConfigError("sample ids must be unique; the ids given contain duplicates")
        if max_value <= 0:
            raise ConfigError(f"max_value must be positive, got {max_value}")
        self.images = images
        self.targets = labels
        self.ids = ids_t
        self.max_value = float(max_value)
        self.info = info

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _normalise(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.to(torch.float32).mul_(2.0 / self.max_value).sub_(1.0)

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if isinstance(index, (int, np.integer)):
            i = int(index)
            return self._normalise(self.images[i]), self.targets[i], self.ids[i]
        idx = torch.as_tensor(index, dtype=torch.long)
        return self._normalise(self.images[idx]), self.targets[idx], self.ids[idx]

    def subset(self, positions: Sequence[int] | torch.Tensor | np.ndarray) -> ArrayDataset:
        """A new dataset holding the given positions, keeping their original ids."""
        pos = torch.as_tensor(np.asarray(positions), dtype=torch.long)
        return ArrayDataset(
            self.images[pos], self.targets[pos], self.ids[pos], max_value=self.max_value, info=self.info
        )

    def positions_of(self, ids: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Positions of the given sample ids; unknown ids raise :class:`RequestError` naming them."""
        wanted = torch.as_tensor(np.asarray(ids), dtype=torch.long).reshape(-1)
        order, sorted_ids = self._id_order()
        where = torch.searchsorted(sorted_ids, wanted).clamp(max=max(len(self) - 1, 0))
        found = sorted_ids[where] == wanted if len(self) else torch.zeros_like(wanted, dtype=torch.bool)
        if not bool(found.all()):
            missing = wanted[~found].tolist()
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise RequestError(
                f"{len(missing)} sample id(s) are not in this dataset: {shown} "
                f"(ids run from {int(self.ids.min()) if len(self) else 0} to {int(self.ids.max()) if len(self) else 0})"
            )
        return order[where]

    def _id_order(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The positions that sort the ids, and the sorted ids: computed once per ids tensor (a service resolves
        every request against the same training set). A dataset's ids are fixed when it is made: every method
        that changes records returns a new dataset."""
        key = (self.ids.data_ptr(), self.ids.numel(), id(self.ids))
        cached = self._order_cache
        if cached is None or cached[0] != key:
            order = torch.argsort(self.ids)
            cached = self._order_cache = (key, order, self.ids[order])
        return cached[1], cached[2]

    def without_ids(self, ids: Sequence[int] | torch.Tensor | np.ndarray) -> ArrayDataset:
        """The dataset minus the given ids (which must all be present)."""
        drop = self.positions_of(ids)
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[drop] = False
        return self.subset(torch.nonzero(keep).flatten())

    def only_ids(self, ids: Sequence[int] | torch.Tensor | np.ndarray) -> ArrayDataset:
        """The dataset restricted to the given ids, in the dataset's own order."""
        pos = torch.sort(self.positions_of(ids)).values
        return self.subset(pos)

    def ids_of_class(self, label: int) -> torch.Tensor:
        """Sample ids of every record with the given label."""
        return self.ids[self.targets == int(label)]

    def with_labels(self, labels: torch.Tensor) -> ArrayDataset:
        """The same images and ids with other labels (used by relabelling)."""
        return ArrayDataset(self.images, labels, self.ids, max_value=self.max_value, info=self.info)

    @staticmethod
    def concat(parts: Sequence[ArrayDataset]) -> ArrayDataset:
        """Join datasets of the same image shape; ids must stay unique."""
        if not parts:
            raise ConfigError("concat needs at least one dataset")
        first = parts[0]
        return ArrayDataset(
            torch.cat([p.images for p in parts]),
            torch.cat([p.targets for p in parts]),
            torch.cat([p.ids for p in parts]),
            max_value=first.max_value,
            info=first.info,
        )


class WithIds(Dataset):
    """Wrap any ``(x, y)`` dataset so it yields ``(x, y, sample_id)``.

    ``ids`` defaults to the index in the wrapped dataset; a user may give their own stable ids (for
    example database primary keys), one per item, all distinct.

    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> base = TensorDataset(torch.randn(3, 2), torch.tensor([0, 1, 1]))
    >>> ds = WithIds(base, ids=[10, 20, 30])
    >>> int(ds[2][2])
    30
    """

    def __init__(self, dataset: Dataset, ids: Sequence[int] | None = None) -> None:
        n = len(dataset)  # type: ignore[arg-type]
        if ids is None:
            ids_t = torch.arange(n, dtype=torch.long)
        else:
            ids_t = torch.as_tensor(list(ids), dtype=torch.long)
            if ids_t.numel() != n:
                raise ConfigError(f"ids must give one id per item ({n}), got {ids_t.numel()}")
            if torch.unique(ids_t).numel() != n:
                raise ConfigError("sample ids must be unique; the ids given contain duplicates")
        self.dataset = dataset
        self.ids = ids_t

    def __len__(self) -> int:
        return int(self.ids.numel())

    def __getitem__(self, index: int) -> tuple[Any, Any, torch.Tensor]:
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ConfigError(
                f"the wrapped dataset must yield (x, y) pairs, got {type(item).__name__} at index {index}"
            )
        return item[0], item[1], self.ids[index]
