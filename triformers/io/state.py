"""Checkpoint tensors <-> a model's parameters, both ways derived from the dialect's weight table.

Loading (`load_state`) is strict about the body and exact about heads: every parameter of the body
comes from the checkpoint with the right shape (else an error names the keys, shapes and file); a task
head the checkpoint lacks is initialised and reported in one line; tensors of heads the model does not
have are reported as unused; known buffers are dropped silently. The model is built on the meta device
and filled in place, so no random init is wasted and memory peaks near the size of the weights.
Saving (`state_dict_to_hf`) runs the same table backwards.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..dialects import Dialect, Rule, get_dialect
from ..errors import CheckpointError
from ..layers.storage import is_transposed

logger = logging.getLogger("triformers")
LEGACY_NAMES = ((re.compile(r"LayerNorm\.gamma$"), "LayerNorm.weight"),
                (re.compile(r"LayerNorm\.beta$"), "LayerNorm.bias"))


def _legacy(key: str) -> str:
    for pattern, new in LEGACY_NAMES:
        key = pattern.sub(new, key)
    return key


def _strip(name: str, prefixes: tuple[str, ...]) -> str:
    """A checkpoint name without the head class's nesting of the body (the first of `prefixes` it has)."""
    for prefix in prefixes:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _set_tensor(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=module._parameters[leaf].requires_grad)
    else:
        module._buffers[leaf] = tensor


