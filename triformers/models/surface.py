"""The forward keywords code written against transformers passes, shared by the three families.

`Call` takes what one forward was asked for (`return_dict`, `output_hidden_states`, `output_attentions`,
`use_cache` / `cache` / `past_key_values`), sets the recorder the layers read (layers/record.py) and finishes the
output: the recorded states under transformers' field names, the cache, and the tuple when `return_dict=False`.
Defaults come from the config as transformers reads them (`config.output_hidden_states`, ...), except `use_cache`:
transformers returns a cache from every forward of a model whose config says `use_cache: true`; triformers only
when asked (a forward outside generation would otherwise copy every key and value into a cache no one reads).

`DynamicCache` is the cache a caller holds between calls, as transformers' `DynamicCache`: made empty (or by the
model on `use_cache=True`), it is allocated on first use and grows by doubling, written in place by each call.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from ..errors import InputError
from ..layers.attention import KVCache
from ..layers.linear import Linear
from ..layers.record import Recorder, recording
from .inputs import Inputs
from .outputs import ModelOutput, ordered

_NOTHING = nullcontext()


class DynamicCache(KVCache):
    """Keys and values of the positions seen so far, for incremental decoding (`past_key_values=`)."""

    def __init__(self, config: Any = None):  # transformers' signature; the model sizes the cache
        self.k = self.v = self.ring_k = self.ring_v = self.ring_bias = self.window = None
        self.slots: list = []
        self.length, self.max_length, self.static = 0, 0, False
        self.cross: list = []

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[0]

    def reserve(self, stack: Any, batch: int, new: int, dtype: torch.dtype, device: torch.device) -> DynamicCache:
        """Room for `new` more positions of `stack`'s layers (allocated on first use, else grown by doubling:
        the kept positions copied over, into a sliding-window layer's ring once the cache outgrows its window)."""
        needed = self.length + new
        if self.k is not None and self.k.shape[1] != batch:
            raise InputError(f"past_key_values holds a batch of {self.k.shape[1]} sequences, the input {batch}")
        if self.k is not None and needed <= self.max_length:
            return self
        size = max(needed, 16) if self.k is None else max(needed, 2 * self.max_length)
        fresh = KVCache.for_layers([block.attn for block in stack.layers], batch, size, dtype, device)
        if self.k is not None:
            self._copy_into(fresh)
        fresh.length, fresh.cross = self.length, self.cross or fresh.cross
        self.__dict__.update(fresh.__dict__)
        return self

    def _copy_into(self, fresh: KVCache) -> None:
        L = self.length
        for (old_ring, old), (new_ring, new) in zip(self.slots, fresh.slots, strict=True):
            if old_ring:  # the window stays: the ring as it is
                fresh.ring_k[new], fresh.ring_v[new] = self.ring_k[old], self.ring_v[old]
            elif not new_ring:
                fresh.k[new, :, :, :L], fresh.v[new, :, :, :L] = self.k[old, :, :, :L], self.v[old, :, :, :L]
            else:  # the last `window` positions p go to ring slot p % window
                kept = torch.arange(max(0, L - fresh.window), L, device=self.k.device)
                fresh.ring_k[new].index_copy_(2, kept % fresh.window, self.k[old].index_select(2, kept))
                fresh.ring_v[new].index_copy_(2, kept % fresh.window, self.v[old].index_select(2, kept))
        if fresh.ring_bias is not None:
            if self.ring_bias is not None:
                fresh.ring_bias.copy_(self.ring_bias)
            else:
                kept = torch.arange(max(0, L - fresh.window), L, device=fresh.ring_bias.device)
                fresh.ring_bias[..., kept % fresh.window] = 0.0


