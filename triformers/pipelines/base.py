"""What every pipeline shares: loading a model and tokenizer, device and dtype, batching, and the small
tokenizer helpers the postprocessing needs.

A pipeline is `Pipeline(model, tokenizer, device=..., dtype=..., batch_size=..., **defaults)`; calling it
with one input returns one result and with a list returns a list, as transformers' pipelines do
(reference: transformers 5.x `pipelines/base.py`). Call-time keyword arguments override the defaults
given at construction.
"""

from __future__ import annotations

import abc
import os
from typing import Any, ClassVar, Iterator, Sequence

import torch

from ..errors import InputError
from ..io.pretrained import Checkpoint
from ..models import TransformerModel
from ..tokenization import Tokenizer

Device = int | str | torch.device | None


def resolve_device(device: Device) -> torch.device | None:
    """transformers' convention: -1 is the CPU, a non-negative int a CUDA index, else a torch device."""
    if device is None:
        return None
    if isinstance(device, bool):
        raise InputError(f"pipeline: device must be an int, a string or a torch.device, got {device!r}")
    if isinstance(device, int):
        return torch.device("cpu") if device < 0 else torch.device("cuda", device)
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"pipeline: device {device!r} is not a device torch knows ({err})") from None


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str | None:
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise InputError(f"pipeline: dtype {dtype!r} is not a torch dtype (e.g. 'float32', 'bfloat16')")
    return value


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=-1)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Pipeline(abc.ABC):
    """Base class: holds the model (in eval mode, on `device`, in `dtype`) and the tokenizer."""

    task: ClassVar[str] = ""
    auto_class: ClassVar[Any] = None  # the Auto class that loads a model given by path
    families: ClassVar[tuple[str, ...]] = ("encoder", "decoder", "encoder-decoder")  # models that serve it
    heads: ClassVar[tuple[str | None, ...]] = (None,)  # with these heads

    def __init__(self, model: TransformerModel, tokenizer: Tokenizer, device: Device = None,
                 dtype: torch.dtype | str | None = None, batch_size: int = 1, **defaults: Any):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise InputError(f"{self.task}: batch_size must be a positive integer, got {batch_size!r}")
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype)
        if torch_device is not None:
            model = model.to(torch_device)
        if isinstance(torch_dtype, torch.dtype):
            model = model.to(torch_dtype)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.config = model.config
        self.batch_size = batch_size
        self.defaults = defaults
        self.check_model()

    def check_model(self) -> None:
        """Raise InputError when the model cannot serve this task (the wrong family or head)."""
        model = self.model
        if model.family not in self.families or model.head not in self.heads:
            loader = getattr(self.auto_class, "__name__", "a suitable Auto class")
            raise InputError(f"{self.task} needs a {' or '.join(self.families)} model with the "
                             f"{' or '.join(map(repr, self.heads))} head (load it with {loader}); got a "
                             f"{model.family} model ({model.config.model_type}) with head {model.head!r}")

    @property
    def device(self) -> torch.device:
        return self.model.device

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        params = {**self.defaults, **kwargs}
        batch_size = params.pop("batch_size", self.batch_size)
        single = not isinstance(inputs, (list, tuple)) or self.is_single(inputs)
        items = [inputs] if single else list(inputs)
        if not items:
            raise InputError(f"{self.task}: got an empty list of inputs")
        with torch.inference_mode():
            results = self.run(items, batch_size, *args, **params)
        return results[0] if single else results

    def is_single(self, inputs: list | tuple) -> bool:
        """Whether a list is one input (e.g. pre-split words) rather than a batch."""
        return False

    @abc.abstractmethod
    def run(self, items: list[Any], batch_size: int, **params: Any) -> list[Any]:
        """One result per item, computed `batch_size` items at a time."""

    def encode(self, texts: Sequence[Any], pairs: Sequence[str] | None = None, **tokenizer_kwargs: Any):
        """Tokenize a batch (padded) and move it to the model's device."""
        padding = tokenizer_kwargs.pop("padding", True)
        batch = self.tokenizer(list(texts), list(pairs) if pairs is not None else None, padding=padding,
                               return_tensors="pt", **tokenizer_kwargs)
        return batch.to(self.device)

    def model_inputs(self, batch: dict) -> dict[str, torch.Tensor]:
        """The tokenizer outputs the model's forward takes (token_type_ids only for encoders)."""
        names = ["input_ids", "attention_mask"]
        if self.model.family == "encoder":
            names.append("token_type_ids")
        return {name: batch[name] for name in names if name in batch}


def load(auto_class: Any, model: str | os.PathLike | Checkpoint | TransformerModel, tokenizer: str | Tokenizer | None,
         dtype: torch.dtype | str | None, task: str) -> tuple[TransformerModel, Tokenizer]:
    """A model (path, located checkpoint or object) and its tokenizer (path, object, or the model's own folder)."""
    from ..tokenization import AutoTokenizer

    if isinstance(model, (str, os.PathLike, Checkpoint)):
        loaded = auto_class.from_pretrained(model, dtype=resolve_dtype(dtype))
        if tokenizer is None:
            tokenizer = model
    elif isinstance(model, TransformerModel):
        loaded = model
        if tokenizer is None:
            raise InputError(f"pipeline({task!r}): a model given as an object needs tokenizer=... "
                             "(a Tokenizer or the path of its folder)")
    else:
        raise InputError(f"pipeline({task!r}): model must be a path, a hub id or a triformers model, "
                         f"got {type(model).__name__}")
    if isinstance(tokenizer, (str, os.PathLike, Checkpoint)):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer if isinstance(tokenizer, Checkpoint) else str(tokenizer))
    if not isinstance(tokenizer, Tokenizer):
        raise InputError(f"pipeline({task!r}): tokenizer must be a path or a triformers Tokenizer, "
                         f"got {type(tokenizer).__name__}")
    return loaded, tokenizer
