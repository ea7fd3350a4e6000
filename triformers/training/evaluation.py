"""Evaluation and prediction for the Trainer, with transformers' names and shapes: `evaluate()` returns a dict
of `eval_loss`, `eval_<metric>` (from `compute_metrics`), `eval_runtime`, `eval_samples_per_second`,
`eval_steps_per_second` (and `epoch` once training has begun); `predict()` a `PredictionOutput(predictions,
label_ids, metrics)`; `compute_metrics` gets an `EvalPrediction` that unpacks as `predictions, labels`.

As in transformers: the loss of a batch is its mean, and the evaluation loss the mean of those weighted by the
examples in each batch; predictions are the model's outputs other than the loss (logits; for QA start and end
logits; for seq2seq the logits and the encoder's last hidden state), numpy arrays concatenated over batches,
padded with -100 where their lengths differ; labels are the batch's label columns. The hidden states that
triformers' models return beside their head's output (transformers' heads return none) are not predictions.
Under torchrun each process evaluates every world_size-th batch and the results are gathered in order.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist

from ..errors import TrainingError
from .data import EvalBatches, drop_unused_columns, is_hf_dataset, label_count, loader, to_device


class EvalPrediction:
    """predictions and label_ids (and inputs / losses when asked for); unpacks as a tuple."""

    def __init__(self, predictions: Any, label_ids: Any, inputs: Any = None, losses: Any = None):
        self.predictions, self.label_ids, self.inputs, self.losses = predictions, label_ids, inputs, losses
        self.elements = (predictions, label_ids) + tuple(x for x in (inputs, losses) if x is not None)

    def __iter__(self):
        return iter(self.elements)

    def __getitem__(self, index: int) -> Any:
        return self.elements[index]

    def __len__(self) -> int:
        return len(self.elements)


class EvalLoopOutput(NamedTuple):
    predictions: Any
    label_ids: Any
    metrics: dict[str, float]
    num_samples: int


class PredictionOutput(NamedTuple):
    predictions: Any
    label_ids: Any
    metrics: dict[str, float]


class TrainOutput(NamedTuple):
    global_step: int
    training_loss: float
    metrics: dict[str, float]


@dataclass
class TrainResult:
    """The commands' summary of a run (`trainer.result`)."""

    step: int
    loss: float  # mean training loss of the last step
    eval_loss: float | None = None  # of the last evaluation (None: none ran)
    eval_perplexity: float | None = None
    tokens: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # this run's log records


def speed_metrics(split: str, start_time: float, num_samples: float | None = None, num_steps: int | None = None,
                  num_tokens: int | None = None) -> dict[str, float]:
    """`<split>_runtime` and throughputs, rounded as transformers rounds them."""
    runtime = time.time() - start_time
    result = {f"{split}_runtime": round(runtime, 4)}
    if runtime == 0:
        return result
    for name, count in (("samples", num_samples), ("steps", num_steps), ("tokens", num_tokens)):
        if count is not None:
            result[f"{split}_{name}_per_second"] = round(count / runtime, 3)
    return result