class Call:
    """One forward call's requests, and how its output is finished."""

    def __init__(self, model: Any, *, cache: KVCache | None, past_key_values: Any, use_cache: bool | None,
                 output_attentions: bool | None, output_hidden_states: bool | None, return_dict: bool | None):
        extra = model.config.extra
        if cache is not None and past_key_values is not None and cache is not past_key_values:
            raise InputError("give the cache as cache= or past_key_values= (its older name), not both")
        self.model = model
        self.cache = cache if cache is not None else past_key_values
        if self.cache is not None and not isinstance(self.cache, KVCache):
            raise InputError(f"past_key_values must be the cache a previous call returned (out.past_key_values) or a "
                             f"triformers DynamicCache, got {type(self.cache).__name__} (legacy tuples are refused)")
        if use_cache and model.family == "encoder":
            raise InputError(f"use_cache=True: {type(model).__name__} is an encoder, it keeps no KV cache")
        self.use_cache = bool(use_cache) or self.cache is not None
        self.hidden = bool(extra.get("output_hidden_states", False) if output_hidden_states is None
                           else output_hidden_states)
        self.attentions = bool(extra.get("output_attentions", False) if output_attentions is None
                               else output_attentions)
        self.return_dict = bool(extra.get("return_dict", True) if return_dict is None else return_dict)
        eager = self.attentions or model.attn_implementation == "eager"
        self.recorder = Recorder(self.hidden, self.attentions, eager) if (self.hidden or eager) else None

    def record(self):
        """The context the stacks run in (a shared no-op one when nothing is recorded: decoding steps pass here)."""
        return recording(self.recorder) if self.recorder is not None else _NOTHING

    def kv_cache(self, stack: Any, batch: int, new: int) -> KVCache | None:
        """The cache this call writes `new` positions of `stack` into (made or grown for them), or None."""
        if not self.use_cache:
            return None
        if self.cache is None:
            self.cache = DynamicCache()
        if isinstance(self.cache, DynamicCache):
            self.cache.reserve(stack, batch, new, self.model.dtype, self.model.device)
        return self.cache

    def states(self, stack: Any) -> tuple[tuple | None, tuple | None, tuple | None]:
        """(hidden_states, attentions, cross_attentions) `stack` recorded in this call."""
        frame = self.recorder.frame(stack) if self.recorder is not None else None
        if frame is None:
            return None, None, None
        return (tuple(frame.hidden_states) if self.hidden else None,
                tuple(frame.attentions) if self.attentions else None,
                tuple(frame.cross_attentions) if self.attentions and frame.cross_attentions else None)

    def finish(self, out: ModelOutput, encoder_outputs: Any = None) -> ModelOutput | tuple:
        model = self.model
        if model.family == "encoder-decoder":
            encoder = self.states(model.encoder)
            if encoder == (None, None, None) and isinstance(encoder_outputs, ModelOutput):
                encoder = (encoder_outputs.hidden_states, encoder_outputs.attentions, None)
            out.encoder_hidden_states, out.encoder_attentions = encoder[0], encoder[1]
            out.decoder_hidden_states, out.decoder_attentions, out.cross_attentions = self.states(model.decoder)
        else:
            out.hidden_states, out.attentions, _ = self.states(model.encoder if model.family == "encoder"
                                                               else model.decoder)
        out.cache = self.cache if self.use_cache else None
        out = ordered(out, model.family, model.head)
        return out if self.return_dict else out.to_tuple()


def embeddings(model: Any, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None,
               attention_mask: torch.Tensor | None, name: str, past: int = 0, check: bool = True,
               position_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, Inputs]:
    """The token embeddings of a call, looked up from ids or the caller's `inputs_embeds` (B, T, H), with the
    call's inputs as the model uses them (checked when `check`: narrow integer ids widened, see inputs.py)."""
    embeds_name = "inputs_embeds" if name == "input_ids" else name.replace("_ids", "_embeds")
    inputs = Inputs(input_ids, attention_mask, position_ids, token_type_ids)
    if inputs_embeds is None:
        if check:
            inputs = model.check_inputs(input_ids, attention_mask, name, past=past, position_ids=position_ids,
                                        token_type_ids=token_type_ids)
        return model.embed_tokens(inputs.input_ids), inputs
    if input_ids is not None:
        raise InputError(f"give {name} or {embeds_name}, not both")
    H = model.config.hidden_size
    if not isinstance(inputs_embeds, torch.Tensor) or inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != H \
            or not inputs_embeds.is_floating_point():
        got = tuple(inputs_embeds.shape) if isinstance(inputs_embeds, torch.Tensor) else type(inputs_embeds).__name__
        raise InputError(f"{embeds_name} must be a float tensor (batch, length, {H}), got {got}")
    if check:
        model.check_span(inputs_embeds.shape[0], inputs_embeds.shape[1], attention_mask, embeds_name, past)
    return inputs_embeds, inputs


def positions_for_embeds(model: Any, input_ids: torch.Tensor | None, embeds: torch.Tensor,
                         position_ids: torch.Tensor | None, past: int = 0) -> torch.Tensor | None:
    """RoBERTa counts positions from the padding in the ids; given embeddings, they run from pad + 1 on, as
    transformers' `create_position_ids_from_inputs_embeds`."""
    config = model.config
    if position_ids is not None or input_ids is not None or not config.positions_from_padding:
        return position_ids
    start = config.pad_token_id + 1 + past
    return torch.arange(start, start + embeds.shape[1], device=embeds.device)[None, :]


