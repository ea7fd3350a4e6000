"""A GGUF file as a Hugging Face checkpoint: its metadata as a config.json dict, its tensors under HF names.

The dialects already read HF config dicts and HF tensor names, so a GGUF model loads through the same tables
as a safetensors folder: `hf_config` turns llama.cpp's metadata keys (`llama.block_count`, ...) into the keys of
transformers' config (`num_hidden_layers`, ...) with the `model_type` of the dialect, and `GGUFTensors` serves
the dequantized tensors under transformers' names (`blk.3.attn_q.weight` -> `model.layers.3.self_attn.q_proj
.weight`), undoing what llama.cpp's converter (`convert_hf_to_gguf.py`) did to them: the row permutation of
llama's q and k (for llama.cpp's rotary kernel) and the `1 + w` in which Gemma's norm weights are stored.
Reference: transformers 5.24 `modeling_gguf_pytorch_utils.load_gguf_checkpoint` and `integrations/ggml.py`,
whose output this matches key for key and tensor for tensor. Where the file says more than transformers reads,
triformers reads it too: Qwen3's `attention.key_length` (the head width), and rope scaling (`rope.scaling.*`
keys, and llama 3's `rope_freqs` tensor of per-frequency factors, turned back into the `llama3` parameters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from ..errors import CheckpointError, ConfigError
from .gguf import STRING, GGUFFile

INTEGERS = (0, 1, 2, 3, 4, 5, 10, 11)  # GGUF value types that hold integers
FLOATS = (6, 12)
BLOCK_NAMES = {  # llama.cpp's per-layer tensor names -> transformers' (gguf's `tensor_mapping.py`, reversed)
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm", "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
# the keys every supported architecture shares: (suffix after "<arch>.", transformers' key, value kind)
COMMON_KEYS = (
    ("context_length", "max_position_embeddings", "count"), ("block_count", "num_hidden_layers", "count"),
    ("feed_forward_length", "intermediate_size", "count"), ("embedding_length", "hidden_size", "count"),
    ("rope.freq_base", "rope_theta", "float"), ("attention.head_count", "num_attention_heads", "count"),
    ("attention.head_count_kv", "num_key_value_heads", "count"),
    ("attention.layer_norm_rms_epsilon", "rms_norm_eps", "float"), ("vocab_size", "vocab_size", "count"),
)
TOKEN_IDS = (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
             ("unknown_token_id", "unk_token_id"), ("padding_token_id", "pad_token_id"))
LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
YARN_KEYS = (("original_context_length", "original_max_position_embeddings", "count"),
             ("yarn_beta_fast", "beta_fast", "float"), ("yarn_beta_slow", "beta_slow", "float"))
UNTRANSLATED_ROPE = ("attn_factor", "yarn_ext_factor", "yarn_attn_factor", "yarn_log_multiplier", "alpha")


@dataclass(frozen=True)
class Architecture:
    """One `general.architecture`: the model_type it loads as, its extra keys and tensor names, its transforms."""

    model_type: str
    keys: tuple[tuple[str, str, str], ...] = ()
    names: dict[str, str] = field(default_factory=dict)  # per-layer names that differ from BLOCK_NAMES
    permute_qk: bool = False  # llama.cpp permutes llama's q / k rows (`LlamaModel.permute` in its converter)
    norm_shift: float = 0.0  # Gemma's norms are stored as `w + 1` (the converter's `norm_shift`)


ARCHITECTURES = {
    "llama": Architecture("llama", (("rope.dimension_count", "head_dim", "count"),), permute_qk=True),
    "qwen2": Architecture("qwen2"),
    # transformers 5.24 drops key_length and falls back to Qwen3Config's head_dim of 128: read what the file says
    "qwen3": Architecture("qwen3", (("attention.key_length", "head_dim", "count"),)),
    "gemma3": Architecture("gemma3_text", (("attention.key_length", "head_dim", "count"),
                                           ("attention.sliding_window", "sliding_window", "count")),
                           names={"ffn_norm": "pre_feedforward_layernorm",
                                  "post_attention_norm": "post_attention_layernorm",
                                  "post_ffw_norm": "post_feedforward_layernorm"},
                           norm_shift=1.0),
}


def metadata_value(gguf: GGUFFile, key: str, kind: str) -> Any:
    """`key`'s value checked to be of `kind` (count: an integer >= 0; float; string; bool), or None when absent."""
    if key not in gguf.metadata:
        return None
    value, stored = gguf.metadata[key], gguf.types[key][0]
    ok = {"count": stored in INTEGERS and value >= 0, "float": stored in FLOATS + INTEGERS,
          "string": stored == STRING, "bool": stored == 7}[kind]
    if not ok or (kind == "float" and not math.isfinite(value)):
        expected = {"count": "a non-negative integer", "float": "a finite number", "string": "a string",
                    "bool": "a bool"}[kind]
        raise CheckpointError(f"{gguf.path}: metadata key {key!r} must be {expected}, got "
                              f"{_type_name(gguf.types[key])} {value!r:.60}")
    return float(value) if kind == "float" else value


