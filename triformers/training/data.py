"""The Trainer's data: what datasets it takes, the columns it keeps, and the DataLoaders batches come from.

A dataset is anything with `len()` and `dataset[i]`: a list of dicts, a torch map-style `Dataset`, or a Hugging
Face `datasets.Dataset`, recognised by its `column_names` and `remove_columns` (triformers never imports
`datasets`). As transformers' `remove_unused_columns` does, the columns the model's forward does not take are
dropped: `remove_columns` on a `datasets.Dataset`, from each example's dict otherwise (`RemoveColumnsCollator`).

Training batches come from a `torch.utils.data.DataLoader` whose batch sampler (`StepBatches`) yields, step by
step from where the run stands, each micro-batch of this process as in `plan.Plan` (so a resumed run continues
with the very next micro-batch). Every example travels with the key (seed, split, step or batch, micro-batch,
rank) of its batch: a collator with a `generator` attribute (masking, span corruption) gets one seeded from that
key, so masks are the same with or without DataLoader workers, and after a resume.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import TrainingError
from .plan import Plan, epoch_order


def is_hf_dataset(data: Any) -> bool:
    """A `datasets.Dataset` (or anything shaped like one), told by duck typing."""
    return hasattr(data, "column_names") and hasattr(data, "remove_columns") and hasattr(data, "__getitem__")


def check_dataset(data: Any, role: str) -> None:
    if isinstance(data, torch.utils.data.IterableDataset) or not hasattr(data, "__len__"):
        raise TrainingError(f"{role} must have a length and be indexable (a list, a torch map-style Dataset or a "
                            f"datasets.Dataset); got {type(data).__name__}: the plan and exact resume need both")
    if not len(data):
        raise TrainingError(f"{role} is empty")


def inspected(model: Any) -> Any:
    """The model whose forward a batch feeds: an adapter wrapper's base model (transformers inspects a peft model's
    base model the same way), else the model."""
    base = getattr(model, "get_base_model", None)
    return base() if callable(base) else model


def default_label_names(model: Any) -> list[str]:
    """transformers' `find_labels`: the forward's arguments with "label" in the name, or for extractive QA
    start_positions and end_positions."""
    model = inspected(model)
    parameters = list(inspect.signature(model.forward).parameters)
    if getattr(model, "head", None) == "question_answering" or "QuestionAnswering" in type(model).__name__:
        return [p for p in parameters if p in ("start_positions", "end_positions")]
    return [p for p in parameters if "label" in p]


def signature_columns(model: Any, label_names: Sequence[str]) -> list[str]:
    """The columns a batch may keep: the forward's arguments, plus label / label_ids (the collators rename them)."""
    return list(inspect.signature(inspected(model).forward).parameters) + sorted({"label", "label_ids", *label_names})


def drop_unused_columns(data: Any, columns: Sequence[str], model_name: str) -> Any:
    """A `datasets.Dataset` without the columns the model does not take (a new dataset; the caller's is kept)."""
    unused = [c for c in data.column_names if c not in columns]
    if len(unused) == len(data.column_names):
        raise TrainingError(f"no column of the dataset ({', '.join(data.column_names)}) is an argument of "
                            f"{model_name}.forward ({', '.join(columns)}): tokenize it first, or pass "
                            "remove_unused_columns=False")
    return data.remove_columns(unused) if unused else data


class RemoveColumnsCollator:
    """Drops the keys the model does not take from each example before the collator sees it."""

    def __init__(self, collator: Callable, columns: Sequence[str]):
        self.collator, self.columns = collator, set(columns)

    @property
    def generator(self) -> torch.Generator | None:
        return self.collator.generator  # AttributeError (so hasattr is False) when the collator draws nothing

    @generator.setter
    def generator(self, value: torch.Generator | None) -> None:
        self.collator.generator = value

    def __call__(self, features: list[Any]) -> Any:
        kept = [{k: v for k, v in f.items() if k in self.columns} if isinstance(f, Mapping) else f for f in features]
        return self.collator(kept)


def batch_seed(key: Sequence[int]) -> int:
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])


