"""Task heads and their losses, shared by the three families.

Each head reads the body's hidden states; the losses follow transformers' conventions (labels -100
ignored; regression when num_labels == 1; multi-label when labels are floats of shape (B, labels)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..errors import InputError
from ..layers.block import ACTIVATIONS
from ..layers.cross_entropy import cross_entropy, linear_cross_entropy
from ..layers.dropout import Dropout
from ..layers.linear import Linear, linear
from ..layers.norms import make_norm
from .inputs import as_indices, check_finite


class MLMHead(nn.Module):
    """BERT/RoBERTa masked-LM head: dense -> activation -> norm -> (tied) vocabulary projection + bias."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        H = config.hidden_size
        self.dense = Linear(H, H)
        self.act = ACTIVATIONS[config.mlm_activation or config.activation]
        self.norm = make_norm(config.norm, H, config.norm_eps)
        self.decoder = None if config.tie_word_embeddings else Linear(H, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.act(self.dense(hidden)))
        if self.decoder is None:  # tied: the embedding matrix
            return linear(h, embedding, self.bias)
        return self.decoder(h) + self.bias  # untied: called as a module (a quantized copy, an adapter's wrapper)

    def loss(self, hidden: torch.Tensor, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """token_loss(self(hidden, embedding), labels), computing logits only where a label is set."""
        check_labels(labels, hidden.shape[:-1], self.bias.shape[0])
        chosen = labels != -100  # (B, T)
        logits = self(hidden[chosen], embedding)  # (N, V)
        return F.cross_entropy(logits.float(), labels[chosen])  # mean over N; nan when N = 0, as token_loss


class SequenceClassifier(nn.Module):
    """Reads one token per sequence: `linear` (GPT-2 / BLOOM `score`: the projection alone, no dropout),
    `pooled` (BERT: over the pooler output), `dense_tanh` (RoBERTa/BART: dense -> tanh -> projection)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        H, n = config.embedding_width, config.num_labels  # OPT classifies its (narrower) projected-out states
        self.kind = config.classifier
        p = config.classifier_dropout if config.classifier_dropout is not None else config.dropout
        self.drop = Dropout(0.0 if self.kind == "linear" else p)
        if self.kind == "dense_tanh":
            self.dense = Linear(H, H)
            self.out = Linear(H, n)
        else:
            self.out = Linear(H, n, bias=self.kind == "pooled")

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        if self.kind == "dense_tanh":
            token = torch.tanh(self.dense(self.drop(token)))
        return self.out(self.drop(token))


def token_head_outputs(out, head: str, hidden: torch.Tensor, classifier: nn.Module, drop: nn.Module,
                       labels: torch.Tensor | None, start_positions: torch.Tensor | None,
                       end_positions: torch.Tensor | None) -> None:
    """Fill `out` for the per-token heads: token classification (logits over the dropped-out states, as
    transformers' `...ForTokenClassification`) or extractive QA (start / end logits, `qa_outputs`)."""
    if head == "token_classification":
        out.logits = classifier(drop(hidden))
        if labels is not None:
            out.loss = token_loss(out.logits, labels)
        return
    start, end = classifier(hidden).unbind(-1)
    out.start_logits, out.end_logits = start.contiguous(), end.contiguous()
    if start_positions is not None and end_positions is not None:
        out.loss = span_loss(out.start_logits, out.end_logits, start_positions, end_positions)


def select_token(hidden: torch.Tensor, how: str, input_ids: torch.Tensor | None, config: ModelConfig) -> torch.Tensor:
    """(B, T, H) -> (B, H): the token a sequence classifier reads."""
    if how == "first":
        return hidden[:, 0]
    B, T, _ = hidden.shape
    if input_ids is None:
        raise InputError("sequence classification on the last/EOS token needs input_ids")
    positions = torch.arange(T, device=hidden.device)
    if how == "last":  # last non-pad token, as transformers does for GPT-2
        if config.pad_token_id is None:
            index = torch.full((B,), T - 1, device=hidden.device)
        else:
            index = (positions * input_ids.ne(config.pad_token_id)).argmax(-1)
    else:  # "eos": the last EOS token (BART)
        eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
        is_eos = input_ids.eq(eos)
        if not bool(is_eos.any(-1).all()):
            raise InputError("every sequence must contain an EOS token for BART sequence classification")
        index = (positions * is_eos).argmax(-1)
    return hidden[torch.arange(B, device=hidden.device), index]


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    problem = config.problem_type
    if problem is None:
        if config.num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    B, n = logits.shape
    if problem == "regression":  # (B,), or (B, n) for n outputs
        check_finite(labels.float(), "labels", (B,) if n == 1 and labels.dim() == 1 else (B, n))
        return F.mse_loss(logits.squeeze(-1).float(), labels.squeeze(-1).float())
    if problem == "single_label_classification":
        check_labels(labels.view(-1), (B,), config.num_labels)
        return F.cross_entropy(logits.float().view(-1, config.num_labels), labels.view(-1))
    check_finite(labels.float(), "labels (multi-label: one 0..1 target per label)", (B, n))
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def check_labels(labels: torch.Tensor, shape: tuple[int, ...], classes: int) -> None:
    """Clear errors for labels of the wrong shape or outside 0..classes-1 (-100 = ignored)."""
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != tuple(shape):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise InputError(f"labels must have shape {tuple(shape)}, got {got}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise InputError(f"labels must hold integer ids, got {labels.dtype}")
    bad = ((labels < 0) & (labels != -100)) | (labels >= classes)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise InputError(f"labels{list(where)} = {int(labels[where])} is outside 0..{classes - 1} (-100 = ignored)")


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over (B, T, V) logits with -100 ignored; computed in fp32 (`layers.cross_entropy`: one
    vocabulary-sized gradient in backward, not two)."""
    check_labels(labels, logits.shape[:-1], logits.shape[-1])
    return cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token loss: position t predicts label t+1. The labels are shifted (the last position gets -100),
    not the logits: slicing (B, T, V) logits would copy them forward and zero-fill + copy their gradient."""
    check_labels(labels, logits.shape[:-1], logits.shape[-1])
    return token_loss(logits, next_token_labels(labels))


def next_token_labels(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) labels shifted for a next-token loss: position t gets label t+1, the last position -100."""
    return F.pad(labels[:, 1:], (0, 1), value=-100)


def plain_head_weight(model: nn.Module) -> torch.Tensor | None:
    """The LM head's matrix when the head is that matrix alone (the tied embeddings, or an untied Linear), else
    None (a quantized or adapted head is a module of its own to call)."""
    owner = model.get_output_embeddings()
    return owner.weight if owner is model.embed_tokens or type(owner) is Linear else None


def lm_outputs(model: nn.Module, hidden: torch.Tensor, labels: torch.Tensor | None,
               shift: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, loss or None) of an LM head over (B, T, H) hidden states: `model.lm_logits(hidden)` and their
    token loss (next-token where `shift`: `causal_lm_loss`). Where the head is one matrix (`model.lm_matrix`),
    `linear_cross_entropy` computes both at once, keeping no vocabulary-sized tensor for backward but the
    logits returned."""
    matrix = None if labels is None else model.lm_matrix(hidden)
    if matrix is None:
        logits = model.lm_logits(hidden)
        if labels is None:
            return logits, None
        return logits, causal_lm_loss(logits, labels) if shift else token_loss(logits, labels)
    hidden, weight, bias = matrix
    V = weight.shape[0]
    check_labels(labels, hidden.shape[:-1], V)
    if shift:
        labels = next_token_labels(labels)
    logits, loss = linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), weight, bias, labels.reshape(-1))
    return logits.view(*hidden.shape[:-1], V), loss


def span_loss(start_logits, end_logits, start_positions, end_positions) -> torch.Tensor:
    """Extractive QA: mean of start and end cross-entropies; positions outside the input are ignored."""
    B, ignored = start_logits.shape
    losses = []
    for name, positions, logits in (("start_positions", start_positions, start_logits),
                                    ("end_positions", end_positions, end_logits)):
        positions = as_indices(positions, name)
        if positions.numel() != B:
            raise InputError(f"{name} must hold one position per sequence ({B}), got shape {tuple(positions.shape)}")
        target = positions.reshape(-1).clamp(0, ignored)
        losses.append(F.cross_entropy(logits.float(), target, ignore_index=ignored))
    return (losses[0] + losses[1]) / 2