def _type_name(types: tuple[int, ...]) -> str:
    from .gguf import TYPE_NAMES

    return " of ".join(TYPE_NAMES.get(t, str(t)) for t in types if t is not None)


def architecture(gguf: GGUFFile) -> tuple[str, Architecture]:
    """The file's `general.architecture` and how triformers reads it; a ConfigError for one it does not."""
    name = metadata_value(gguf, "general.architecture", "string")
    if name is None:
        raise CheckpointError(f"{gguf.path}: metadata key 'general.architecture' is missing")
    if name not in ARCHITECTURES:
        raise ConfigError(f"{gguf.path}: GGUF architecture {name!r} is not supported; supported: "
                          f"{', '.join(ARCHITECTURES)}")
    split = metadata_value(gguf, "split.count", "count")
    if split is not None and split > 1:
        raise CheckpointError(f"{gguf.path} is part of a split GGUF ({split} files); merge it first "
                              "(llama-gguf-split --merge) and load the merged file")
    return name, ARCHITECTURES[name]


def hf_config(gguf: GGUFFile) -> dict[str, Any]:
    """The file's metadata as a transformers config dict (the keys of transformers' own conversion)."""
    arch, spec = architecture(gguf)
    config: dict[str, Any] = {"tie_word_embeddings": "output.weight" not in gguf.tensors,
                              "model_type": spec.model_type}
    name = metadata_value(gguf, "general.name", "string")
    if name is not None:
        config["_model_name_or_path"] = name
    for suffix, key, kind in COMMON_KEYS + spec.keys:
        value = metadata_value(gguf, f"{arch}.{suffix}", kind)
        if value is not None:
            config[key] = value
    tokens = gguf.metadata.get("tokenizer.ggml.tokens")
    if "vocab_size" not in config and isinstance(tokens, list):
        config["vocab_size"] = len(tokens)
    for gguf_key, key in TOKEN_IDS:
        value = metadata_value(gguf, f"tokenizer.ggml.{gguf_key}", "count")
        if value is not None:
            if "vocab_size" in config and value >= config["vocab_size"]:
                raise CheckpointError(f"{gguf.path}: metadata key 'tokenizer.ggml.{gguf_key}' is {value}, outside "
                                      f"the vocabulary of {config['vocab_size']}")
            config[key] = value
    scaling = rope_scaling(gguf, arch, config)
    if scaling is not None:
        config["rope_scaling"] = scaling
    return config


