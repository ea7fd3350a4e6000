"""The Trainer: transformers' `Trainer` signature and behaviour, on triformers' loop (exact resume, atomic
checkpoints, DDP / FSDP under torchrun, a stop on a non-finite loss, metrics.jsonl and a loss plot).

    trainer = Trainer(model=model, args=TrainingArguments(...), train_dataset=..., eval_dataset=...,
                      data_collator=..., processing_class=tokenizer, compute_metrics=..., callbacks=[...])
    trainer.train()            # TrainOutput(global_step, training_loss, metrics)
    trainer.evaluate()         # {"eval_loss": ..., "eval_<metric>": ..., "eval_runtime": ..., "epoch": ...}
    trainer.predict(test)      # PredictionOutput(predictions, label_ids, metrics)
    trainer.save_model(path); trainer.state.log_history; trainer.state.global_step

As transformers' Trainer: the default collator, unused columns dropped, the steps from epochs (`plan.py`), AdamW
over its parameter groups and schedules (`optim.py`), accumulation normalised over the label tokens of the whole
accumulated batch (its `num_items_in_batch`), clipping, the log / evaluate / save schedule and `TrainerCallback`
events (`callbacks.py`), `load_best_model_at_end`, `auto_find_batch_size`, and its `state.log_history` records,
which metrics.jsonl holds line for line. The differences, and why, are in the README ("Coming from transformers").

triformers' own part: the example order is a function of (seed, epoch) and a step's micro-batches of the step; a
collator with a `generator` (masking) gets one seeded per micro-batch (`data.py`); a checkpoint holds the model,
optimizer, scheduler, step, trainer state and every rank's RNG states, so resuming ends bit-identical to an
uninterrupted run (same world size and global batch). Checkpoints (`output_dir/checkpoints/checkpoint-NNNNNNN/`:
trainer_state.pt, trainer_state.json, a Hugging Face export) are written to a temporary folder and renamed, the
last `save_total_limit` kept; the final model goes to output_dir itself. A non-finite loss or gradient norm raises
`TrainingError` naming the step, the checkpoints on disk intact. Under `torchrun` the model is wrapped in DDP (or
sharded with FSDP2, `fsdp=True`), each rank reads its slice of every global micro-batch, and rank 0 alone writes
(`distributed.py`, for several nodes). The older `Trainer(model, args, train_data, collator)` order still works.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import TrainingError
from .arguments import TrainingArguments
from .callbacks import (CallbackHandler, DefaultFlowCallback, PrinterCallback, ProgressCallback, TrainerControl,
                        TrainerState)
from .checkpoints import (checkpoint_paths, export_into, latest_checkpoint, load_model_state, model_state,
                          read_state, resuming, write_checkpoint)
from .collators import default_collator_for
from .data import (TrainingData, body_parameters, counts_shifted_labels, default_label_names, estimate_flos,
                   example_lengths, input_tokens, items_in_step, micro_batch_weight, signature_columns, to_device)
from .distributed import _full_state_options, place_model
from .evaluation import Evaluation, TrainOutput, TrainResult  # noqa: F401  (TrainResult re-exported)
from .metrics import truncate_metrics
from .optim import build_optimizer, build_scheduler
from .output import prepare_output_dir
from .plan import make_plan
from .rng import capture_rng, restore_rng, set_seed
from .saving import Saving, is_out_of_memory

logger = logging.getLogger("triformers")


class Trainer(TrainingData, Evaluation, Saving):
    """transformers' Trainer on triformers' loop; see the module docstring."""

    def __init__(self, model: nn.Module | None = None, args: TrainingArguments | None = None,
                 data_collator: Callable | None = None, train_dataset: Any = None, eval_dataset: Any = None,
                 processing_class: Any = None, model_init: Callable[[], nn.Module] | None = None,
                 compute_loss_func: Callable | None = None, compute_metrics: Callable | None = None,
                 callbacks: list | None = None, optimizers: tuple = (None, None),
                 optimizer_cls_and_kwargs: tuple[type, dict] | None = None,
                 preprocess_logits_for_metrics: Callable | None = None, *, tokenizer: Any = None,
                 eval_data: Any = None, eval_collator: Callable | None = None,
                 export: Callable[[nn.Module, Path], None] | None = None):
        if data_collator is not None and not callable(data_collator) and callable(train_dataset):
            data_collator, train_dataset = train_dataset, data_collator  # the older (model, args, data, collator)
        args = TrainingArguments(output_dir="tmp_trainer") if args is None else args
        args.validate()
        set_seed(args.seed)  # as transformers, before model_init builds the model
        if model is None:
            if model_init is None:
                raise TrainingError("Trainer needs a model (or a model_init that builds one)")
            model = model_init()
        self.args, self.model_init, self.export = args, model_init, export
        self.processing_class = processing_class if processing_class is not None else tokenizer
        self.data_collator = data_collator if data_collator is not None else default_collator_for(
            self.processing_class)
        self.eval_collator = eval_collator or self.data_collator
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset if eval_dataset is not None else eval_data
        self.compute_loss_func, self.compute_metrics = compute_loss_func, compute_metrics
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        self.optimizer_cls_and_kwargs = optimizer_cls_and_kwargs
        if args.eval_strategy != "no" and (self.eval_dataset is None or not len(self.eval_dataset)):
            raise TrainingError(f"TrainingArguments: eval_strategy={args.eval_strategy!r} but there is no held-out "
                                "data: pass eval_dataset or set eval_strategy='no'")
        self.dist, self.device, self.model, self.export_copy, self.bf16 = place_model(model, args)
        self.optimizer, self.lr_scheduler = optimizers
        self._own_scheduler = self.lr_scheduler is None
        if self.optimizer is None:
            self.optimizer = self.create_optimizer()
        self.wrapped: nn.Module = self.model
        if self.dist.world_size > 1 and not args.fsdp:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.out = Path(args.output_dir)
        if self.dist.is_main:  # before anything trains: a folder that cannot take a save is refused now
            prepare_output_dir(self.out, self.model, args.save_strategy != "no")
        self.label_names = args.label_names if args.label_names is not None else default_label_names(self.model)
        self._signature_columns = signature_columns(self.model, self.label_names)
        self._loss_shifts_labels = getattr(self.model, "family", None) == "decoder"  # causal LMs shift labels
        self._counts_shifted = counts_shifted_labels(self.model)  # how transformers counts num_items_in_batch
        self._body_parameters = body_parameters(self.model)
        self._train_batch_size = args.per_device_train_batch_size
        self._epoch, self._order, self._lengths, self.plan, self.result = -1, np.zeros(0, np.int64), None, None, None
        self.tokens = 0
        self.state = TrainerState(is_local_process_zero=self.dist.local_rank == 0,
                                  is_world_process_zero=self.dist.is_main)
        self.control = TrainerControl()
        progress = PrinterCallback if args.disable_tqdm else ProgressCallback
        self.callback_handler = CallbackHandler([DefaultFlowCallback, *(callbacks or []), progress], self.model,
                                                self.processing_class, self.optimizer, self.lr_scheduler)
        self.control = self.callback_handler.call_event("on_init_end", args, self.state, self.control)

    @property
    def step(self) -> int:
        return self.state.global_step

    @step.setter
    def step(self, value: int) -> None:
        self.state.global_step = value

    @property
    def model_wrapped(self) -> nn.Module:
        return self.wrapped

    # ---- optimizer and schedule ---------------------------------------------------------------
    def create_optimizer(self) -> torch.optim.Optimizer:
        return build_optimizer(self.model, self.args, self.optimizer_cls_and_kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        return build_scheduler(optimizer or self.optimizer, self.args, num_training_steps)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    # ---- the loop -----------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None,
              ignore_keys_for_eval: list[str] | None = None) -> TrainOutput:
        """Train to the end of the plan, or on from a checkpoint (True: the newest in output_dir, or a path; when
        not given, `args.resume_from_checkpoint`, which transformers leaves to the calling script)."""
        if trial is not None:
            raise TrainingError("train(trial=...): hyperparameter search is not supported")
        resume = self.args.resume_from_checkpoint if resume_from_checkpoint is None else resume_from_checkpoint
        resume = None if resume is False else resume
        while True:
            try:
                return self._train(resume, ignore_keys_for_eval)
            except Exception as err:  # auto_find_batch_size: only an out-of-memory first step is retried
                if not (self.args.auto_find_batch_size and is_out_of_memory(err) and not self._steps_done):
                    raise
                if self._train_batch_size == 1:
                    raise TrainingError("auto_find_batch_size: out of memory with a batch of 1") from err
                self._train_batch_size //= 2
                self.optimizer.zero_grad(set_to_none=True)
                logger.warning("out of memory: retrying with per-device batches of %d", self._train_batch_size)

    def _setup_run(self, resume: str | bool | None) -> Any:
        args, data = self.args, self._train_data()
        self.plan = make_plan(args, len(data), self._train_batch_size, self.dist.world_size)
        self.global_batch, self._epoch = self.plan.global_batch, -1
        if args.train_sampling_strategy == "group_by_length":
            self._lengths = example_lengths(data, args.length_column_name)
        if self._own_scheduler:
            self.lr_scheduler = self.callback_handler.lr_scheduler = self.create_scheduler(self.plan.max_steps)
        plan = self.plan
        self.state = TrainerState(max_steps=plan.max_steps, logging_steps=plan.logging_steps,
                                  eval_steps=plan.eval_steps, save_steps=plan.save_steps,
                                  train_batch_size=self._train_batch_size, num_train_epochs=plan.num_train_epochs,
                                  is_local_process_zero=self.dist.local_rank == 0,
                                  is_world_process_zero=self.dist.is_main)
        if resume:
            self.resume(resume)
        else:
            self._fresh_start()
        if self.dist.is_main:
            truncate_metrics(self.out / "metrics.jsonl", self.step)
        return data

    def _train(self, resume: str | bool | None, ignore_keys_for_eval: list[str] | None) -> TrainOutput:
        args, data = self.args, self._setup_run(resume)
        plan, started, first_step = self.plan, time.time(), self.step
        self._steps_done, self._ignore_keys_for_eval = 0, ignore_keys_for_eval
        self._tr_loss, self._total_loss, self._last_logged, self._last_loss = 0.0, 0.0, self.step, math.nan
        dataloader = self.get_train_dataloader(data)
        self.callback_handler.train_dataloader = dataloader
        self.model.train()
        self.control = self.callback_handler.call_event("on_train_begin", args, self.state, self.control)
        if args.eval_on_start:
            self.evaluate(ignore_keys=ignore_keys_for_eval)
        batches = iter(dataloader)
        while self.step < plan.max_steps and not self.control.should_training_stop:
            if self.step == first_step or plan.ends_epoch(self.step):
                self.control = self.callback_handler.call_event("on_epoch_begin", args, self.state, self.control)
            self.control = self.callback_handler.call_event("on_step_begin", args, self.state, self.control)
            micro_batches = [next(batches) for _ in plan.micro_batches(self.step)[1]]
            loss, grad_norm, lr = self._optimizer_step(micro_batches)
            self.step += 1
            self._steps_done += 1
            self.state.epoch = plan.epoch(self.step)
            self._tr_loss, self._last_loss = self._tr_loss + loss, loss
            self.control = self.callback_handler.call_event("on_step_end", args, self.state, self.control)
            self._maybe_log_save_evaluate(grad_norm, lr)
            if plan.ends_epoch(self.step) or self.control.should_training_stop or self.step == plan.max_steps:
                self.control = self.callback_handler.call_event("on_epoch_end", args, self.state, self.control)
                self._maybe_log_save_evaluate(grad_norm, lr)
        return self._finish(started, first_step)

    def _optimizer_step(self, micro_batches: list[dict]) -> tuple[float, float | None, float]:
        """One optimizer step over the micro-batches; (loss, gradient norm before clipping, lr used)."""
        args, world = self.args, self.dist.world_size
        batches = [to_device(batch, self.device) for batch in micro_batches]
        num_items = items_in_step(batches, self._counts_shifted, world)
        self.current_gradient_accumulation_steps = len(batches)
        total = torch.zeros((), device=self.device)
        for index, batch in enumerate(batches):
            self.tokens += input_tokens(batch)
            self.state.total_flos += estimate_flos(self._body_parameters, batch) * world
            last = index == len(batches) - 1
            # DDP: all-reduce gradients once per optimizer step, not once per micro-batch (FSDP reduce-scatters
            # every micro-batch: holding unsharded gradients across micro-batches would undo its savings)
            with self.wrapped.no_sync() if world > 1 and not args.fsdp and not last else nullcontext():
                total += self.training_step(self.wrapped, batch, num_items)
            if not last:
                self.control = self.callback_handler.call_event("on_substep_end", args, self.state, self.control)
        self.state.num_input_tokens_seen = self.tokens
        if world > 1:  # every rank sees the same loss, so every rank stops together
            dist.all_reduce(total, op=dist.ReduceOp.AVG)
        loss_value, norm = float(total), None
        if not math.isfinite(loss_value):
            self._fail(f"loss is {loss_value}", self.step + 1)
        if args.max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
            norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # a DTensor under FSDP
            if not math.isfinite(norm):
                self._fail(f"gradient norm is {norm}", self.step + 1)
        self.control = self.callback_handler.call_event("on_pre_optimizer_step", args, self.state, self.control)
        self.optimizer.step()
        self.control = self.callback_handler.call_event("on_optimizer_step", args, self.state, self.control)
        lr = self.lr_scheduler.get_last_lr()[0]
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, norm, float(lr)

    def training_step(self, model: nn.Module, inputs: dict, num_items_in_batch: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """transformers' micro-batch step: forward and backward of one batch, its loss scaled to its share of the
        optimizer step (`data.micro_batch_weight`); returns that scaled loss, detached."""
        model.train()
        inputs = to_device(inputs, self.device)
        with self._autocast():
            loss = self.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
        loss = loss * micro_batch_weight(inputs, num_items_in_batch, self._loss_shifts_labels, self.dist.world_size,
                                         self.current_gradient_accumulation_steps, self.compute_loss_func is not None)
        loss.backward()
        return loss.detach()

    def compute_loss(self, model: nn.Module, inputs: dict, return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | None = None):
        """The model's loss on a batch (or `compute_loss_func(outputs, labels, num_items_in_batch=...)`)."""
        labels = None
        if self.compute_loss_func is not None and "labels" in inputs:
            inputs = dict(inputs)
            labels = inputs.pop("labels")
        outputs = model(**inputs)
        if self.compute_loss_func is not None:
            loss = self.compute_loss_func(outputs, labels, num_items_in_batch=num_items_in_batch)
        elif isinstance(outputs, (tuple, list)):
            loss = outputs[0]
        else:
            loss = outputs["loss"] if isinstance(outputs, dict) else getattr(outputs, "loss", None)
        if loss is None:
            raise TrainingError(f"the model returned no loss for a batch of {sorted(inputs)}: give it labels (a "
                                "collator that makes them), or compute_loss_func")
        return (loss, outputs) if return_outputs else loss

    def _fail(self, what: str, step: int) -> None:
        last = latest_checkpoint(self.out)
        kept = f"the last good checkpoint, {last}, is intact (resume from it with a lower learning_rate)" if last else \
            "no checkpoint had been written yet"
        raise TrainingError(f"training stopped at step {step}: {what}; the optimizer step was not taken and {kept}")

    # ---- checkpoints --------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        rng = capture_rng()
        rngs = [None] * self.dist.world_size
        if self.dist.world_size > 1:  # every rank's dropout stream, so a resumed run continues each of them
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        if self.args.fsdp:  # gathered to full state dicts (keyed by parameter name) on rank 0 alone
            from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

            options = _full_state_options(cpu_offload=True)
            model = get_model_state_dict(self.model, options=options)
            optimizer = get_optimizer_state_dict(self.model, self.optimizer, options=options)
        else:
            model, optimizer = model_state(self.model), self.optimizer.state_dict()
        return {"format": 1, "step": self.step, "tokens": self.tokens, "world_size": self.dist.world_size,
                "global_batch": self.global_batch, "fsdp": self.args.fsdp, "model": model, "optimizer": optimizer,
                "rng": rngs, "args": _plain(asdict(self.args)), "scheduler": self.lr_scheduler.state_dict(),
                "trainer_state": _plain(self.state.to_dict())}

    def _exportable(self, state: dict[str, Any]) -> nn.Module:
        """The model to hand to `export`: under FSDP the meta copy filled with the gathered weights."""
        if self.export_copy is None:
            return self.model
        self.export_copy.load_state_dict(state["model"], assign=True)
        return self.export_copy

    def save_checkpoint(self, final: bool = False, checkpoint: bool = True) -> Path | None:
        """Rank 0 writes checkpoint-<step> atomically (when `checkpoint`) and, when `final`, the export into
        output_dir."""
        state = self._state()  # collective under DDP and FSDP: every rank takes part
        path = None
        if self.dist.is_main:
            export = self._export_function()
            model = self._exportable(state)
            if final:  # published into output_dir as one set (its checkpoints and logs stay)
                export_into(self.out, lambda folder: export(model, folder))
            if checkpoint:
                keep = None if self.args.load_best_model_at_end else self.args.save_total_limit
                path = write_checkpoint(self.out, self.step, state, lambda folder: self._export_checkpoint(
                    export, model, folder), keep)
                self._prune_keeping_best()
            if self.export_copy is not None:
                self.export_copy.to_empty(device="meta")  # let the gathered weights go
        self.dist.barrier()
        return path

    def resume(self, where: str | bool) -> None:
        path = latest_checkpoint(self.out) if where is True or where == "latest" else Path(where)
        if path is None:
            raise TrainingError(f"resume_from_checkpoint: no checkpoint under {self.out / 'checkpoints'}")
        state = read_state(path / "trainer_state.pt")
        if state["global_batch"] != self.global_batch:
            raise TrainingError(f"resume_from_checkpoint: {path} was trained with a global batch of "
                                f"{state['global_batch']}, this run has {self.global_batch} (per_device_train_batch_"
                                "size * gradient_accumulation_steps * processes must match)")
        if bool(state.get("fsdp", False)) != self.args.fsdp:
            written = "with" if state.get("fsdp") else "without"
            raise TrainingError(f"resume_from_checkpoint: {path} was written {written} fsdp; resume it the same way "
                                "(the optimizer state is stored differently)")
        with resuming(path):  # another model shape or optimizer setup: one TrainingError naming the checkpoint
            if self.args.fsdp:  # every rank reads the full state dicts and keeps its own shards
                from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

                set_model_state_dict(self.model, state["model"], options=_full_state_options())
                set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"],
                                         options=_full_state_options())
            else:
                load_model_state(self.model, state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
            self.step, self.tokens = int(state["step"]), int(state["tokens"])
            self._restore_schedule_and_state(state)
            if state["world_size"] == self.dist.world_size:
                restore_rng(state["rng"][self.dist.rank])
            else:
                logger.warning("resume: %d processes now, %d before; dropout RNG streams are re-seeded",
                               self.dist.world_size, state["world_size"])
                self._seed_all(self.step)
        logger.info("resumed from %s at step %d", path, self.step)

    def _fresh_start(self) -> None:
        old = checkpoint_paths(self.out)
        if old and not self.args.overwrite_output_dir:
            raise TrainingError(f"{self.out} holds checkpoints of an earlier run ({old[-1].name}): pass --resume "
                                "(resume_from_checkpoint=True) to continue it, --overwrite (overwrite_output_dir=True) "
                                "to start over, or another --out (output_dir)")
        if old and self.dist.is_main:
            shutil.rmtree(self.out / "checkpoints")
        self.dist.barrier()
        self._seed_all()

    def _seed_all(self, salt: int = 0) -> None:
        seed = int(np.random.SeedSequence([self.args.seed, self.dist.rank, salt]).generate_state(1)[0])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


def _plain(value: Any) -> Any:
    """Arguments as plain lists/dicts/scalars (what torch.load(weights_only=True) reads back)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