def cast(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """Cast floating weights to dtype (those already in it are kept, not copied); T5's `wo` (mlp.down)
    stays fp32 when the config asks."""
    if dtype is None:
        return model
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(_param_dtype(model.config, name, dtype))
    return model


def _param_dtype(config: ModelConfig, name: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype a floating parameter is loaded in: `dtype`, except T5's `wo` kept in fp32 in half precision."""
    if (dtype in (torch.float16, torch.bfloat16) and getattr(config, "mlp_down_fp32", False)
            and ".mlp.down." in name):
        return torch.float32
    return dtype


def _plan(model: nn.Module, dialect: Dialect, tensors: Mapping[str, torch.Tensor]
          ) -> tuple[list[tuple[Any, str, tuple[str, ...], list[str]]], set[str]]:
    """For every parameter the weight table covers: (rule, our name, its checkpoint names, the checkpoint keys
    found for them); and every checkpoint key the table uses (alternatives included)."""
    prefixes = dialect.prefixes(model.head)
    available: dict[str, str] = {}  # normalised name -> name in the checkpoint
    for key in tensors:
        name = _strip(_legacy(key), prefixes)
        available[name] = key
    params = dict(model.named_parameters()) | dict(model.named_buffers())
    plan, used = [], set()
    for rule in dialect.rules(model.config, model.head):
        for ours, theirs in rule.expand(model.config):
            if ours not in params:
                continue  # a head this model does not have: its tensors stay unused
            found = []
            for name in theirs:
                alternatives = [a for a in name.split("|") if a in available]
                if alternatives:
                    found.append(available[alternatives[0]])
                    used.update(available[a] for a in alternatives)
            plan.append((rule, ours, tuple(theirs), found))
    return plan, used


def load_state(model: nn.Module, dialect: Dialect, tensors: Mapping[str, torch.Tensor], origin: dict[str, Path],
               ignore_mismatched_sizes: bool = False, dtype: torch.dtype | None = None) -> dict[str, list[str]]:
    """Fill a meta-device model from checkpoint tensors, floating ones in `dtype` (default: torch's
    default dtype); return what was new, unused, mismatched. Tensors read on demand (`LazyTensors`) are
    read ahead of their use, in the order they are used."""
    config: ModelConfig = model.config
    dtype = dtype or torch.get_default_dtype()
    params = dict(model.named_parameters()) | dict(model.named_buffers())
    where = sorted({str(p) for p in origin.values()})
    plan, used = _plan(model, dialect, tensors)
    if hasattr(tensors, "prefetch"):
        tensors.prefetch([key for *_, found in plan for key in found])
    filled, missing, mismatched, new = set(), [], [], []
    for rule, ours, theirs, found in plan:
        if len(found) < len(theirs):
            (new if rule.head is not None else missing).append(ours if rule.head else " + ".join(theirs))
            continue
        sources = tuple(tensors[k] for k in found)
        value = rule.load(sources, config) if rule.load else sources[0]
        target = params[ours]
        if value.is_floating_point() != target.is_floating_point():
            raise CheckpointError(f"dtype mismatch in {origin[found[0]]}: {', '.join(found)} is {value.dtype}, "
                                  f"the model needs a {'floating' if target.is_floating_point() else 'integer'} "
                                  "tensor")
        if tuple(value.shape) != tuple(target.shape):
            detail = f"{', '.join(found)} has shape {tuple(value.shape)}, the config needs {tuple(target.shape)}"
            if rule.head is not None and ignore_mismatched_sizes:
                mismatched.append(detail)
                new.append(ours)
                continue
            hint = " (pass ignore_mismatched_sizes=True to re-initialise this head)" if rule.head else ""
            raise CheckpointError(f"shape mismatch in {origin[found[0]]}: {detail}{hint}")
        if value.is_floating_point():
            value = value.to(_param_dtype(config, ours, dtype))
        if not is_transposed(value):  # GPT-2's Conv1D weights stay transposed views until used (layers.linear)
            value = value.contiguous()
        _set_tensor(model, ours, value)
        for key, source in zip(found, sources, strict=True):
            if source.untyped_storage().data_ptr() != value.untyped_storage().data_ptr() \
                    and hasattr(tensors, "forget"):
                tensors.forget(key)  # copied out (fused, cast): hold one copy, not two
        filled.add(ours)
    if missing:
        raise CheckpointError(f"checkpoint {', '.join(where)} lacks {len(missing)} tensors the model needs: "
                              + "; ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    unfilled = [name for name in params if name not in filled and name not in new]
    if unfilled:
        raise CheckpointError(f"{dialect.model_type} weight table does not cover parameters {unfilled[:8]}")
    prefixes = dialect.prefixes(model.head)
    unused = sorted(k for k in tensors if k not in used and not dialect.is_ignored(_strip(_legacy(k), prefixes)))
    _initialise_new(model, new)
    if new:
        logger.warning("newly initialised (not in the checkpoint): %s", ", ".join(new))
    if unused:
        logger.warning("unused checkpoint tensors (no such head in %s): %s", type(model).__name__,
                       ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else ""))
    for detail in mismatched:
        logger.warning("re-initialised after a size mismatch: %s", detail)
    return {"new": new, "unused": unused, "mismatched": mismatched}


def _initialise_new(model: nn.Module, names: list[str]) -> None:
    modules = []
    for name in names:
        module_name = name.rpartition(".")[0]
        module = model.get_submodule(module_name) if module_name else model
        if module not in modules:
            modules.append(module)
    for module in modules:
        module.to_empty(device="cpu", recurse=False)
    model.init_weights(modules)


def hf_prefix(dialect: Dialect, model: nn.Module) -> str:
    """How the checkpoint of `model` nests its body: the prefix of its task head class (none for the body)."""
    return dialect.prefix(model.head) if model.head is not None else ""


def hf_name(rule: Rule, name: str, prefix: str) -> str:
    """The full checkpoint name one of a rule's names is written under (the first of "a|b" alternatives): body and
    pooler tensors under the head class's prefix, head tensors at the top."""
    name = name.split("|")[0]
    return name if rule.head not in (None, "pooler") else prefix + name


def state_dict_to_hf(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our parameters under the checkpoint's names, through the save side of the weight table."""
    config: ModelConfig = model.config
    dialect = get_dialect(config.model_type)
    params = dict(model.named_parameters()) | dict(model.named_buffers())
    prefix = hf_prefix(dialect, model)
    out: dict[str, torch.Tensor] = {}
    for rule in dialect.rules(config, model.head):
        for ours, theirs in rule.expand(config):
            if ours not in params:
                continue
            tensor = params[ours].detach()
            values = rule.save(tensor, config) if rule.save else (tensor,)
            for name, value in zip(theirs, values, strict=True):
                out[hf_name(rule, name, prefix)] = value.to("cpu").contiguous().clone()
    return out
