"""Memory a model asks for, against the memory the machine has; and the dtype and device names users give.

Each size in a config is bounded on its own (`config.LIMITS`), but sizes multiply: a vocabulary of 2**24 by a
hidden size of 2**17 passes every per-field bound and asks for 8 TiB, and the caps on beams and positions
multiply into a KV cache no machine holds. This module bounds the products, before anything is allocated:

- `parameter_count(config, family, head)`: the parameters of the model a ModelConfig describes, by the same
  arithmetic as the layers' shapes (embeddings, per-stack attention / MLP / norms, heads); `tests/test_size_limits.py`
  holds it equal to `sum(p.numel())` for every registered dialect and head.
- `check_model_memory`: those parameters (and buffers) in the load dtype against the machine's memory, a
  ConfigError naming both byte counts; `TransformerModel.__init__` calls it for a model built with real storage
  (`from_config`), the loader for `from_pretrained` (in the dtype it loads in).
- `check_generation_memory`: the decode state `generate` preallocates (KV cache: 2 x layers x rows x heads x
  positions x head_dim x dtype bytes, cross-attention keys and values, scores, token buffers) against the
  memory left beside the model, an InputError naming both.
- The machine's memory is the smallest of physical memory (`os.sysconf`), the cgroup limit (v1 or v2) when one
  is set, and the process' address-space limit (RLIMIT_AS); a CUDA device's is its total memory.
- `parse_dtype` / `parse_device`: the dtype names transformers accepts (`"bfloat16"`, `"torch.float16"`,
  `"auto"`, a torch.dtype) and device names, checked once with an error naming the argument: a non-floating
  dtype, an unknown name, or a device this machine lacks (`cuda` without CUDA) is refused before a model moves.

The figures are estimates from above of what is held at once, never of what a kernel may add temporarily: the
check refuses what cannot fit, it does not promise that everything below the bound does.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

import torch

from .config import ModelConfig
from .errors import ConfigError, InputError

FLOAT_DTYPES = {"float32": torch.float32, "float": torch.float32, "float16": torch.float16, "half": torch.float16,
                "bfloat16": torch.bfloat16, "float64": torch.float64, "double": torch.float64}
UNLIMITED = 2**62  # cgroup v1 writes "no limit" as a number near 2**63


# ---- parameters ------------------------------------------------------------------------------------------------
def _field(config: ModelConfig, name: str, default: Any) -> Any:
    """A ModelConfig field that newer configs may have (never a checkpoint key of the same name)."""
    value = vars(config).get(name)
    return default if value is None else value


def _linear(inputs: int, outputs: int, bias: bool) -> int:
    return inputs * outputs + (outputs if bias else 0)


def _norm(config: ModelConfig, dim: int, bias: bool) -> int:
    return dim if config.norm == "rms" else dim * (2 if bias else 1)


def _attention(config: ModelConfig, cross: bool) -> int:
    H, bias, head_dim = config.hidden_size, config.bias, config.attention_head_dim
    inner = config.num_heads * head_dim
    if cross:  # q from the decoder, fused k|v from the encoder output
        return _linear(H, inner, bias) + _linear(H, 2 * inner, bias) + _linear(inner, H, bias)
    kv_inner = _field(config, "num_kv_heads", config.num_heads) * head_dim
    qk_norm = 2 * _norm(config, head_dim, bias) if config.qk_norm else 0
    return (_linear(H, inner + 2 * kv_inner, config.layer_bias("qkv")) + _linear(inner, H, config.layer_bias("out"))
            + qk_norm)


def _block(config: ModelConfig, cross: bool) -> int:
    H, inner, bias = config.hidden_size, config.intermediate_size, config.bias
    mlp_bias = config.layer_bias("mlp")
    mlp = _linear(H, inner, mlp_bias) * (2 if config.gated_mlp else 1) + _linear(inner, H, mlp_bias)
    norms = (3 if cross else 2 + 2 * int(config.sandwich_norm)) * _norm(config, H, bias)
    return _attention(config, False) + (_attention(config, True) if cross else 0) + mlp + norms


def _stack(config: ModelConfig, layers: int, cross: bool = False) -> int:
    """A `layers.block.Stack`: position and type tables, embedding norm, relative bias, blocks, final norm."""
    H, bias = config.hidden_size, config.bias
    total = layers * _block(config, cross)
    if config.positions == "learned":
        total += (config.max_positions + config.position_offset) * H
    if config.positions == "relative":
        total += config.relative_buckets * config.num_heads
    total += config.type_vocab_size * H
    total += _norm(config, H, bias) * (int(config.embedding_norm) + int(config.final_norm))
    if config.embedding_width != H:  # OPT's project_in and project_out
        total += 2 * config.embedding_width * H
    return total


def _classifier(config: ModelConfig) -> int:
    H, labels = config.hidden_size, config.num_labels
    if config.classifier == "dense_tanh":
        return _linear(H, H, True) + _linear(H, labels, True)
    return _linear(H, labels, config.classifier == "pooled")


def _head(config: ModelConfig, family: str, head: str | None) -> int:
    H, V = config.hidden_size, config.vocab_size
    untied = 0 if config.tie_word_embeddings else V * (config.embedding_width if family == "decoder" else H)
    if head == "sequence_classification":
        pooled = family == "encoder" and config.pooler and config.classifier == "pooled"
        return _classifier(config) + (_linear(H, H, True) if pooled else 0)
    if family == "decoder" and head in ("token_classification", "question_answering"):
        return _linear(config.embedding_width, config.num_labels if head == "token_classification" else 2, True)
    if family != "encoder":
        return untied if head == "lm" else 0
    if head is None:
        return _linear(H, H, True) if config.pooler else 0
    if head == "mlm":  # dense, norm (LayerNorm with its bias whatever `bias` says), decoder, output bias
        return _linear(H, H, True) + _norm(config, H, True) + untied + V
    return _linear(H, config.num_labels if head == "token_classification" else 2, True)


def parameter_count(config: ModelConfig, family: str, head: str | None = None) -> int:
    """The parameters of a `family` model (encoder | decoder | encoder-decoder) with `head` built from `config`."""
    total = config.vocab_size * config.embedding_width  # token embeddings, shared by both stacks of an encoder-decoder
    total += _stack(config, config.num_layers)
    if family == "encoder-decoder":
        total += _stack(config.decoder_stack(), config.decoder_layers, cross=True)
    return total + _head(config, family, head)


def buffer_count(config: ModelConfig, family: str, head: str | None = None) -> int:
    """Elements of the buffers a model owns besides its parameters (BART's final_logits_bias)."""
    return config.vocab_size if family == "encoder-decoder" and head == "lm" and config.final_logits_bias else 0


# ---- the machine -----------------------------------------------------------------------------------------------
def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) < UNLIMITED else None


