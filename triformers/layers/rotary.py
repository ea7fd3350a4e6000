"""Rotary position embeddings (Su et al. 2021, "RoFormer"), with every rope type transformers 5.24 implements.

`inverse_frequencies` gives a rope type's inverse frequencies and attention scaling exactly as
transformers' `modeling_rope_utils.ROPE_INIT_FUNCTIONS` (and each model's default rope) computes them, in
the same float32 operations, so that the two agree bit for bit: default, linear (position interpolation),
dynamic (NTK-aware, recomputed for the sequence length), yarn (Peng et al. 2023), longrope (Ding et al.
2024: short and long factors), llama3 (wavelength-dependent), proportional (rotated share of head_dim, the
rest at frequency zero).

`Rotary.tables` turns position ids into the cos / sin tables of a whole call at once (generation: prompt +
new tokens), scaled by the attention factor and cast to the model's dtype as transformers casts them; a
step slices them (masks.py `MaskPlan.rotary`). The two types whose frequencies depend on the length fed
follow transformers' per-forward rule: a chunk fed in one forward (the prompt) takes the frequencies of its
longest position, each later decoding step those of its own position (dynamic: recomputed once past
`max_positions`; longrope: the long factors once past `original_max_position_embeddings`). transformers
keeps dynamic's frequencies as module state across calls; triformers derives them from each call's own
lengths, which is what a freshly loaded transformers model computes.

`apply_rotary` rotates the first `2 * len(inv_freq)` dimensions of each head in rotate-half layout (GPT-NeoX
and Llama order: pairs (i, i + d/2)), the rest passed through (partial rotary).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig


def _powers(dim: int, device=None) -> torch.Tensor:
    """arange(0, dim, 2) / dim in float32: the exponents of the base."""
    return torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim


def rotary_dim(config: ModelConfig) -> int:
    """Dimensions of a head the frequencies are computed for (all of them for proportional rope)."""
    return int(config.attention_head_dim * config.rotary_fraction)


def inverse_frequencies(config: ModelConfig, local: bool = False, seq_len: int | torch.Tensor | None = None,
                        device=None) -> tuple[torch.Tensor, float]:
    """(inv_freq (pairs,), attention_scaling) of the config's rope (its sliding-window layers' with `local`).

    seq_len: the length of the forward (dynamic, longrope), None at initialisation, as transformers calls it.
    """
    theta = config.local_rope_theta if local and config.local_rope_theta is not None else config.rope_theta
    scaling: dict[str, Any] = {} if local and config.local_rope_theta is not None else dict(config.rope_scaling or {})
    kind = scaling.get("rope_type", "default")
    dim = rotary_dim(config)
    if kind == "default":
        return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float, device=device) / dim)), 1.0
    if kind == "linear":
        return 1.0 / (theta ** _powers(dim, device)) / scaling["factor"], 1.0
    if kind == "dynamic":
        return _dynamic(config, theta, dim, scaling["factor"], seq_len, device), 1.0
    if kind == "llama3":
        return _llama3(theta, dim, scaling, device), 1.0
    if kind == "proportional":
        return _proportional(config, theta, scaling, device), 1.0
    if kind == "yarn":
        return _yarn(config, theta, dim, scaling, device)
    return _longrope(config, theta, dim, scaling, seq_len, device)


def _dynamic(config: ModelConfig, theta: float, dim: int, factor: float, seq_len, device) -> torch.Tensor:
    """NTK-aware scaling: the base grows with the sequence length past max_positions (`seq_len` may be a
    tensor of lengths, one row of frequencies each)."""
    max_positions = config.max_positions
    if seq_len is None:
        seq_len = max_positions
    elif isinstance(seq_len, torch.Tensor):
        seq_len = torch.maximum(seq_len, torch.tensor(max_positions, dtype=seq_len.dtype, device=seq_len.device))
    else:
        seq_len = max(seq_len, max_positions)
    base = theta * ((factor * seq_len / max_positions) - (factor - 1)) ** (dim / (dim - 2))
    if isinstance(base, torch.Tensor) and base.dim() == 1:
        base = base[:, None]  # (lengths, 1): one row of frequencies per length
    return 1.0 / (base ** _powers(dim, device))


def _llama3(theta: float, dim: int, scaling: dict[str, Any], device) -> torch.Tensor:
    """Llama 3.1: long wavelengths divided by `factor`, short ones kept, the band between interpolated."""
    inv_freq = 1.0 / (theta ** _powers(dim, device))
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    low_wavelength, high_wavelength = old_context / low, old_context / high
    wavelength = 2 * math.pi / inv_freq
    scaled = torch.where(wavelength > low_wavelength, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelength - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelength < high_wavelength) * ~(wavelength > low_wavelength)
    return torch.where(medium, smoothed, scaled)


def _proportional(config: ModelConfig, theta: float, scaling: dict[str, Any], device) -> torch.Tensor:
    """Rotated pairs for `rotary_fraction` of head_dim (exponents over the whole head), the rest at zero."""
    head_dim = config.attention_head_dim
    angles = int(config.rotary_fraction * head_dim // 2)
    rotated = 1.0 / (theta ** (torch.arange(0, 2 * angles, 2, dtype=torch.int64, device=device).float() / head_dim))
    still = head_dim // 2 - angles
    inv_freq = torch.cat((rotated, torch.zeros(still, dtype=torch.float32, device=device))) if still > 0 else rotated
    return inv_freq / scaling.get("factor", 1.0)


def _yarn(config: ModelConfig, theta: float, dim: int, scaling: dict[str, Any], device) -> tuple[torch.Tensor, float]:
    """YaRN: interpolation for low frequencies, extrapolation for high ones, a linear ramp between; cos and
    sin scaled by the attention factor (0.1 ln(factor) + 1 unless given)."""
    factor = scaling.get("factor")
    original = scaling["original_max_position_embeddings"]
    if factor is None:
        factor = config.max_positions / original

    def mscale(scale: float, m: float = 1) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = scaling.get("attention_factor")
    if attention is None:
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention = float(mscale(factor, m) / mscale(factor, m_all)) if m and m_all else mscale(factor)
    beta_fast, beta_slow = scaling.get("beta_fast") or 32, scaling.get("beta_slow") or 1

    def correction(rotations: float) -> float:  # the dimension at which a wavelength makes `rotations` turns
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction(beta_fast), correction(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # no zero-width ramp
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1).to(device)
    pos_freqs = theta ** (torch.arange(0, dim, 2).to(device=device, dtype=torch.float) / dim)
    extrapolation = 1 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, attention


def _longrope(config: ModelConfig, theta: float, dim: int, scaling: dict[str, Any], seq_len,
              device) -> tuple[torch.Tensor, float]:
    """LongRoPE: per-pair factors, the long ones for sequences past the pre-training length; cos and sin
    scaled by sqrt(1 + ln(factor) / ln(original)) unless given."""
    original = scaling["original_max_position_embeddings"]
    factor = scaling.get("factor")
    if factor is None:
        factor = config.max_positions / original
    attention = scaling.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    long = seq_len is not None and seq_len > original
    ext = torch.tensor(scaling["long_factor" if long else "short_factor"], dtype=torch.float32, device=device)
    return 1.0 / (ext * theta ** _powers(dim, device)), attention


class Rotary(nn.Module):
    """The cos / sin tables of a stack's rotary positions: one rope for all layers, or (Gemma 3) another,
    unscaled base for the sliding-window layers ("local")."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.kinds = ("global", "local") if config.local_rope_theta is not None else ("global",)
        # dynamic and longrope frequencies depend on the length a forward is fed with
        self.length_dependent = (config.rope_scaling or {}).get("rope_type") in ("dynamic", "longrope")

    def tables(self, position_ids: torch.Tensor, dtype: torch.dtype,
               first: int | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """position_ids (B|1, N) -> {kind: (cos, sin)}, each (B|1, 1, N, rot) in `dtype`.

        first: how many leading positions one forward feeds together (the prompt; default: all N); every
        later position is a step of its own (only dynamic and longrope frequencies depend on this).
        """
        out = {}
        for kind in self.kinds:
            inv_freq, scaling = self._frequencies(position_ids, kind == "local", first)
            freqs = position_ids[..., None].float() * inv_freq.to(position_ids.device)  # (B, N, rot/2)
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos() * scaling, emb.sin() * scaling
            out[kind] = (cos.to(dtype)[:, None], _signed(sin.to(dtype))[:, None])
        return out

    def _frequencies(self, position_ids: torch.Tensor, local: bool, first: int | None) -> tuple[torch.Tensor, float]:
        """inv_freq (rot/2,), or (N, rot/2) when it depends on the length each position is fed with."""
        config = self.config
        kind = "default" if local and config.local_rope_theta is not None else \
            (config.rope_scaling or {}).get("rope_type", "default")
        device = position_ids.device
        if kind not in ("dynamic", "longrope"):
            return inverse_frequencies(config, local, device=device)
        N = position_ids.shape[-1]
        first = N if first is None else first
        # the sequence length each position is fed with: its chunk's longest position + 1 (over the batch)
        lengths = position_ids.amax(0) + 1  # (N,)
        lengths[:first] = lengths[:first].max()
        if kind == "longrope":
            short, scaling = inverse_frequencies(config, local, device=device)
            original = config.rope_scaling["original_max_position_embeddings"]
            long, _ = inverse_frequencies(config, local, seq_len=original + 1, device=device)
            return torch.where((lengths > original)[:, None], long, short), scaling
        init, _ = inverse_frequencies(config, local, device=device)
        grown = inverse_frequencies(config, local, seq_len=lengths, device=device)[0]  # (N, rot/2)
        return torch.where((lengths > config.max_positions)[:, None], grown, init), 1.0


def _signed(sin: torch.Tensor) -> torch.Tensor:
    """sin with its first half negated: rotate_half(x) * sin == roll(x, half) * signed sin, one op fewer."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, heads, T, head_dim) rotated by positions: cos, signed sin (B|1, 1, T, rot) from `Rotary.tables`.

    x * cos + rotate_half(x) * sin (transformers' `apply_rotary_pos_emb`), where rotate_half(x) * sin is
    written roll(x, rot/2) * signed sin: the same products, signs and sum."""
    rot = cos.shape[-1]
    if rot == x.shape[-1]:
        return x * cos + x.roll(rot // 2, -1) * sin
    turned, kept = x[..., :rot], x[..., rot:]
    return torch.cat((turned * cos + turned.roll(rot // 2, -1) * sin, kept), dim=-1)
