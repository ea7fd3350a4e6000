"""The layers an adapter puts into a model: `LoraLinear` around one of our linear layers, `ModulesToSave` around a
module trained and saved whole (a classifier head).

One of our linear layers may hold several transformers modules (T5's q, k and v are rows of `attn.qkv`), so a
`LoraLinear` keeps, per adapter, one A/B pair per transformers module it targets (`Slice`), each adding
B (A dropout(x)) * scale (Hu et al. 2021, "LoRA") into that module's output columns: rows of the fused weight,
in transformers' order (a slice for T5 / BART / BERT, an index for BLOOM's per-head interleaved layout). A
`bias="lora_only"` adapter on a slice of a fused bias trains that slice (`lora_bias`), as peft trains the bias of
each module it wraps. Adapter weights are float32 over a half-precision (or int8) base, as peft 0.21 keeps them
(`autocast_adapter_dtype=True`), else the base's dtype; their input is cast to it and the sum rounded back.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.dropout import dropout_linear
from ..layers.int8 import Int8Linear
from .targets import Part


@dataclass
class Slice:
    """One adapter's LoRA on one transformers module inside a LoraLinear."""

    part: Part
    r: int
    scale: float
    dropout: float

    def __post_init__(self) -> None:
        self.columns = columns(self.part)


def columns(part: Part) -> slice | torch.Tensor:
    """Our output columns of a transformers module: a slice, or an index (BLOOM's interleaved q|k|v)."""
    rows = part.rows
    return slice(rows.start, rows.stop) if isinstance(rows, range) else torch.tensor(rows)


class LoraLinear(nn.Module):
    """A linear layer (nn.Linear or Int8Linear) with LoRA slices of any number of adapters; one adapter is active."""

    def __init__(self, base_layer: nn.Module):
        super().__init__()
        self.base_layer = base_layer
        self.lora_A = nn.ModuleDict()  # adapter -> {transformers module's short name: (r, in)}
        self.lora_B = nn.ModuleDict()  # adapter -> {short name: (out_k, r)}
        self.lora_bias = nn.ParameterDict()  # short name -> the trained bias of that slice (bias="lora_only")
        self.slices: dict[str, dict[str, Slice]] = {}
        self.bias_parts: dict[str, Part] = {}  # short name -> the transformers module of a trained bias slice
        self.active: str | None = None
        self.disabled = False
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def base_dtype_device(self) -> tuple[torch.dtype, torch.device]:
        if isinstance(self.base_layer, Int8Linear):
            return self.base_layer.scale.dtype, self.base_layer.scale.device
        return self.base_layer.weight.dtype, self.base_layer.weight.device

    def add(self, adapter: str, piece: Slice, init: bool | str, dtype: torch.dtype) -> None:
        """A new A/B pair for `piece` (peft's init: A kaiming-uniform as nn.Linear's, B zero, unless
        init is "gaussian" (A ~ N(0, 1/r)) or False (B random too))."""
        _, device = self.base_dtype_device()
        r, part = piece.r, piece.part
        A = torch.empty(r, part.in_features, dtype=dtype, device=device)
        B = torch.empty(part.out_features, r, dtype=dtype, device=device)
        if init == "gaussian":
            nn.init.normal_(A, std=1 / r)
        else:
            nn.init.kaiming_uniform_(A, a=math.sqrt(5))
        if init is False:
            nn.init.kaiming_uniform_(B, a=math.sqrt(5))
        else:
            nn.init.zeros_(B)
        if adapter not in self.lora_A:
            self.lora_A[adapter], self.lora_B[adapter] = nn.ParameterDict(), nn.ParameterDict()
            self.slices[adapter] = {}
        self.lora_A[adapter][part.short] = nn.Parameter(A)
        self.lora_B[adapter][part.short] = nn.Parameter(B)
        self.slices[adapter][part.short] = piece

    def train_bias(self, part: Part) -> None:
        """Train the bias of `part` alone (its rows of our bias), as bias="lora_only" does."""
        if part.short not in self.lora_bias:
            self.lora_bias[part.short] = nn.Parameter(self.base_layer.bias.detach()[columns(part)].clone())
            self.bias_parts[part.short] = part

    def remove(self, adapter: str) -> None:
        for store in (self.lora_A, self.lora_B):
            if adapter in store:
                del store[adapter]
        self.slices.pop(adapter, None)

    @property
    def adapters(self) -> list[str]:
        return list(self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)  # (..., out)
        for short, bias in self.lora_bias.items():  # trained bias slices: part of the base, as in peft
            where = columns(self.bias_parts[short])
            y = _add_columns(y, where, bias - self.base_layer.bias[where])
        adapter = self.active
        if self.disabled or adapter is None or adapter not in self.lora_A:
            return y
        A_of, B_of = self.lora_A[adapter], self.lora_B[adapter]
        for short, piece in self.slices[adapter].items():
            A, B = A_of[short], B_of[short]
            h = x if x.dtype == A.dtype else x.to(A.dtype)
            h = dropout_linear(h, A, piece.dropout, self.training) * piece.scale  # (..., r)
            y = _add_columns(y, piece.columns, F.linear(h, B))  # (..., out_k) into its columns
        return y

    def delta(self, adapter: str, short: str) -> torch.Tensor:
        """B A * scale of one slice, (out_k, in), computed in fp32 for half-precision weights (as peft on CPU)."""
        piece = self.slices[adapter][short]
        A, B = self.lora_A[adapter][short], self.lora_B[adapter][short]
        compute = torch.float32 if A.dtype in (torch.float16, torch.bfloat16) else A.dtype
        return (B.to(compute) @ A.to(compute)) * piece.scale

    def merged_layer(self, adapters: list[str], safe_merge: bool = False) -> nn.Module:
        """The base layer with the slices of `adapters` (and trained bias slices) added into its weights."""
        base = self.base_layer
        quantized = isinstance(base, Int8Linear)
        weight = (base.weight_int8.float() * base.scale[:, None]) if quantized else base.weight.detach().clone()
        for adapter in adapters:
            for short, piece in self.slices.get(adapter, {}).items():
                weight[piece.columns] += self.delta(adapter, short).to(weight.dtype)
        bias = None if base.bias is None else base.bias.detach().clone()
        for short, trained in self.lora_bias.items():
            bias[columns(self.bias_parts[short])] = trained.detach().to(bias.dtype)
        if safe_merge and not torch.isfinite(weight).all():
            raise ValueError(f"NaNs or infinities in the merged weights of {list(self.slices)}: an adapter is broken")
        if quantized:  # requantized with fresh per-row scales, as a merge into an 8-bit base does
            return Int8Linear(weight, bias)
        with torch.no_grad():
            base.weight.copy_(weight)
            if bias is not None:
                base.bias.copy_(bias)
        return base

    def unmerged_layer(self) -> nn.Module:
        """The base layer as it is (trained bias slices written into its bias: they belong to the base)."""
        if self.lora_bias:
            with torch.no_grad():
                for short, trained in self.lora_bias.items():
                    self.base_layer.bias[columns(self.bias_parts[short])] = trained
        return self.base_layer

    def extra_repr(self) -> str:
        pieces = {a: {s: p.r for s, p in slices.items()} for a, slices in self.slices.items()}
        return f"lora={pieces}, active={self.active!r}"