def cgroup_limits(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> list[int]:
    """Memory limits of this process' cgroups: v2 `memory.max` and v1 `memory.limit_in_bytes`, at its own cgroup
    and each one above it (a parent's limit bounds its children)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    limits = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        v2 = parts[0] == "0" and parts[1] == ""
        if not v2 and "memory" not in parts[1].split(","):
            continue
        base, name = (root, "memory.max") if v2 else (root / "memory", "memory.limit_in_bytes")
        folder = base / parts[2].lstrip("/")
        for candidate in (folder, *folder.parents):
            limits.append(_read_limit(candidate / name))
            if candidate == base:
                break
    return [limit for limit in limits if limit is not None]


def machine_memory(device: torch.device | str | None = None) -> tuple[int, str]:
    """(bytes, what bounds them): the memory a model on `device` (default: the CPU) can have at most."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_properties(index).total_memory, f"the memory of {device}"
    bounds = [(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory")]
    bounds += [(limit, "the cgroup memory limit") for limit in cgroup_limits()]
    address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
    if address_space != resource.RLIM_INFINITY:
        bounds.append((address_space, "the address-space limit (RLIMIT_AS)"))
    return min(bounds)


def describe(count: int) -> str:
    """A byte count, exact and in a readable unit."""
    unit, scale = next(((u, s) for u, s in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)) if count >= s),
                       ("KiB", 2**10))
    return f"{count} bytes ({count / scale:.1f} {unit})"


def element_size(dtype: torch.dtype | None) -> int:
    return torch.empty((), dtype=dtype or torch.get_default_dtype()).element_size()


def model_bytes(config: ModelConfig, family: str, head: str | None, dtype: torch.dtype | None) -> int:
    return (parameter_count(config, family, head) + buffer_count(config, family, head)) * element_size(dtype)


def check_model_memory(config: ModelConfig, family: str, head: str | None, dtype: torch.dtype | None = None,
                       where: str | None = None, device: torch.device | str | None = None) -> None:
    """ConfigError when the model `config` describes cannot fit in the machine's memory, in `dtype`."""
    needed = model_bytes(config, family, head, dtype)
    have, bound = machine_memory(device)
    if needed > have:
        count = parameter_count(config, family, head)
        name = str(dtype or torch.get_default_dtype()).removeprefix("torch.")
        raise ConfigError(f"{where or f'config ({config.model_type})'}: the model it describes has {count} parameters, "
                          f"{describe(needed)} in {name}; this machine has {describe(have)} ({bound}); refused "
                          "before allocating (vocab_size x hidden_size and layers x intermediate_size dominate)")


# ---- generation ------------------------------------------------------------------------------------------------
def generation_bytes(model: Any, batch: int, source_length: int, positions: int, options: Any) -> int:
    """An estimate from above of the decode state one `generate` call holds at once (see the module docstring)."""
    config, element = model.config, element_size(model.dtype)
    beams = getattr(options, "num_beams", 1)
    rows = batch * (beams if beams > 1 else getattr(options, "num_return_sequences", 1))
    encoder_decoder = model.family == "encoder-decoder"
    layers = config.decoder_layers if encoder_decoder else config.num_layers
    heads, head_dim = config.decoder_heads, config.decoder_head_dim
    kv_heads = _field(config, "num_kv_heads", heads)
    cache = 2 * layers * rows * kv_heads * positions * head_dim * element if getattr(options, "use_cache", True) else 0
    if encoder_decoder:  # cross-attention keys and values, and the encoder output, one per row
        cache += 2 * layers * rows * heads * source_length * head_dim * element
        cache += rows * source_length * config.hidden_size * element
    if rows > batch:  # expanding to beams or return sequences (and each beam reorder) copies the cache
        cache *= 2
    scores = 4 * rows * config.vocab_size * 4  # float32 logits, processed scores, probabilities, top-k
    tokens = 4 * rows * positions * 8  # int64 sequences (and their beam reorders), positions, mask
    return cache + scores + tokens


def check_generation_memory(model: Any, batch: int, source_length: int, positions: int, options: Any) -> None:
    """InputError when `generate`'s decode state for `batch` prompts (of `source_length` encoder positions) and
    `positions` decoder positions cannot fit beside the model in its device's memory."""
    needed = generation_bytes(model, batch, source_length, positions, options)
    have, bound = machine_memory(model.device)
    held = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    if needed > have - held:
        raise InputError(f"generate: {batch} prompt(s) x num_beams={getattr(options, 'num_beams', 1)} / "
                         f"num_return_sequences={getattr(options, 'num_return_sequences', 1)} x {positions} positions "
                         f"need {describe(needed)} of KV cache and decode buffers; this machine has {describe(have)} "
                         f"({bound}), of which the model holds {describe(held)}; lower max_new_tokens, num_beams, "
                         "num_return_sequences or the batch")


# ---- names -----------------------------------------------------------------------------------------------------
def parse_dtype(value: Any, name: str = "dtype", auto: bool = True) -> torch.dtype | str | None:
    """A floating torch.dtype from a dtype or its name ("bfloat16", "torch.float16", "half"); None stays None, and
    "auto" (keep the checkpoint's) is returned as is where `auto`. Anything else: an InputError naming `name`."""
    if value is None or isinstance(value, torch.dtype) and value.is_floating_point:
        return value
    if auto and value == "auto":
        return "auto"
    if isinstance(value, str) and value.removeprefix("torch.") in FLOAT_DTYPES:
        return FLOAT_DTYPES[value.removeprefix("torch.")]
    allowed = ", ".join(["float32", "bfloat16", "float16", "float64"] + (["auto"] if auto else []))
    integer = str(value).removeprefix("torch.").startswith(("int", "uint"))
    hint = " (for integer weights use quantize='int8' or 'int4')" if integer else ""
    raise InputError(f"{name}={value!r} is not a floating-point dtype: use one of {allowed}{hint}")


def parse_device(value: Any, name: str = "device") -> torch.device | None:
    """A torch.device this machine has, from a device, its name ("cpu", "cuda:1", "mps") or a CUDA index (-1:
    the CPU, as transformers' pipelines); None stays None. Anything else: an InputError naming `name`."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(f"{name}={value!r} is not a device: use cpu, cuda, cuda:N or a CUDA index")
    try:
        if isinstance(value, int):
            device = torch.device("cpu") if value < 0 else torch.device("cuda", value)
        else:
            device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"{name}={value!r} is not a device torch knows: use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"{name}={value!r}: this machine has no CUDA device (torch sees none); use cpu")
        if device.index is not None and device.index >= count:
            raise InputError(f"{name}={value!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"{name}={value!r}: MPS is not available on this machine; use cpu")
    return device
