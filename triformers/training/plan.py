"""A run's plan: how many optimizer steps, the warmup, the micro-batches of each step, and each epoch's example order.

The layout is transformers' Trainer's: an epoch is a permutation of the examples (seeded by (seed, epoch), or
in order) cut into micro-batches of `per_device_train_batch_size` per process, the last one smaller unless
`dataloader_drop_last`; an optimizer step takes `gradient_accumulation_steps` micro-batches, the last step of
an epoch what is left. So an epoch is ceil(micro-batches / accumulation) steps, `num_train_epochs` (when
`max_steps` is -1) gives ceil(epochs x steps per epoch) steps, and the epoch logged after a step is
transformers' (epochs done + micro-batches done / micro-batches per epoch). Under torchrun the processes share
each global micro-batch (W x batch size consecutive examples of the permutation, each its own slice); the last
one of an epoch is filled from the epoch's start so that every process has a full slice. Steps given below 1
are fractions of the run, rounded up. Because the order is a function of (seed, epoch) and the micro-batches of
a step a function of the step, a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import TrainingError
from .arguments import TrainingArguments, resolve_steps


@dataclass(frozen=True)
class Plan:
    max_steps: int
    warmup_steps: int
    examples: int  # training examples in one epoch
    batch_size: int  # examples per micro-batch per process
    world_size: int
    accumulation: int  # micro-batches per optimizer step
    batches_per_epoch: int  # micro-batches per process in one epoch
    logging_steps: int
    eval_steps: int
    save_steps: int

    @property
    def global_batch(self) -> int:
        """Examples in a full optimizer step, over all processes."""
        return self.batch_size * self.accumulation * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.accumulation)

    @property
    def num_train_epochs(self) -> int:
        """Epochs the run enters (transformers' `state.num_train_epochs`)."""
        return math.ceil(self.max_steps / self.steps_per_epoch)

    def micro_batches(self, step: int) -> tuple[int, range]:
        """(epoch, micro-batch numbers within it) of optimizer step `step` (0-based)."""
        epoch, within = divmod(step, self.steps_per_epoch)
        first = within * self.accumulation
        return epoch, range(first, min(first + self.accumulation, self.batches_per_epoch))

    def epoch(self, step: int) -> float:
        """Epochs done after `step` optimizer steps, as transformers counts them."""
        if step == 0:
            return 0.0
        epoch, micro = self.micro_batches(step - 1)
        return epoch + (micro[-1] + 1) / self.batches_per_epoch

    def ends_epoch(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0

    def indices(self, order: np.ndarray, micro: int, rank: int) -> list[int]:
        """Example indices of micro-batch `micro` for process `rank`, from the epoch's order."""
        first = (micro * self.world_size + rank) * self.batch_size
        if self.world_size == 1:
            return [int(i) for i in order[first:first + self.batch_size]]
        return [int(order[p % self.examples]) for p in range(first, first + self.batch_size)]


def make_plan(args: TrainingArguments, examples: int, batch_size: int | None = None, world_size: int = 1) -> Plan:
    """The plan for `examples` training examples, `batch_size` (default per_device_train_batch_size) per process."""
    batch_size = batch_size or args.per_device_train_batch_size
    per_global_micro = batch_size * world_size
    batches = examples // per_global_micro if args.dataloader_drop_last else math.ceil(examples / per_global_micro)
    if batches < 1:
        raise TrainingError(f"the training data has {examples} examples, fewer than one batch of {per_global_micro} "
                            "(dataloader_drop_last drops it): use more data, a smaller batch, or keep the last batch")
    steps_per_epoch = math.ceil(batches / args.gradient_accumulation_steps)
    max_steps = args.max_steps if args.max_steps > 0 else max(1, math.ceil(args.num_train_epochs * steps_per_epoch))
    logging_steps = max(1, resolve_steps(args.logging_steps, max_steps))
    eval_steps = logging_steps if args.eval_steps is None else max(1, resolve_steps(args.eval_steps, max_steps))
    return Plan(max_steps, warmup_steps(args, max_steps), examples, batch_size, world_size,
                args.gradient_accumulation_steps, batches, logging_steps, eval_steps,
                max(1, resolve_steps(args.save_steps, max_steps)))


def warmup_steps(args: TrainingArguments, max_steps: int) -> int:
    """`warmup_steps` as a number of steps (a fraction of `max_steps` when below 1)."""
    return resolve_steps(args.warmup_steps, max_steps)


# ---- example order -----------------------------------------------------------------------------------------
def example_lengths(data: Sequence[Any]) -> np.ndarray:
    """(n,) lengths for group_by_length: len(example["input_ids"]) for mappings, else len(example)."""
    try:
        return np.asarray([len(x["input_ids"]) if isinstance(x, Mapping) else len(x) for x in data], dtype=np.int64)
    except (TypeError, KeyError):
        raise TrainingError("train_sampling_strategy='group_by_length' needs examples with a length: mappings with "
                            "'input_ids' or sequences") from None


def epoch_order(args: TrainingArguments, epoch: int, examples: int, global_batch: int,
                lengths: np.ndarray | None = None) -> np.ndarray:
    """(examples,) the example indices of one epoch, a function of (seed, epoch) and the sampling strategy."""
    if args.train_sampling_strategy == "sequential":
        return np.arange(examples)
    seed = args.seed if args.data_seed is None else args.data_seed
    order = np.random.default_rng([seed, epoch]).permutation(examples)
    if args.train_sampling_strategy == "random":
        return order
    # transformers' get_length_grouped_indices: mega-batches of up to 50 batches, each sorted longest first,
    # and the longest example of all at the very front (an out-of-memory error shows on the first step)
    size = max(1, min(examples // (global_batch * 4), 50)) * global_batch
    groups = [sorted(order[i:i + size].tolist(), key=lambda j: -lengths[j]) for i in range(0, examples, size)]
    longest = int(np.argmax([lengths[group[0]] for group in groups]))
    groups[0][0], groups[longest][0] = groups[longest][0], groups[0][0]
    return np.asarray([j for group in groups for j in group], dtype=np.int64)
