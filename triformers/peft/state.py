"""An adapter's tensors under peft's key names, and its folder (`adapter_config.json`, `adapter_model.safetensors`).

peft keys (peft/utils/save_and_load.py, adapter name removed): `base_model.model.<transformers module>.lora_A.weight`
and `.lora_B.weight` per targeted module; a module in modules_to_save as its plain transformers tensor names
(`base_model.model.classifier.weight`); with bias="all" / "lora_only" the biases trained, a LoRA-wrapped module's as
`<module>.base_layer.bias`. Each key is a `Slot` that reads our tensors out in that layout and writes a file's
tensors back through the weight table (so a module in modules_to_save that triformers fuses is split and joined as
the checkpoint loader does it), with shapes checked. Saving and loading both come from the one list of slots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..io.files import write_json
from ..io.publish import publish, reading
from ..io.weights import read_tensor_file
from .config import CONFIG_NAME, LoraConfig
from .tuner import LoraModel

logger = logging.getLogger("triformers")
PREFIX = "base_model.model."
WEIGHTS_NAME, BIN_NAME = "adapter_model.safetensors", "adapter_model.bin"
# keys peft writes with bias="all" besides the biases themselves: its wrapper's internal copies, not read
PEFT_ARTIFACTS = (".modules_to_save.", ".original_module.")


@dataclass
class Slot:
    """Some keys of an adapter file: `read` gives their tensors (in key order), `write` takes them back."""

    keys: tuple[str, ...]
    read: Callable[[], tuple[torch.Tensor, ...]]
    write: Callable[[tuple[torch.Tensor, ...]], None]


def _copy_into(target: torch.Tensor) -> Callable[[tuple[torch.Tensor, ...]], None]:
    def write(tensors: tuple[torch.Tensor, ...]) -> None:
        with torch.no_grad():
            target.copy_(tensors[0])
    return write


def _rule_slot(lora: LoraModel, ours: str, target: torch.Tensor, names: Callable[[str], str] = lambda n: n) -> Slot:
    """One of our tensors as the checkpoint's tensors it is made of, through the weight table's rule for it."""
    entries = sorted((e for e in lora.layout.entries.values() if e.ours == ours), key=lambda e: e.index)
    rule, config = entries[0].rule, lora.model.config

    def read() -> tuple[torch.Tensor, ...]:
        tensor = target.detach()
        return tuple(rule.save(tensor, config)) if rule.save else (tensor,)

    def write(tensors: tuple[torch.Tensor, ...]) -> None:
        value = rule.load(tensors, config) if rule.load else tensors[0]
        with torch.no_grad():
            target.copy_(value)
    return Slot(tuple(PREFIX + names(e.name) for e in entries), read, write)


def slots(lora: LoraModel, adapter: str) -> list[Slot]:
    """Every key of `adapter`'s file, with how to read and write it."""
    config: LoraConfig = lora.peft_config[adapter]
    found = []
    for wrapper in lora.lora_layers():
        for short, piece in wrapper.slices.get(adapter, {}).items():
            for kind, store in (("lora_A", wrapper.lora_A), ("lora_B", wrapper.lora_B)):
                tensor = store[adapter][short]
                found.append(Slot((f"{PREFIX}{piece.part.name}.{kind}.weight",), lambda t=tensor: (t.detach(),),
                                  _copy_into(tensor)))
    for path, module in lora.saved_modules():
        if adapter not in module.modules_to_save:
            continue
        copy = dict(module.modules_to_save[adapter].state_dict(keep_vars=True))
        owned = sorted({e.ours for e in lora.layout.entries.values() if e.ours.startswith(path + ".")})
        found += [_rule_slot(lora, ours, copy[ours[len(path) + 1:]]) for ours in owned]
    if config.bias != "none":
        found += _bias_slots(lora, config)
    return found