def rope_scaling(gguf: GGUFFile, arch: str, config: dict[str, Any]) -> dict[str, Any] | None:
    """transformers' `rope_scaling` for what the file says: `rope.scaling.type` linear / yarn, or llama 3's
    per-frequency factors stored as the `rope_freqs` tensor. Anything else is refused rather than run wrong."""
    kind = metadata_value(gguf, f"{arch}.rope.scaling.type", "string")
    factor = metadata_value(gguf, f"{arch}.rope.scaling.factor", "float")
    if "rope_freqs.weight" in gguf.tensors:
        if kind not in (None, "none"):
            raise ConfigError(f"{gguf.path}: both rope_freqs and rope.scaling.type {kind!r}; refused")
        return llama3_rope(gguf, config)
    if kind in (None, "none") or (kind == "linear" and factor in (None, 1.0)):
        return None
    for suffix in UNTRANSLATED_ROPE:
        if f"{arch}.rope.scaling.{suffix}" in gguf.metadata:
            raise ConfigError(f"{gguf.path}: metadata key '{arch}.rope.scaling.{suffix}' has no transformers "
                              "rope_scaling equivalent triformers knows; refused rather than run differently")
    if factor is None or factor <= 0:
        raise ConfigError(f"{gguf.path}: rope scaling {kind!r} needs a positive '{arch}.rope.scaling.factor'")
    if kind == "linear":
        return {"rope_type": "linear", "factor": factor}
    if kind == "yarn":
        out = {"rope_type": "yarn", "factor": factor}
        for suffix, key, value_kind in YARN_KEYS:
            value = metadata_value(gguf, f"{arch}.rope.scaling.{suffix}", value_kind)
            if value is not None:
                out[key] = value
        return out
    raise ConfigError(f"{gguf.path}: rope scaling type {kind!r} ('{arch}.rope.scaling.type') is not supported; "
                      "supported: none, linear, yarn, llama 3's rope_freqs")


def llama3_factors(params: dict[str, Any], theta: float, head_dim: int) -> torch.Tensor:
    """inv_freq / llama3-scaled inv_freq: the factors llama.cpp stores, from transformers' llama3 formula."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    old = params["original_max_position_embeddings"]
    low, high, factor = params["low_freq_factor"], params["high_freq_factor"], params["factor"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old / low, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    return inv_freq / torch.where(medium, smoothed, scaled)


def llama3_rope(gguf: GGUFFile, config: dict[str, Any]) -> dict[str, Any]:
    """The llama3 `rope_scaling` whose factors are the file's `rope_freqs` tensor. llama.cpp keeps only the
    factors; the release values of Llama 3.x (low 1, high 4, original length 8192) are tried first, else the two
    band edges are fitted from the factors between 1 and `factor`; either is kept only if it gives the file's
    factors back."""
    factors = gguf.read("rope_freqs.weight").double()
    head_dim = config.get("head_dim") or config.get("hidden_size", 0) // max(1, config.get("num_attention_heads", 1))
    theta = config.get("rope_theta", 10000.0)
    if factors.dim() != 1 or factors.numel() * 2 != head_dim or not torch.isfinite(factors).all() \
            or float(factors.min()) < 1.0 - 1e-6:
        raise CheckpointError(f"{gguf.path}: tensor 'rope_freqs.weight' has shape {tuple(factors.shape)}; llama "
                              f"3's rope factors are head_dim / 2 = {head_dim // 2} values >= 1")
    candidates = [{"rope_type": "llama3", "factor": float(factors.max()), **LLAMA3_ROPE}]
    fitted = _fit_llama3(factors, theta, head_dim)
    if fitted is not None:
        candidates.append({**candidates[0], **fitted})
    for params in candidates:
        if torch.allclose(llama3_factors(params, theta, head_dim).double(), factors, rtol=1e-4, atol=1e-5):
            return params
    raise ConfigError(f"{gguf.path}: tensor 'rope_freqs.weight' holds rope factors that no llama3 rope_scaling "
                      "reproduces; refused rather than run with other positions")


def _fit_llama3(factors: torch.Tensor, theta: float, head_dim: int) -> dict[str, float] | None:
    """low / high frequency factors from the factors strictly between 1 and the maximum (the smooth band, where
    1 / f is linear in original_length / wavelength), for the original length of 8192; None if too few."""
    factor = float(factors.max())
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    ratio = LLAMA3_ROPE["original_max_position_embeddings"] * inv_freq / (2 * math.pi)  # old / wavelen
    band = (factors > 1 + 1e-6) & (factors < factor - 1e-6)
    if int(band.sum()) < 2 or factor <= 1:
        return None
    smooth = (1 / factors[band] - 1 / factor) / (1 - 1 / factor)  # = (ratio - low) / (high - low)
    x = ratio[band]
    slope = float(((x - x.mean()) * (smooth - smooth.mean())).sum() / ((x - x.mean()) ** 2).sum())
    if slope <= 0:
        return None
    low = float(x.mean() - smooth.mean() / slope)
    return {"low_freq_factor": round(low, 4), "high_freq_factor": round(low + 1 / slope, 4)}


def hf_name(name: str, spec: Architecture, layers: int) -> str | None:
    """transformers' name for a GGUF tensor, or None for one no transformers model has."""
    top = re.fullmatch(r"(\w+)\.(weight|bias)", name)
    if top and top.group(1) in TOP_NAMES:
        return f"{TOP_NAMES[top.group(1)]}.{top.group(2)}"
    block = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", name)
    if block is None or int(block.group(1)) >= layers or block.group(1) != str(int(block.group(1))):
        return None
    part = spec.names.get(block.group(2), BLOCK_NAMES.get(block.group(2)))
    if part is None:
        return None
    return f"model.layers.{block.group(1)}.{part}.{block.group(3)}"


