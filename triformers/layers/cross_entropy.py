"""Cross-entropy over class indices whose backward writes the logits' gradient once.

`F.cross_entropy(logits, labels)` is `nll_loss(log_softmax(logits))`: backward fills an (N, V) gradient for
nll_loss (one value per row), then log_softmax's backward makes a second (N, V) tensor from it, while the
saved log-probabilities are still held: three vocabulary-sized tensors at once, the peak of a causal-LM
training step (GPT-2's 4x256 batch: 206 MB each). `cross_entropy` computes the same loss with the same two
kernels, and its backward writes softmax - one_hot, times the mean's weight, straight into one new tensor:
the gradient autograd's pair computes (grad_in = grad_out - exp(log_p) * sum(grad_out), which for nll_loss's
one value -w per row is exp(log_p) * w - w at the label), with one vocabulary-sized tensor fewer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
        log_p = torch.log_softmax(logits, dim=-1)  # (N, V)
        ctx.save_for_backward(log_p, labels)
        ctx.ignore_index = ignore_index
        return F.nll_loss(log_p, labels, ignore_index=ignore_index)  # mean over the kept rows

    @staticmethod
    @once_differentiable  # a second derivative would need log_p's graph, which forward did not record
    def backward(ctx, grad: torch.Tensor):
        log_p, labels = ctx.saved_tensors
        kept = labels != ctx.ignore_index  # (N,)
        weight = grad / kept.sum()  # d loss / d log_p at a kept row's label is -weight
        out = log_p.exp().mul_(weight)  # (N, V): softmax * weight
        rows = kept.nonzero().squeeze(1)
        out[rows, labels[rows]] -= weight
        out.masked_fill_(~kept[:, None], 0.0)  # ignored rows: no gradient (and no inf from an all-ignored batch)
        return out, None, None


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """F.cross_entropy(logits, labels, ignore_index=ignore_index) for (N, V) logits and (N,) class indices,
    mean over the rows not ignored (nan when every row is)."""
    if not torch.is_grad_enabled() or not logits.requires_grad:
        return F.cross_entropy(logits, labels, ignore_index=ignore_index)
    return _CrossEntropy.apply(logits, labels, ignore_index)