class KeyedDataset(torch.utils.data.Dataset):
    """dataset[(index, key)] -> (dataset[index], key): the batch key rides along to the collate function."""

    def __init__(self, data: Any):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, tuple[int, ...]]) -> tuple[Any, tuple[int, ...]]:
        index, key = item
        return self.data[index], key


class SeededCollate:
    """collate_fn: seeds the collator's generator (when it has one) from the batch key, then collates."""

    def __init__(self, collator: Callable):
        self.collator = collator

    def __call__(self, items: list[tuple[Any, tuple[int, ...]]]) -> Any:
        if hasattr(self.collator, "generator"):
            self.collator.generator = torch.Generator().manual_seed(batch_seed(items[0][1]))
        return self.collator([example for example, _ in items])


class StepBatches(Sampler):
    """Batch sampler: this process's micro-batches of steps start..max_steps-1, as [(example index, key)]."""

    def __init__(self, plan: Plan, order_for: Callable[[int], np.ndarray], seed: int, rank: int, start: int):
        self.plan, self.order_for, self.seed, self.rank, self.start = plan, order_for, seed, rank, start

    def __len__(self) -> int:
        return sum(len(self.plan.micro_batches(step)[1]) for step in range(self.start, self.plan.max_steps))

    def __iter__(self):
        for step in range(self.start, self.plan.max_steps):
            epoch, micros = self.plan.micro_batches(step)
            order = self.order_for(epoch)
            for number, micro in enumerate(micros):
                key = (self.seed, 0, step, number, self.rank)
                yield [(i, key) for i in self.plan.indices(order, micro, self.rank)]


class EvalBatches(Sampler):
    """Batch sampler for evaluation: consecutive batches in order, batch b on process b % world_size."""

    def __init__(self, examples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 max_batches: int | None = None):
        self.examples, self.batch_size, self.seed, self.rank, self.world_size = examples, batch_size, seed, rank, \
            world_size
        batches = -(-examples // batch_size)
        self.batches = batches if max_batches is None else min(batches, max_batches)

    def numbers(self) -> range:
        """The batch numbers this process evaluates."""
        return range(self.rank, self.batches, self.world_size)

    def __len__(self) -> int:
        return len(self.numbers())

    def __iter__(self):
        for number in self.numbers():
            first = number * self.batch_size
            key = (self.seed, 1, number, self.rank)  # the same masks at every evaluation
            yield [(i, key) for i in range(first, min(first + self.batch_size, self.examples))]


def loader(data: Any, batches: Sampler, collator: Callable, workers: int, pin_memory: bool, seed: int) -> DataLoader:
    """The DataLoader over `batches`; its own generator (for worker seeds), so that starting to iterate it draws
    nothing from torch's global RNG, whose state a resumed run restores just before."""
    return DataLoader(KeyedDataset(data), batch_sampler=batches, collate_fn=SeededCollate(collator),
                      num_workers=workers, pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))


def example_lengths(data: Any, length_column: str, input_name: str = "input_ids") -> np.ndarray:
    """(n,) lengths for group_by_length: a datasets.Dataset's length column when it has one, else the lengths of
    each example's `input_name` (or of the example itself)."""
    if is_hf_dataset(data):
        column = length_column if length_column in data.column_names else input_name
        if column in data.column_names:
            values = data[column]
            return np.asarray(values if column == length_column else [len(v) for v in values], dtype=np.int64)
    try:
        return np.asarray([len(x[input_name]) if isinstance(x, Mapping) else len(x) for x in data], dtype=np.int64)
    except (TypeError, KeyError):
        raise TrainingError(f"train_sampling_strategy='group_by_length' needs examples with a length: mappings with "
                            f"{input_name!r} or sequences") from None


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts, lists and tuples) moved to `device`; anything else as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def label_count(batch: dict, shifted: bool) -> torch.Tensor | None:
    """The label tokens a batch's loss averages over (None without labels): `shifted`, a causal LM's, which never
    predicts position 0."""
    labels = batch.get("labels")
    if not isinstance(labels, torch.Tensor):
        return None
    labels = labels[..., 1:] if shifted and labels.dim() > 1 else labels
    return (labels != -100).sum()


