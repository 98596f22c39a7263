"""Deletion requests: which training records to forget, named by id, by class or by data subject.

>>> import numpy as np
>>> req = resolve_request(np.arange(10), np.array([0, 1] * 5), num_classes=2, class_=1)
>>> req.ids.tolist(), req.kind
([1, 3, 5, 7, 9], 'class')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.shards import read_subject_map  # noqa: F401  (re-exported: the CLI and API read maps here)
from ..errors import RequestError, did_you_mean
from ..utils.hashing import hash_ids  # noqa: F401  (re-exported: receipts use it)
from ..utils.ids import as_id_array


@dataclass(frozen=True)
class DeletionRequest:
    """A resolved request: the sorted, distinct sample ids to forget and how they were named."""

    ids: np.ndarray
    kind: str  # "ids", "class" or "subjects"
    detail: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ids.size)

    def describe(self) -> dict[str, Any]:
        """What the request was, without the raw ids (for receipts)."""
        return {"type": self.kind, "count": len(self), **self.detail}


def resolve_request(
    training_ids: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    ids: Sequence[int] | np.ndarray | None = None,
    class_: int | None = None,
    subjects: Sequence[str] | None = None,
    subject_map: Mapping[str, Sequence[int]] | None = None,
) -> DeletionRequest:
    """Turn what the user named into the training ids to forget; refuse anything unclear.

    Exactly one of ``ids``, ``class_`` and ``subjects`` must be given. Every id must be one the model was
    trained on; a class must lie in range and have training examples; a subject must be in the map.
    """
    given = [name for name, v in (("ids", ids), ("class", class_), ("subjects", subjects)) if v is not None]
    if len(given) != 1:
        raise RequestError(
            "a deletion request names records in exactly one way: ids=..., class_=... or subjects=...; "
            f"got {', '.join(given) if given else 'none'}"
        )
    training_ids = np.asarray(training_ids, dtype=np.int64)
    if class_ is not None:
        return _class_request(training_ids, np.asarray(labels), class_, num_classes)
    detail: dict[str, Any] = {}
    kind = "ids"
    if subjects is not None:
        ids = _subjects_ids(subjects, subject_map)
        kind, detail = "subjects", {"subjects": len(subjects)}
    arr = _id_array(ids)
    if arr.size == 0:
        raise RequestError("the deletion request is empty: name at least one sample id")
    unknown = arr[~np.isin(arr, training_ids)]
    if unknown.size:
        shown = ", ".join(map(str, unknown[:10].tolist())) + (" ..." if unknown.size > 10 else "")
        raise RequestError(
            f"{unknown.size} requested id(s) are not records this model was trained on: {shown}. "
            f"Training ids run from {int(training_ids.min())} to {int(training_ids.max())}; records already "
            "excluded from training need no deletion."
        )
    return DeletionRequest(arr, kind, detail)


def _class_request(training_ids: np.ndarray, labels: np.ndarray, class_: Any, num_classes: int) -> DeletionRequest:
    if isinstance(class_, bool) or not isinstance(class_, (int, np.integer)):
        raise RequestError(f"the class must be an integer, got {class_!r}")
    if not 0 <= int(class_) < num_classes:
        raise RequestError(f"class {class_} is out of range; this dataset has classes 0..{num_classes - 1}")
    chosen = training_ids[labels == int(class_)]
    if chosen.size == 0:
        raise RequestError(f"the model was trained on no example of class {class_}; nothing to forget")
    return DeletionRequest(np.unique(chosen), "class", {"class": int(class_)})


def _subjects_ids(subjects: Sequence[str], subject_map: Mapping[str, Sequence[int]] | None) -> list[int]:
    """Every sample id of the named data subjects; unknown subjects and non-integer ids are refused."""
    if subject_map is None:
        raise RequestError("subjects=... needs subject_map=..., the mapping from data subjects to sample ids")
    wanted: list[int] = []
    for s in subjects:
        if s not in subject_map:
            raise RequestError(f"unknown data subject {s!r} (the map has {len(subject_map)} subjects)."
                               + did_you_mean(s, subject_map))
        if not isinstance(subject_map[s], (list, tuple, np.ndarray)):
            raise RequestError(f"subject {s!r}: expected a list of integer ids, got {subject_map[s]!r}")
        for i in subject_map[s]:
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
                raise RequestError(f"subject {s!r}: sample ids must be integers, got {i!r}")
            wanted.append(int(i))
    return wanted


def _id_array(ids: Sequence[int] | np.ndarray | None) -> np.ndarray:
    """The requested ids as a sorted unique int64 array (:func:`amnesiac.utils.as_id_array`: the recorder's
    validator), refused as a :class:`RequestError`."""
    return np.unique(as_id_array(ids if ids is not None else [], "ids", error=RequestError))
