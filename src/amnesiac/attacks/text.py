"""Membership scores for causal language models, the ones the LLM-unlearning literature reports: the loss, the
zlib ratio (Carlini et al., "Extracting training data from large language models", 2021) and Min-K% (Shi et
al., "Detecting pretraining data from large language models", 2024).

Every score is oriented so that higher means "more likely a member", so :func:`~amnesiac.attacks.metrics.auc`
reads it directly:

- ``loss``: the mean log-probability of the sequence's tokens (minus the loss);
- ``zlib``: the summed log-probability divided by the zlib-compressed length of the text (a sequence that is
  merely easy to predict, being repetitive, is also easy to compress);
- ``min_k``: the mean of the lowest ``k`` share of token log-probabilities (a member has few surprising tokens).

Works with a Hugging Face causal LM (an output with ``.logits``) or any module mapping token ids to logits.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .metrics import auc

SCORES = ("loss", "zlib", "min_k")


@torch.no_grad()
def token_logprobs(model: nn.Module, sequences: Sequence[torch.Tensor | Sequence[int]], *,
                   batch_size: int = 16) -> list[torch.Tensor]:
    """log p(x_t | x_<t) for t = 1..len-1 of each token sequence (each at least 2 tokens), in float32."""
    seqs = [torch.as_tensor(s, dtype=torch.long).reshape(-1) for s in sequences]
    if any(s.numel() < 2 for s in seqs):
        raise ConfigError("every sequence needs at least 2 tokens to be scored")
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    try:
        for start in range(0, len(seqs), batch_size):
            chunk = seqs[start : start + batch_size]
            width = max(s.numel() for s in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, s in enumerate(chunk):
                ids[i, : s.numel()], mask[i, : s.numel()] = s, 1
            logits = _logits(model, ids, mask).float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            out += [logp[i, : s.numel() - 1].cpu() for i, s in enumerate(chunk)]
    finally:
        model.train(was_training)
    return out


def _logits(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    try:
        result = model(input_ids=ids, attention_mask=mask)
    except TypeError:  # a plain module: token ids in, logits out
        result = model(ids)
    return result.logits if hasattr(result, "logits") else result


def min_k(logprobs: torch.Tensor, k: float = 0.2) -> float:
    """The mean of the lowest ``k`` share (at least one) of the token log-probabilities.

    >>> min_k(torch.tensor([-1.0, -5.0, -2.0, -0.5, -3.0]), k=0.4)
    -4.0
    """
    if not 0 < k <= 1:
        raise ConfigError(f"k must lie in (0, 1], got {k}")
    n = max(1, math.ceil(k * logprobs.numel()))
    return float(torch.sort(logprobs).values[:n].mean())


def zlib_ratio(logprobs: torch.Tensor, text: str | bytes) -> float:
    """The summed log-probability over the zlib-compressed length (bytes) of the text."""
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return float(logprobs.sum()) / max(1, len(zlib.compress(raw)))


def membership_scores(model: nn.Module, sequences: Sequence[torch.Tensor | Sequence[int]], *,
                      texts: Sequence[str | bytes] | None = None, k: float = 0.2,
                      batch_size: int = 16) -> dict[str, np.ndarray]:
    """The three scores of each sequence (``texts``: what the zlib ratio compresses; by default the token ids
    written out, which keeps the ratio's meaning without a tokenizer)."""
    if texts is not None and len(texts) != len(sequences):
        raise ConfigError(f"texts: one per sequence expected ({len(sequences)}), got {len(texts)}")
    lps = token_logprobs(model, sequences, batch_size=batch_size)
    plain = [" ".join(map(str, torch.as_tensor(s).reshape(-1).tolist())) for s in sequences]
    return {"loss": np.array([float(lp.mean()) for lp in lps]),
            "zlib": np.array([zlib_ratio(lp, t) for lp, t in zip(lps, texts if texts is not None else plain)]),
            "min_k": np.array([min_k(lp, k) for lp in lps])}


def text_membership(model: nn.Module, members: Sequence[Any], non_members: Sequence[Any], *,
                    member_texts: Sequence[str | bytes] | None = None,
                    non_member_texts: Sequence[str | bytes] | None = None, k: float = 0.2) -> dict[str, float]:
    """AUC of each score at telling ``members`` from ``non_members`` (0.5: no signal; a model that never saw the
    members should sit there)."""
    a = membership_scores(model, members, texts=member_texts, k=k)
    b = membership_scores(model, non_members, texts=non_member_texts, k=k)
    labels = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    return {f"{name}_auc": auc(np.r_[a[name], b[name]], labels) for name in SCORES}