# -- embeddings -----------------------------------------------------------------------------------------------
def output_embeddings(model: Any) -> torch.nn.Module | None:
    """The module holding the vocabulary projection: an untied head's Linear, else the (tied) token embeddings."""
    mlm = getattr(model, "mlm", None)
    if mlm is not None:
        return mlm.decoder if mlm.decoder is not None else model.embed_tokens
    if model.head != "lm":
        return None
    return model.lm_head if getattr(model, "lm_head", None) is not None else model.embed_tokens


def set_input_embeddings(model: Any, embeddings: torch.nn.Module) -> None:
    if not isinstance(embeddings, torch.nn.Embedding) or embeddings.embedding_dim != model.config.hidden_size:
        raise InputError(f"set_input_embeddings takes an nn.Embedding of dimension {model.config.hidden_size}, got "
                         f"{embeddings!r}")
    model.embed_tokens = embeddings
    model.config.vocab_size = embeddings.num_embeddings


def resize_token_embeddings(model: Any, new_num_tokens: int | None, pad_to_multiple_of: int | None,
                            mean_resizing: bool) -> torch.nn.Embedding:
    """See `TransformerModel.resize_token_embeddings`."""
    old = model.embed_tokens
    n = old.num_embeddings if new_num_tokens is None else new_num_tokens
    if pad_to_multiple_of is not None:
        if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of <= 0:
            raise InputError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
        n = -(-n // pad_to_multiple_of) * pad_to_multiple_of
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise InputError(f"new_num_tokens must be a positive integer, got {new_num_tokens!r}")
    if n == old.num_embeddings:
        return old
    model.unpack_weights()
    std = model.config.initializer_range
    embeddings = type(old)(n, old.embedding_dim, padding_idx=old.padding_idx if (old.padding_idx or 0) < n else None,
                           device=old.weight.device, dtype=old.weight.dtype)
    embeddings.weight.data = _resized(old.weight.data, n, mean_resizing, std)
    model.embed_tokens = embeddings
    lm_head = getattr(model, "lm_head", None)
    if lm_head is not None:  # untied (or a quantized copy would be stale: those are refused)
        if not isinstance(lm_head, Linear):
            raise InputError("resize_token_embeddings on a quantized model is not supported; resize, then quantize")
        head = Linear(lm_head.in_features, n, bias=False, device=lm_head.weight.device,
                               dtype=lm_head.weight.dtype)
        head.weight.data = _resized(lm_head.weight.data, n, mean_resizing, std)
        model.lm_head = head
    mlm = getattr(model, "mlm", None)
    if mlm is not None:
        if mlm.decoder is not None:
            decoder = Linear(mlm.decoder.in_features, n, bias=False, device=old.weight.device, dtype=old.weight.dtype)
            decoder.weight.data = _resized(mlm.decoder.weight.data, n, mean_resizing, std)
            mlm.decoder = decoder
        mlm.bias = torch.nn.Parameter(_rows(mlm.bias.data, n, 0.0))
    bias = getattr(model, "final_logits_bias", None)
    if bias is not None:
        model.final_logits_bias = _rows(bias, n, 0.0, dim=1)
    model.config.vocab_size = n
    return embeddings


def _resized(weight: torch.Tensor, n: int, mean_resizing: bool, std: float) -> torch.Tensor:
    """(V, H) -> (n, H): rows kept; new rows the mean of the old ones (transformers' `mean_resizing` centre)
    or N(0, std)."""
    if n <= weight.shape[0]:
        return weight[:n].clone()
    added = n - weight.shape[0]
    if mean_resizing:
        extra = weight.float().mean(0, keepdim=True).expand(added, -1).to(weight.dtype)
    else:
        extra = torch.randn(added, weight.shape[1], device=weight.device).mul_(std).to(weight.dtype)
    return torch.cat([weight, extra])


def _rows(tensor: torch.Tensor, n: int, fill: float, dim: int = 0) -> torch.Tensor:
    size = tensor.shape[dim]
    if n <= size:
        return tensor.narrow(dim, 0, n).clone()
    shape = list(tensor.shape)
    shape[dim] = n - size
    return torch.cat([tensor, tensor.new_full(shape, fill)], dim=dim)