def _bias_slots(lora: LoraModel, config: LoraConfig) -> list[Slot]:
    """The biases a bias="all" / "lora_only" adapter trains and saves, under peft's names."""
    wrapped, trained_slices = set(), {}
    for wrapper in lora.lora_layers():
        for slices in wrapper.slices.values():
            wrapped |= {s.part.name for s in slices.values()}
        for short, tensor in wrapper.lora_bias.items():
            trained_slices[wrapper.bias_parts[short].name] = tensor

    def peft_name(name: str) -> str:
        module = name.removesuffix(".bias")
        return f"{module}.base_layer.bias" if module in wrapped else name

    saved_paths = [n for n, _ in lora.saved_modules()]
    found, done = [], set()
    for entry in lora.layout.entries.values():
        module = entry.name.removesuffix(".bias")
        if not entry.name.endswith(".bias") or any(entry.ours.startswith(p + ".") for p in saved_paths):
            continue
        if config.bias == "lora_only" and module not in wrapped:
            continue
        if module in trained_slices:
            tensor = trained_slices[module]
            found.append(Slot((PREFIX + peft_name(entry.name),), lambda t=tensor: (t.detach(),), _copy_into(tensor)))
        elif entry.ours not in done and (config.bias == "all" or _covers(lora, entry.ours, wrapped)):
            done.add(entry.ours)
            found.append(_rule_slot(lora, entry.ours, lora.param(entry.ours), peft_name))
    return found


def _covers(lora: LoraModel, ours: str, wrapped: set[str]) -> bool:
    """Whether every transformers module sharing our bias `ours` is LoRA-wrapped (then the whole bias trains)."""
    return all(e.name.removesuffix(".bias") in wrapped for e in lora.layout.entries.values() if e.ours == ours)


def adapter_state_dict(lora: LoraModel, adapter: str) -> dict[str, torch.Tensor]:
    """`adapter`'s tensors under peft's keys (what adapter_model.safetensors holds), on the CPU."""
    out = {}
    for slot in slots(lora, adapter):
        out.update(zip(slot.keys, (t.detach().to("cpu").contiguous() for t in slot.read()), strict=True))
    return out


def load_adapter_state_dict(lora: LoraModel, adapter: str, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Put a file's tensors (peft's keys) into `adapter`'s slots: every key must be known and every slot filled,
    with its shape."""
    known = set()
    for slot in slots(lora, adapter):
        known.update(slot.keys)
        missing = [k for k in slot.keys if k not in tensors]
        if missing:
            raise CheckpointError(f"{where}: the adapter lacks {missing[:4]} (its config targets these modules)")
        values = tuple(tensors[k] for k in slot.keys)
        for key, value, current in zip(slot.keys, values, slot.read(), strict=True):
            if tuple(value.shape) != tuple(current.shape):
                raise CheckpointError(f"{where}: {key} has shape {tuple(value.shape)}, this model needs "
                                      f"{tuple(current.shape)} (an adapter for another model or another r?)")
            if not value.is_floating_point():
                raise CheckpointError(f"{where}: {key} is {value.dtype}, not a floating-point tensor")
        slot.write(values)
    unknown = sorted(k for k in tensors if k not in known and not any(a in k for a in PEFT_ARTIFACTS))
    if unknown:
        raise CheckpointError(f"{where}: {len(unknown)} tensors fit no module this adapter's config targets: "
                              f"{unknown[:6]}{' ...' if len(unknown) > 6 else ''}")


def adapter_weight_names(folder: Path) -> list[str]:
    """The adapter weight files in `folder`: what a new save must not leave behind."""
    return [n for n in (WEIGHTS_NAME, BIN_NAME) if (Path(folder) / n).is_file()]


def save_adapter(lora: LoraModel, adapter: str, folder: Path) -> None:
    """adapter_config.json + adapter_model.safetensors, published into `folder` as one set (an older
    adapter_model.bin removed with it)."""
    config = lora.peft_config[adapter]
    data = config.to_dict()
    data["inference_mode"] = True  # as peft writes it: a saved adapter loads for inference unless asked
    state = adapter_state_dict(lora, adapter)
    with publish(folder, stale=adapter_weight_names) as staging:
        save_file(state, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        write_json(staging / CONFIG_NAME, data)


def read_adapter(folder: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of an adapter folder (safetensors first, else peft's older adapter_model.bin) and the file."""
    with reading(folder) as view:
        for name in (WEIGHTS_NAME, BIN_NAME):
            path = view.path(name)
            if path.exists():
                return read_tensor_file(path), str(Path(folder) / name)
    raise CheckpointError(f"no adapter weights in {folder}: expected {WEIGHTS_NAME} or {BIN_NAME}")
