"""The checks a forward call's inputs pass before they reach torch: ids, masks, positions and token types.

`check_forward` is the one place every family's forward (and `generate`) checks what the caller gives, so that a
bad value is an InputError naming the argument and the position, never a torch IndexError or "Expected tensor
for argument #1 'indices'" from inside an embedding:
- ids, positions and token types must be integer tensors; narrow integer types (int8, uint8, int16) are widened
  to int64, as `generate` does (torch's embedding takes int32 / int64 only);
- ids must lie in the vocabulary, token types in the type vocabulary, positions in the position table;
- an attention mask must have the shape (batch, past + length) and hold only 0 (pad) and 1 (keep), in any
  dtype: 0.5 or NaN in a float mask would otherwise be read as an additive bias or as "keep";
- float inputs (encoder outputs, float labels) must be finite (`check_finite`).
The value checks are reduced on the device and read back with one synchronisation; only a failing call pays for
finding the position it names.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from ..errors import InputError

INDEX_DTYPES = (torch.int64, torch.int32)  # what torch's embedding takes as is


class Inputs(NamedTuple):
    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor | None
    token_type_ids: torch.Tensor | None


def _shape(value: object) -> object:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def as_indices(value: object, name: str) -> torch.Tensor:
    """An integer tensor as the embedding takes it (narrow integer types widened); else an InputError."""
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name} must be a tensor, got {type(value).__name__}")
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise InputError(f"{name} must hold integer ids, got {value.dtype}")
    return value if value.dtype in INDEX_DTYPES else value.long()


def _first(bad: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in bad.nonzero()[0])


def _range(tensor: torch.Tensor, name: str, high: int | None, what: str) -> tuple[torch.Tensor, Callable[[], str]]:
    """A deferred check that every value lies in 0..high-1 (high None: is not negative)."""
    bad = (tensor < 0) | (tensor >= high) if high is not None else tensor < 0

    def message() -> str:
        where = _first(bad)
        bounds = f"0..{high - 1}" if high is not None else "0 or more"
        return f"{name}{list(where)} = {int(tensor[where])} is outside {what} ({bounds})"
    return bad.any(), message


def _mask_values(mask: torch.Tensor, name: str) -> tuple[torch.Tensor, Callable[[], str]]:
    bad = (mask != 0) & (mask != 1)  # NaN compares unequal to both

    def message() -> str:
        where = _first(bad)
        return (f"{name}{list(where)} = {mask[where].item()!r}: a mask holds 1 (attend) and 0 (padding) only, "
                f"got a {mask.dtype} mask with other values")
    return bad.any(), message


def check_forward(config, limit: int | None, input_ids: object, attention_mask: object = None,
                  name: str = "input_ids", past: int = 0, position_ids: object = None,
                  token_type_ids: object = None) -> Inputs:
    """Check one forward call's inputs (see the module docstring); the tensors returned are what the model uses.

    limit: the positions the model may see at most (None: no position table), past: positions already cached."""
    if input_ids is None:
        raise InputError(f"{name} is required")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise InputError(f"{name} must be a 2-D tensor (batch, length), got {_shape(input_ids)}")
    input_ids = as_indices(input_ids, name)
    if input_ids.numel() == 0:
        raise InputError(f"{name} is empty (shape {tuple(input_ids.shape)})")
    B, T = input_ids.shape
    if limit is not None and past + T > limit:
        raise InputError(f"{name} has {past + T} positions but the model has at most {limit}; truncate the input "
                         f"(e.g. tokenizer(..., truncation=True, max_length={limit}))")
    checks = [_range(input_ids, name, config.vocab_size, "the vocabulary")]
    if attention_mask is not None:
        expected = (B, past + T)
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != expected:
            raise InputError(f"attention_mask for {name} must have shape {expected}, got {_shape(attention_mask)}")
        if attention_mask.dtype.is_complex:
            raise InputError(f"attention_mask for {name} must hold 0 and 1, got {attention_mask.dtype}")
        checks.append(_mask_values(attention_mask, "attention_mask"))
    if position_ids is not None:
        position_ids = as_indices(position_ids, "position_ids")
        if position_ids.dim() != 2 or position_ids.shape[1] != T or position_ids.shape[0] not in (1, B):
            shapes = f"({B}, {T})" + (f" or (1, {T})" if B > 1 else "")
            raise InputError(f"position_ids must have shape {shapes} like {name}, got {tuple(position_ids.shape)}")
        table = config.max_positions + config.position_offset if config.positions == "learned" else None
        checks.append(_range(position_ids, "position_ids", table, "the position table" if table else "positions"))
    if token_type_ids is not None:
        token_type_ids = as_indices(token_type_ids, "token_type_ids")
        if token_type_ids.shape != input_ids.shape:
            raise InputError(f"token_type_ids must have the shape of {name} {tuple(input_ids.shape)}, "
                             f"got {tuple(token_type_ids.shape)}")
        types = max(config.type_vocab_size, 1)  # without a type table, only type 0 means anything
        checks.append(_range(token_type_ids, "token_type_ids", types,
                             f"the {config.type_vocab_size} token types of this model"))
    flags = torch.stack([bad for bad, _ in checks]).tolist()  # the one synchronisation
    for failed, (_, message) in zip(flags, checks, strict=True):
        if failed:
            raise InputError(message())
    return Inputs(input_ids, attention_mask, position_ids, token_type_ids)


def check_finite(tensor: object, name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """A floating tensor (of `shape`, where given) without NaN or infinity; else an InputError naming it."""
    if not isinstance(tensor, torch.Tensor) or not tensor.dtype.is_floating_point:
        got = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise InputError(f"{name} must be a floating-point tensor, got {got}")
    if shape is not None and tuple(tensor.shape) != tuple(shape):
        raise InputError(f"{name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}")
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        where = _first(bad)
        raise InputError(f"{name}{list(where)} = {tensor[where].item()} is not finite")
    return tensor


def check_context(encoder_outputs: object, attention_mask: object, hidden_size: int) -> None:
    """Encoder outputs a caller hands to an encoder-decoder: (batch, length, hidden), finite, with a mask (if
    any) of (batch, length) holding 0 and 1."""
    if not isinstance(encoder_outputs, torch.Tensor) or encoder_outputs.dim() != 3 \
            or encoder_outputs.shape[-1] != hidden_size:
        raise InputError(f"encoder_outputs must be a (batch, length, {hidden_size}) tensor, "
                         f"got {_shape(encoder_outputs)}")
    check_finite(encoder_outputs, "encoder_outputs")
    if attention_mask is not None:
        expected = tuple(encoder_outputs.shape[:2])
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != expected:
            raise InputError(f"attention_mask for encoder_outputs must have shape {expected}, "
                             f"got {_shape(attention_mask)}")
        bad, message = _mask_values(attention_mask, "attention_mask")
        if bool(bad):
            raise InputError(message())
