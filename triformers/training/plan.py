"""A run's plan: how many optimizer steps, the warmup, when to log / evaluate / save, and each epoch's example order.

The Trainer reads the data as one stream of epochs (epoch e is a permutation of the examples seeded by
(seed, e)); optimizer step s takes stream positions [s * G, (s + 1) * G) for a global batch of G, so a
batch may span two epochs and nothing is dropped. An epoch is therefore len(train_data) / G steps, and
`num_train_epochs` (when `max_steps` is -1) gives ceil(epochs * len(train_data) / G) steps. Steps given
below 1 are fractions of the run, rounded up. `eval_strategy` / `save_strategy` / `logging_strategy`
"steps" act every N steps, "epoch" after each step that ends an epoch; evaluating and saving also happen
after the last step unless the strategy is "no" (transformers' DefaultFlowCallback).
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
    global_batch: int  # examples per optimizer step, over all processes
    logging_steps: int
    eval_steps: int
    save_steps: int

    def epoch(self, step: int) -> float:
        """Epochs done after `step` optimizer steps."""
        return step * self.global_batch / self.examples

    def ends_epoch(self, step: int) -> bool:
        return (step * self.global_batch) // self.examples > ((step - 1) * self.global_batch) // self.examples

    def _due(self, strategy: str, every: int, step: int, at_end: bool) -> bool:
        if strategy == "no":
            return False
        if at_end and step == self.max_steps:
            return True
        return step % every == 0 if strategy == "steps" else self.ends_epoch(step)

    def logs(self, args: TrainingArguments, step: int) -> bool:
        return self._due(args.logging_strategy, self.logging_steps, step, at_end=True)

    def evaluates(self, args: TrainingArguments, step: int) -> bool:
        return self._due(args.eval_strategy, self.eval_steps, step, at_end=True)

    def saves(self, args: TrainingArguments, step: int) -> bool:
        return self._due(args.save_strategy, self.save_steps, step, at_end=True)


def make_plan(args: TrainingArguments, examples: int, global_batch: int) -> Plan:
    """The plan for `examples` training examples taken `global_batch` at a time."""
    if args.max_steps > 0:
        max_steps = args.max_steps
    else:
        max_steps = max(1, math.ceil(args.num_train_epochs * examples / global_batch))
    logging_steps = max(1, resolve_steps(args.logging_steps, max_steps))
    eval_steps = logging_steps if args.eval_steps is None else max(1, resolve_steps(args.eval_steps, max_steps))
    return Plan(max_steps, warmup_steps(args, max_steps), examples, global_batch, logging_steps, eval_steps,
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
    order = np.random.default_rng([args.seed, epoch]).permutation(examples)
    if args.train_sampling_strategy == "random":
        return order
    # transformers' get_length_grouped_indices: mega-batches of up to 50 batches, each sorted longest first,
    # and the longest example of all at the very front (an out-of-memory error shows on the first step)
    size = max(1, min(examples // (global_batch * 4), 50)) * global_batch
    groups = [sorted(order[i:i + size].tolist(), key=lambda j: -lengths[j]) for i in range(0, examples, size)]
    longest = int(np.argmax([lengths[group[0]] for group in groups]))
    groups[0][0], groups[longest][0] = groups[longest][0], groups[0][0]
    return np.asarray([j for group in groups for j in group], dtype=np.int64)
