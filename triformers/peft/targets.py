"""Where transformers' modules live inside a triformers model, derived from the dialect's weight table.

triformers fuses q|k|v into one `attn.qkv` (k|v into `cross_attn.kv`), so a transformers module such as T5's
`encoder.block.0.layer.0.SelfAttention.q` is a block of rows of one of our linear layers. Which rows, is what the
weight table already knows: its `save` transform turns our tensor into transformers' tensors. Fed a probe whose
entries number our rows, it hands back each transformers tensor as the row numbers it is made of (T5's q:
rows 0..inner; BLOOM's per-head interleaved `query_key_value`: all rows, permuted; GPT-2's `c_attn`: all rows,
transposed, as Conv1D stores it). So nothing here knows any dialect: a new one with fused projections (Llama's
gate|up) is mapped the day its table is written.

`Layout` holds, for one model: every transformers linear module as a `Part` (our module, its rows, its input
width, Conv1D or not), every checkpoint tensor name as an `Entry` (the parameter of ours it is, or the rows of it),
and every transformers module path (for peft's suffix matching of names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..dialects import Rule, get_dialect
from ..errors import ConfigError
from ..io.state import hf_name, hf_prefix
from ..layers.int8 import Int8Linear

LINEAR = (nn.Linear, Int8Linear)
PROBE_WIDTH = 3  # probe columns: enough to tell a (rows, in) tensor from its (in, rows) transpose


@dataclass(frozen=True)
class Part:
    """A transformers nn.Linear / Conv1D: rows `rows` of our linear layer `module`."""

    name: str  # transformers' module path, e.g. "encoder.block.0.layer.0.SelfAttention.q"
    module: str  # ours, e.g. "encoder.layers.0.attn.qkv"
    rows: range | tuple[int, ...]  # our output rows, in transformers' order (a range when contiguous)
    in_features: int
    conv1d: bool  # transformers stores it (in, out): peft sets fan_in_fan_out for it

    @property
    def out_features(self) -> int:
        return len(self.rows)

    @property
    def short(self) -> str:
        return self.name.rpartition(".")[2]


@dataclass(frozen=True)
class Entry:
    """One checkpoint tensor: our parameter `ours` (or its rows `rows`), written by position `index` of `rule`."""

    name: str
    ours: str
    rule: Rule
    index: int
    rows: range | tuple[int, ...] | None = None


@dataclass
class Layout:
    parts: dict[str, Part] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)  # every transformers module path, parents first
    output_head: set[str] = field(default_factory=set)  # transformers name of the vocabulary projection

    def entries_under(self, module: str) -> list[Entry]:
        return [e for name, e in self.entries.items() if name.startswith(module + ".")]


def unwrapped(module: nn.Module) -> nn.Module:
    """The layer an adapter wrapper holds (LoraLinear's base_layer, ModulesToSave's original_module)."""
    for attribute in ("base_layer", "original_module"):
        inner = module._modules.get(attribute) if isinstance(module, nn.Module) else None
        if inner is not None:
            return unwrapped(inner)
    return module


def _rows(tensor: torch.Tensor, probe: torch.Tensor) -> tuple[range | tuple[int, ...], bool] | None:
    """Which probe rows `tensor` is made of, and whether transposed; None if it is not a block of whole rows."""
    candidates = [(tensor, False)]
    if probe.dim() == 2 and tensor.dim() == 2:
        candidates.append((tensor.t(), True))
    width = probe.shape[1] if probe.dim() == 2 else 1
    for candidate, transposed in candidates:
        if candidate.dim() != probe.dim() or candidate.shape[1:] != probe.shape[1:]:
            continue
        first = candidate[:, 0] if probe.dim() == 2 else candidate
        rows = first / width
        if not torch.equal(rows, rows.round()) or rows.min() < 0 or rows.max() >= probe.shape[0]:
            continue
        index = rows.long()
        if torch.equal(candidate, probe[index]):
            values = tuple(index.tolist())
            contiguous = values == tuple(range(values[0], values[0] + len(values)))
            return (range(values[0], values[0] + len(values)) if contiguous else values), transposed
    return None


def _row_blocks(rule: Rule, out: int, weight: bool, config) -> list | None:
    """For a rule on one of our (out, in) weights or (out,) biases: each checkpoint tensor's rows (see `_rows`)."""
    count = out * (PROBE_WIDTH if weight else 1)
    probe = torch.arange(count, dtype=torch.float64, device="cpu")  # also while building on the meta device
    probe = probe.view(out, PROBE_WIDTH) if weight else probe
    try:
        tensors = rule.save(probe, config) if rule.save else (probe,)
    except (RuntimeError, ValueError, IndexError) as err:
        raise ConfigError(f"the weight table's rule for {rule.ours} cannot be mapped onto rows: {err}") from None
    return [_rows(t, probe) for t in tensors]