def _add_columns(y: torch.Tensor, columns: slice | torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """y with `value` added into its last-dimension `columns`, computed in the wider of the two dtypes and rounded to
    y's, as peft's `result + lora` is. A block of columns is added in place (the base layer's output is not needed by
    its backward); all of them, or an index, out of place (autograd refuses an in-place write over the whole of a
    view of a tensor that needs no gradient, which the base layer's output is in the first layer)."""
    if isinstance(columns, slice) and (columns.start, columns.stop) != (0, y.shape[-1]):
        y[..., columns] += value
        return y
    if isinstance(columns, slice):
        return (y + value).to(y.dtype)
    wide = value.dtype if value.dtype.itemsize > y.dtype.itemsize else y.dtype
    return y.to(wide).index_add(-1, columns.to(y.device), value.to(wide)).to(y.dtype)


class ModulesToSave(nn.Module):
    """peft's ModulesToSaveWrapper: the original module (frozen) and one trained copy per adapter that lists it;
    the active adapter's copy runs (the original while adapters are disabled, or for an adapter without one)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.original_module = module
        self.modules_to_save = nn.ModuleDict()
        self.active: str | None = None
        self.disabled = False

    def add(self, adapter: str) -> None:
        self.modules_to_save[adapter] = copy.deepcopy(self.original_module)

    def remove(self, adapter: str) -> None:
        if adapter in self.modules_to_save:
            del self.modules_to_save[adapter]

    @property
    def adapters(self) -> list[str]:
        return list(self.modules_to_save)

    def current(self) -> nn.Module:
        if self.disabled or self.active not in self.modules_to_save:
            return self.original_module
        return self.modules_to_save[self.active]

    def forward(self, *args, **kwargs):
        return self.current()(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("original_module", "modules_to_save"):
                raise
            return getattr(self.current(), name)  # `lm_head.weight`, a head's `kind`, ...