def plain_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars and 0-d tensors as Python numbers (JSON-serialisable, as transformers' denumpify_detensorize)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(plain(v) for v in value)
        if isinstance(value, (torch.Tensor, np.generic)) and np.size(value) == 1:
            return value.item()
        return value
    return plain(metrics)


def numpy_of(value: Any) -> Any:
    """Tensors (nested in tuples) as numpy arrays on the CPU; bfloat16 as float32, which numpy has."""
    if isinstance(value, (tuple, list)):
        return type(value)(numpy_of(v) for v in value)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    return value


def concat_padded(parts: list[Any], padding_index: int = -100) -> Any:
    """Concatenate batches along the first axis, padding the second to the longest (tuples element-wise)."""
    if not parts or parts[0] is None:
        return None
    if isinstance(parts[0], (tuple, list)):
        return type(parts[0])(concat_padded([p[i] for p in parts], padding_index) for i in range(len(parts[0])))
    if parts[0].ndim < 2 or len({p.shape[1:] for p in parts}) == 1:
        return np.concatenate(parts)
    width = max(p.shape[1] for p in parts)
    out = np.full((sum(len(p) for p in parts), width, *parts[0].shape[2:]), padding_index, dtype=parts[0].dtype)
    row = 0
    for part in parts:
        out[row:row + len(part), :part.shape[1]] = part
        row += len(part)
    return out


class Evaluation:
    """The Trainer's evaluate / predict / prediction_step (mixed into `Trainer`)."""

    def get_eval_dataloader(self, eval_dataset: Any = None, max_batches: int | None = None):
        data = self._eval_dataset(eval_dataset)
        batches = EvalBatches(len(data), self.args.per_device_eval_batch_size, self.args.seed, self.dist.rank,
                              self.dist.world_size, max_batches)
        return loader(data, batches, self._collator(self.eval_collator, data), self.args.dataloader_num_workers,
                      self._pin_memory(), self.args.seed)

    def get_test_dataloader(self, test_dataset: Any):
        return self.get_eval_dataloader(test_dataset)

    def _eval_dataset(self, data: Any) -> Any:
        data = self.eval_dataset if data is None else data
        if data is None:
            raise ValueError("Trainer: evaluation needs an eval_dataset (pass it to the Trainer or to evaluate())")
        if is_hf_dataset(data) and self.args.remove_unused_columns:
            return drop_unused_columns(data, self._signature_columns, type(self.model).__name__)
        return data

    def more_metrics(self) -> dict[str, float]:
        """Metrics computed from the model itself rather than from gathered predictions, added to every
        evaluate() under their own names (the commands' task metrics: generation, span search); none here."""
        return {}

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """The loss (and `compute_metrics`) on the held-out data; logged, and handed to the callbacks."""
        data = self.eval_dataset if eval_dataset is None else eval_dataset
        if isinstance(data, dict):  # several held-out sets: metrics named eval_<name>_<metric>
            metrics = {}
            for name, part in data.items():
                metrics.update(self.evaluate(part, ignore_keys, f"{metric_key_prefix}_{name}"))
            return metrics
        start = time.time()
        dataloader = self.get_eval_dataloader(data, self.args.max_eval_batches)
        self.callback_handler.eval_dataloader = dataloader
        output = self.evaluation_loop(dataloader, "Evaluation", True if self.compute_metrics is None else None,
                                      ignore_keys, metric_key_prefix)
        more = self.more_metrics() if self.dist.is_main else {}
        output.metrics.update(more)
        total = self.args.per_device_eval_batch_size * self.dist.world_size
        output.metrics.update(speed_metrics(metric_key_prefix, start, output.num_samples,
                                            math.ceil(output.num_samples / total)))
        self.log(output.metrics)
        self.control = self.callback_handler.call_event("on_evaluate", self.args, self.state, self.control,
                                                        metrics=output.metrics)
        return output.metrics

    def predict(self, test_dataset: Any, ignore_keys: list[str] | None = None,
                metric_key_prefix: str = "test") -> PredictionOutput:
        """Predictions (and labels and metrics, when the data has labels) for `test_dataset`."""
        start = time.time()
        output = self.evaluation_loop(self.get_test_dataloader(test_dataset), "Prediction", None, ignore_keys,
                                      metric_key_prefix)
        total = self.args.per_device_eval_batch_size * self.dist.world_size
        output.metrics.update(speed_metrics(metric_key_prefix, start, output.num_samples,
                                            math.ceil(output.num_samples / total)))
        self.control = self.callback_handler.call_event("on_predict", self.args, self.state, self.control,
                                                        metrics=output.metrics)
        return PredictionOutput(output.predictions, output.label_ids, output.metrics)

    @torch.no_grad()
    def evaluation_loop(self, dataloader, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> EvalLoopOutput:
        loss_only = self.args.prediction_loss_only if prediction_loss_only is None else prediction_loss_only
        was_training = self.model.training
        self.model.eval()
        numbers, results = list(dataloader.batch_sampler.numbers()), []
        if self.args.fsdp and dataloader.batch_sampler.batches < self.dist.world_size:
            raise TrainingError(f"fsdp: the held-out data makes {dataloader.batch_sampler.batches} batches, fewer "
                                f"than the {self.dist.world_size} processes (each forward is collective)")
        for number, inputs in zip(numbers, dataloader, strict=True):
            results.append((number, *self._evaluate_batch(inputs, loss_only, ignore_keys)))
        if self.args.fsdp:  # every forward is collective: a process with fewer batches repeats its last one
            rounds = -(-dataloader.batch_sampler.batches // self.dist.world_size)
            for _ in range(rounds - len(numbers)):
                self._evaluate_batch(inputs, True, ignore_keys)
        if self.dist.world_size > 1:
            gathered = [None] * self.dist.world_size
            dist.all_gather_object(gathered, results)
            results = sorted((r for part in gathered for r in part), key=lambda r: r[0])
        self.model.train(was_training)
        counts = [r[1] for r in results]
        losses = [(r[2], r[1]) for r in results if r[2] is not None]
        predictions = concat_padded([r[3] for r in results]) if results else None
        labels = concat_padded([r[4] for r in results]) if results else None
        metrics = {}
        if self.compute_metrics is not None and predictions is not None and labels is not None:
            metrics = plain_metrics(self.compute_metrics(EvalPrediction(predictions, labels)))
        if losses:
            metrics["loss"] = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
        metrics = {k if k.startswith(f"{metric_key_prefix}_") else f"{metric_key_prefix}_{k}": v
                   for k, v in metrics.items()}
        return EvalLoopOutput(predictions, labels, metrics, sum(counts))

    def _evaluate_batch(self, inputs: dict, loss_only: bool, ignore_keys: list[str] | None) -> tuple:
        """(examples, loss, predictions, labels) of one batch, as Python / numpy values."""
        examples = len(next(v for v in inputs.values() if isinstance(v, torch.Tensor)))
        loss, logits, labels = self.prediction_step(self.model, inputs, loss_only, ignore_keys)
        if logits is not None and self.preprocess_logits_for_metrics is not None:
            logits = self.preprocess_logits_for_metrics(logits, labels)
        self.control = self.callback_handler.call_event("on_prediction_step", self.args, self.state, self.control)
        return examples, None if loss is None else float(loss), numpy_of(logits), numpy_of(labels)

    def prediction_step(self, model, inputs: dict, prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[Any, Any, Any]:
        """(loss, predictions, labels) of one batch; the loss when the batch has every label column."""
        inputs = to_device(inputs, self.device)
        has_labels = bool(self.label_names) and all(inputs.get(k) is not None for k in self.label_names)
        labels = None
        if has_labels:
            labels = tuple(inputs[k].detach() for k in self.label_names)
            labels = labels[0] if len(labels) == 1 else labels
        with torch.no_grad(), self._autocast():
            if has_labels:
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
                loss = loss.detach().mean() * self._batch_loss_scale(inputs)
            else:
                loss, outputs = None, model(**inputs)
        if prediction_loss_only:
            return loss, None, None
        logits = self._prediction_fields(outputs, ignore_keys or [], has_labels)
        return loss, logits[0] if len(logits) == 1 else logits, labels

    def _batch_loss_scale(self, inputs: dict) -> float:
        """transformers' eval loss of a batch is its summed token loss over num_items_in_batch, which for GPT-2
        counts the first label of each row too (`data.counts_shifted_labels`); the model's mean is rescaled to it."""
        if self._counts_shifted == self._loss_shifts_labels or self.compute_loss_func is not None:
            return 1.0
        counted = label_count(inputs, self._counts_shifted)
        return 1.0 if counted is None or not int(counted) else float(label_count(inputs, True)) / float(counted)

    def _prediction_fields(self, outputs: Any, ignore_keys: list[str], has_labels: bool) -> tuple:
        if isinstance(outputs, (tuple, list)):
            return tuple(outputs[1:] if has_labels else outputs)
        skip = {"loss", *ignore_keys}
        if getattr(self.model, "head", None) is not None:  # the body's states are no part of a head's output
            skip |= {"last_hidden_state", "pooler_output"}
        return tuple(outputs[k] for k in outputs.keys() if k not in skip and outputs[k] is not None)