def unpermute(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's q / k row order: it interleaves each head's two rotary halves; transformers' rotate-half
    keeps them apart. (heads * 2 * half, ...) -> (heads, half, 2, ...) -> swap -> back."""
    half = tensor.shape[0] // heads // 2
    return tensor.reshape(heads, half, 2, *tensor.shape[1:]).transpose(1, 2).reshape(tensor.shape)


class GGUFTensors(Mapping):
    """transformers name -> dequantized float32 tensor of one GGUF file, each read when first asked for; tensors no
    transformers model has (a name llama.cpp writes for another architecture) keep their GGUF names, so that
    loading reports them as unused. `forget` drops a kept tensor once the model holds its own copy."""

    def __init__(self, gguf: GGUFFile, config: dict[str, Any] | None = None):
        _, self.spec = architecture(gguf)
        self.gguf = gguf
        self.config = config = hf_config(gguf) if config is None else config  # the file's own head counts
        layers = config.get("num_hidden_layers", 0)
        self._names: dict[str, str] = {}
        for name in gguf.tensors:
            if name == "rope_freqs.weight":
                continue  # read into the config's rope_scaling
            self._names[hf_name(name, self.spec, layers) or name] = name
        gguf.check_types(n for key, n in self._names.items() if key != n)
        self._loaded: dict[str, torch.Tensor] = {}
        self.stamp = gguf.identity

    @property
    def dtype(self) -> torch.dtype:
        """The file's own float type, as transformers reads it for `dtype="auto"`: float32 where any tensor is
        quantized, else bfloat16 / float16 if any tensor is stored so, else float32."""
        types = {info.type_name for info in self.gguf.tensors.values()}
        if not types <= {"F32", "F16", "BF16"}:
            return torch.float32
        return torch.bfloat16 if "BF16" in types else torch.float16 if "F16" in types else torch.float32

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._loaded:
            self._loaded[key] = self._convert(key, self.gguf.read(self._names[key]))
        return self._loaded[key]

    def _convert(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        if self.spec.permute_qk and (".q_proj." in key or ".k_proj." in key):
            heads = self.config.get("num_attention_heads")
            if ".k_proj." in key:
                heads = self.config.get("num_key_value_heads", heads)
            if heads and tensor.shape[0] % (2 * heads) == 0:
                tensor = unpermute(tensor, heads)
        if self.spec.norm_shift and re.search(r"norm\.weight$", key):
            tensor = tensor - self.spec.norm_shift
        return tensor.contiguous()

    def forget(self, key: str) -> None:
        self._loaded.pop(key, None)

    def gguf_name(self, key: str) -> str:
        return self._names[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, key: object) -> bool:
        return key in self._names
