"""Cross-entropy over class indices whose backward writes the logits' gradient once, and an LM head fused with it.

`F.cross_entropy(logits, labels)` is `nll_loss(log_softmax(logits))`: backward fills an (N, V) gradient for
nll_loss (one value per row), then log_softmax's backward makes a second (N, V) tensor from it, while the
saved log-probabilities are still held: three vocabulary-sized tensors at once, the peak of a causal-LM
training step (GPT-2's 4x256 batch: 206 MB each). `cross_entropy` computes the same loss with the same two
kernels, and its backward writes softmax - one_hot, times the mean's weight, straight into one new tensor:
the gradient autograd's pair computes (grad_in = grad_out - exp(log_p) * sum(grad_out), which for nll_loss's
one value -w per row is exp(log_p) * w - w at the label), with one vocabulary-sized tensor fewer.

`linear_cross_entropy` goes further where the logits come from one matmul (an LM head): it turns them into
the loss's gradient chunk by chunk in forward, so nothing vocabulary-sized but the logits themselves is made
or kept for backward (`models/heads.lm_outputs` takes it for the causal and seq2seq LM losses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .linear import linear, training_matmul


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
        return _loss_gradient(log_p.exp(), labels, kept.nonzero().squeeze(1), kept, weight), None, None


def _loss_gradient(probs: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor, kept: torch.Tensor,
                   weight: torch.Tensor | float) -> torch.Tensor:
    """The mean cross-entropy's gradient, written over the (N, V) softmax `probs`: (probs - one_hot) * weight on
    the kept `rows`, zero on ignored ones (no gradient, and no inf from an all-ignored batch)."""
    probs.mul_(weight)
    probs[rows, labels[rows]] -= weight
    probs[~kept] = 0.0
    return probs


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """F.cross_entropy(logits, labels, ignore_index=ignore_index) for (N, V) logits and (N,) class indices,
    mean over the rows not ignored (nan when every row is)."""
    if not torch.is_grad_enabled() or not logits.requires_grad:
        return F.cross_entropy(logits, labels, ignore_index=ignore_index)
    return _CrossEntropy.apply(logits, labels, ignore_index)


_CHUNK = 1 << 23  # elements of the logits the fused loss turns into a gradient at a time (32 MB in fp32)


class _LinearCrossEntropy(torch.autograd.Function):
    """(logits = x W^T + b, their mean cross-entropy over labels), the gradient of the loss computed in forward.

    Right after the logits, each chunk of rows becomes its log-probabilities, its share of the loss and its
    gradient (softmax - one_hot) / kept, which goes straight into d loss / d x = g W (and g^T x, sum g for a
    trained W, b): backward only scales those by the loss's incoming gradient. No vocabulary-sized tensor but the
    logits themselves outlives a chunk, where `cross_entropy` keeps the log-probabilities until backward and
    then writes their gradient (GPT-2's 4x256 batch: 206 MB each). The logits stay a differentiable output: a
    gradient reaching them (another loss read them) adds its g W, g^T x, sum g in backward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor,
                ignore_index: int):
        ctx.set_materialize_grads(False)
        wants_x, wants_weight, wants_bias = ctx.needs_input_grad[:3]
        logits = training_matmul(x, weight, bias)  # (N, V): the kernel of a linear layer's training path
        N, V = logits.shape
        kept = labels != ignore_index
        count = int(kept.sum())
        w = 1.0 / count if count else 0.0  # no row kept: loss nan (as F.cross_entropy), gradient zero
        grad_x = torch.empty_like(x) if wants_x else None
        wide = weight.dtype == torch.float32  # a half-precision W's gradient is summed over the chunks in fp32
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=x.device) if wants_weight else None
        grad_b = torch.zeros(V, dtype=torch.float32, device=x.device) if wants_bias else None
        total = torch.zeros((), dtype=torch.float32, device=x.device)
        step = max(1, _CHUNK // V)
        for start in range(0, N, step):
            rows = slice(start, min(start + step, N))
            log_p = torch.log_softmax(logits[rows].float(), dim=-1)  # (R, V), a new tensor
            keep, label = kept[rows], labels[rows]
            at = keep.nonzero().squeeze(1)
            total -= log_p[at, label[at]].sum()
            g = _loss_gradient(log_p.exp_(), label, at, keep, w).to(weight.dtype)  # (R, V)
            if wants_x:
                torch.mm(g, weight, out=grad_x[rows])
            if wants_weight and wide:
                grad_w.addmm_(g.t(), x[rows])
            elif wants_weight:
                grad_w.add_(torch.mm(g.t(), x[rows]))
            if wants_bias:
                grad_b += g.sum(0, dtype=torch.float32)
        loss = total / count if count else torch.full((), float("nan"), device=x.device)
        ctx.save_for_backward(x if wants_weight else None, weight if wants_x else None, grad_x,
                              *(None if sum_ is None else sum_.to(weight.dtype) for sum_ in (grad_w, grad_b)))
        return logits, loss  # the loss in fp32 whatever the logits' dtype, as token_loss computes it

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logits: torch.Tensor | None, grad_loss: torch.Tensor | None):
        x, weight, grad_x, grad_w, grad_b = ctx.saved_tensors
        outs = []
        for precomputed in (grad_x, grad_w, grad_b):
            outs.append(None if precomputed is None or grad_loss is None else precomputed * grad_loss)
        if grad_logits is not None:  # the logits were read by something else as well
            g = grad_logits.contiguous()
            extra = (torch.mm(g, weight) if ctx.needs_input_grad[0] else None,
                     torch.mm(g.t(), x) if ctx.needs_input_grad[1] else None,
                     g.sum(0) if ctx.needs_input_grad[2] else None)  # no bias: not wanted
            outs = [e if o is None else (o if e is None else o + e) for o, e in zip(outs, extra, strict=True)]
        return *outs, None, None


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor,
                         ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """(linear(x, weight, bias), cross_entropy(those logits in fp32, labels)) for (N, in) x and (N,) labels.

    When a gradient is wanted (and autocast is off), `_LinearCrossEntropy` computes both without keeping a
    vocabulary-sized tensor for backward; otherwise the two calls themselves."""
    wanted = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                          or (bias is not None and bias.requires_grad))
    if (not wanted or torch.is_autocast_enabled(x.device.type) or x.dtype != weight.dtype
            or (bias is not None and bias.dtype != weight.dtype)):
        logits = linear(x, weight, bias)
        return logits, cross_entropy(logits.float(), labels, ignore_index)
    return _LinearCrossEntropy.apply(x, weight, bias, labels, ignore_index)