def items_in_step(batches: list[dict], shifted: bool, world_size: int) -> torch.Tensor | None:
    """transformers' `num_items_in_batch`: the label tokens of an optimizer step's micro-batches, over all
    processes (None when a batch has no labels to count)."""
    counts = [label_count(batch, shifted) for batch in batches]
    if any(c is None for c in counts):
        return None
    total = torch.stack(counts).sum()
    if world_size > 1:
        torch.distributed.all_reduce(total)
    return total


def micro_batch_weight(batch: dict, num_items: torch.Tensor | None, shifted: bool, world_size: int,
                       micro_batches: int, custom_loss: bool) -> float:
    """A micro-batch's share of its step's loss: the label tokens its mean loss is over (`shifted` for a causal
    LM) divided by the step's num_items, times the process count, which DDP divides out, so that the step's loss
    is the summed token loss over num_items, as transformers computes it; an equal share without labels; a
    `compute_loss_func` loss is already normalised by num_items: the process count alone."""
    if custom_loss:
        return float(world_size)
    if num_items is None or int(num_items) == 0:
        return 1.0 / micro_batches
    return float(label_count(batch, shifted)) * world_size / float(num_items)


def counts_shifted_labels(model: Any) -> bool:
    """Whether transformers 5.24 counts a model's labels from position 1 in num_items_in_batch: for causal LMs
    whose transformers class is named ...ForCausalLM (BloomForCausalLM), not for GPT2LMHeadModel, whose summed
    loss it therefore divides by every label token, the never-predicted first one of each row included."""
    if getattr(model, "family", None) != "decoder":
        return False
    from ..dialects import get_dialect

    try:
        names = get_dialect(model.config.model_type).architectures
        name = names.get(model.head, names.get(None, ""))
    except (AttributeError, KeyError, ValueError):
        name = type(model).__name__
    return "ForCausalLM" in name


def input_tokens(batch: dict) -> int:
    """Tokens a batch feeds the model: its attention mask's ones, else its input_ids (0 without either)."""
    for key, count in (("attention_mask", lambda t: int(t.sum())), ("input_ids", lambda t: t.numel())):
        if isinstance(batch.get(key), torch.Tensor):
            return count(batch[key])
    return 0


def body_parameters(model: torch.nn.Module) -> int:
    """Parameters outside the embedding tables."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return sum(p.numel() for p in model.parameters() if id(p) not in embeddings)


def estimate_flos(body: int, batch: dict) -> float:
    """transformers' estimate of a batch's training FLOPs: 6 x input tokens x `body` parameters."""
    ids = batch.get("input_ids")
    return 6.0 * (ids.numel() if isinstance(ids, torch.Tensor) else 0) * body


class TrainingData:
    """The Trainer's training-data methods (mixed into `Trainer`)."""

    def _collator(self, collator: Callable, data: Any) -> Callable:
        if self.args.remove_unused_columns and not is_hf_dataset(data):
            return RemoveColumnsCollator(collator, self._signature_columns)
        return collator

    def _train_data(self) -> Any:
        check_dataset(self.train_dataset, "train_dataset")
        if is_hf_dataset(self.train_dataset) and self.args.remove_unused_columns:
            return drop_unused_columns(self.train_dataset, self._signature_columns, type(self.model).__name__)
        return self.train_dataset

    def _order_for(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._order = epoch, epoch_order(self.args, epoch, self.plan.examples,
                                                          self.plan.global_batch, self._lengths)
        return self._order

    def get_train_dataloader(self, data: Any = None) -> DataLoader:
        """This process's training micro-batches from the current step to the end of the plan."""
        data = self._train_data() if data is None else data
        batches = StepBatches(self.plan, self._order_for, self.args.seed, self.dist.rank, self.step)
        return loader(data, batches, self._collator(self.data_collator, data), self.args.dataloader_num_workers,
                      self._pin_memory(), self.args.seed)

    def _pin_memory(self) -> bool:
        return self.args.dataloader_pin_memory and self.device.type == "cuda"