def layout(model: nn.Module) -> Layout:
    """The Layout of a triformers model (adapter wrappers already in it are looked through)."""
    config = model.config
    dialect = get_dialect(config.model_type)
    prefix = hf_prefix(dialect, model)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    result, probes = Layout(), {}
    for rule in dialect.rules(config, model.head):
        for ours, theirs in rule.expand(config):
            module_path, _, leaf = ours.rpartition(".")
            try:
                module = unwrapped(model.get_submodule(module_path)) if module_path else model
            except AttributeError:
                continue  # a head this model does not have
            linear = isinstance(module, LINEAR) and leaf in ("weight", "bias")
            if not linear and not hasattr(module, leaf):
                continue
            blocks = None
            if linear:
                key = (id(rule), leaf)
                if key not in probes:
                    probes[key] = _row_blocks(rule, module.out_features, leaf == "weight", config)
                blocks = probes[key]
            for index, name in enumerate(theirs):
                full = hf_name(rule, name, prefix)
                block = blocks[index] if blocks else None
                result.entries[full] = Entry(full, ours, rule, index, block[0] if block else None)
                if leaf == "weight" and block is not None and full.endswith(".weight"):
                    part = Part(full.removesuffix(".weight"), module_path, block[0], module.in_features, block[1])
                    result.parts[part.name] = part
                    if head is not None and module is head:
                        result.output_head.add(part.name)
    paths = {".".join(name.split(".")[:i]) for name in result.entries for i in range(1, name.count(".") + 1)}
    result.modules = sorted(paths, key=lambda p: (p.count("."), p))
    return result


# ---- peft's matching of names (peft/tuners/tuners_utils.py check_target_module_exists) -------------------------
def _listed(names, key: str) -> bool:
    """peft's list match: the name itself, or a name ending in ".<listed>"."""
    return key in names or any(key.endswith(f".{name}") for name in names)


def _layer_index_ok(config, key: str) -> bool:
    layers = config.layers_to_transform
    if layers is None or (isinstance(layers, list) and not layers):
        return True
    patterns = config.layers_pattern
    if not patterns:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)  # the first numbered segment: the layer
    else:
        match = None
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            match = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", key)
            if match is not None:
                break
    if match is None:
        return False
    index = int(match.group("idx"))
    return index == layers if isinstance(layers, int) else index in layers


def is_target(config, key: str, modules_to_save: list[str] | None) -> bool:
    """Whether peft would put this config's LoRA on the transformers module `key`."""
    excluded = config.exclude_modules
    if excluded and (re.fullmatch(excluded, key) if isinstance(excluded, str) else _listed(excluded, key)):
        return False
    if modules_to_save and any(re.match(rf"(^|.*\.){m}($|\..*)", key) for m in modules_to_save):
        return False
    targets = config.target_modules
    if isinstance(targets, str):
        return re.fullmatch(targets, key) is not None
    return _listed(targets, key) and (key in targets or _layer_index_ok(config, key))


def pattern_value(patterns: dict, key: str, default):
    """rank_pattern / alpha_pattern: the value of the first pattern that matches the end of `key` (peft's
    `get_pattern_key`), else `default`."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", key):
            return value
    return default
