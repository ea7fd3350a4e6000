"""The Trainer: transformers' `Trainer` signature and behaviour, on triformers' loop (exact resume, atomic
checkpoints, DDP / FSDP under torchrun, a stop on a non-finite loss, metrics.jsonl and a loss plot).

    trainer = Trainer(model=model, args=TrainingArguments(...), train_dataset=..., eval_dataset=...,
                      data_collator=..., processing_class=tokenizer, compute_metrics=..., callbacks=[...])
    trainer.train()            # TrainOutput(global_step, training_loss, metrics)
    trainer.evaluate()         # {"eval_loss": ..., "eval_<metric>": ..., "eval_runtime": ..., "epoch": ...}
    trainer.predict(test)      # PredictionOutput(predictions, label_ids, metrics)
    trainer.save_model(path); trainer.state.log_history; trainer.state.global_step

What transformers' Trainer does, this one does: the same default collator, columns the forward does not take
dropped, the plan of steps from epochs (`plan.py`), AdamW over transformers' parameter groups with its
schedules (`optim.py`: the first warmup step has lr 0), gradient accumulation with the loss normalised over the
label tokens of the whole accumulated batch (transformers' `num_items_in_batch`), clipping, the log / evaluate /
save schedule and the events of `TrainerCallback` (`callbacks.py`), `load_best_model_at_end`,
`auto_find_batch_size`, and the same records in `state.log_history`, which metrics.jsonl holds line for line.
Where it differs, and why, is in the README ("Coming from transformers").

triformers' own part:
- Determinism: the example order is a function of (seed, epoch) and a step's micro-batches a function of the
  step; a collator with a `generator` attribute (masking, span corruption) gets one seeded from (seed, step,
  micro-batch, rank) (`data.py`). A checkpoint stores the model, optimizer, scheduler, step, trainer state and
  every rank's torch / numpy / python RNG state, so resuming ends bit-identical to an uninterrupted run (same
  world size and global batch). The older `Trainer(model, args, train_data, collator)` order still works.
- Checkpoints: `output_dir/checkpoints/checkpoint-NNNNNNN/` (trainer_state.pt, trainer_state.json and a Hugging
  Face export) are written to a temporary folder and renamed, the last `save_total_limit` kept; the final model
  (a Hugging Face folder) is written to output_dir itself after the last step. A non-finite loss or gradient
  norm raises `TrainingError` naming the step; the checkpoints on disk stay as they were.
- Distributed: under `torchrun` (RANK / WORLD_SIZE set) a process group is started (nccl on CUDA, gloo on CPU),
  the model wrapped in DistributedDataParallel (or sharded with FSDP2, `fsdp=True`; see `shard_model`), and each
  rank reads its own slice of every global micro-batch; rank 0 alone writes checkpoints, metrics and the plot::

      torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 --master_addr=10.0.0.1 --master_port=29500 \\
          -m triformers pretrain --family decoder --data corpus/ --out runs/gpt

  `output_dir` must be a shared filesystem for a resume to find rank 0's checkpoints on every node.
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
from .checkpoints import checkpoint_paths, latest_checkpoint, write_checkpoint
from .collators import default_collator_for
from .data import (RemoveColumnsCollator, StepBatches, check_dataset, default_label_names, drop_unused_columns,
                   example_lengths, is_hf_dataset, loader, signature_columns, to_device)
from .distributed import _full_state_options, bf16_supported, init_distributed, meta_copy, shard_model
from .evaluation import Evaluation, TrainOutput, TrainResult  # noqa: F401  (TrainResult re-exported)
from .metrics import truncate_metrics
from .optim import build_optimizer, learning_rate, parameter_groups
from .plan import epoch_order, make_plan
from .rng import capture_rng, restore_rng, set_seed
from .saving import Saving, is_out_of_memory

logger = logging.getLogger("triformers")


class Trainer(Evaluation, Saving):
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
        self._place_model(model)
        self.optimizer, self.lr_scheduler = optimizers
        self._own_scheduler = self.lr_scheduler is None
        if self.optimizer is None:
            self.optimizer = self.create_optimizer()
        self.wrapped: nn.Module = self.model
        if self.dist.world_size > 1 and not args.fsdp:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.out = Path(args.output_dir)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.label_names = args.label_names if args.label_names is not None else default_label_names(self.model)
        self._signature_columns = signature_columns(self.model, self.label_names)
        self._loss_shifts_labels = getattr(self.model, "family", None) == "decoder"  # causal LMs shift labels
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

    def _place_model(self, model: nn.Module) -> None:
        args = self.args
        self.dist = init_distributed(args.device)
        default = f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(args.device or default)
        if args.fsdp and self.dist.world_size < 2:
            raise TrainingError("fsdp shards the model across processes: launch with torchrun --nproc_per_node=N "
                                "(N >= 2; WORLD_SIZE is unset or 1 here), or drop fsdp")
        model.train()  # before DDP/FSDP see the parameters: weights still held as checkpoint views are written out
        self.export_copy = meta_copy(model) if args.fsdp and self.dist.is_main else None
        # FSDP moves each shard to the device itself (never the whole model); the optimizer must see
        # the sharded parameters, so it is built after sharding
        self.model = shard_model(model, self.device, self.dist.world_size) if args.fsdp else model.to(self.device)
        self.bf16 = args.bf16 and bf16_supported(self.device)
        if args.bf16 and not self.bf16:
            logger.warning("--bf16: this %s has no native bfloat16; training in float32", self.device.type)

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
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, kwargs = self.optimizer_cls_and_kwargs
            return optimizer_cls(parameter_groups(self.model, self.args), **kwargs)
        return build_optimizer(self.model, self.args)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """A LambdaLR that multiplies each group's lr by `learning_rate(step) / learning_rate`."""
        args, peak = self.args, self.args.learning_rate
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer or self.optimizer, lambda step: learning_rate(step, args, num_training_steps) / peak if peak
            else 0.0)

    # ---- data ---------------------------------------------------------------------------------
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

    def get_train_dataloader(self, data: Any = None):
        """This process's training micro-batches from the current step to the end of the plan."""
        data = self._train_data() if data is None else data
        batches = StepBatches(self.plan, self._order_for, self.args.seed, self.dist.rank, self.step)
        return loader(data, batches, self._collator(self.data_collator, data), self.args.dataloader_num_workers,
                      self._pin_memory(), self.args.seed)

    def _pin_memory(self) -> bool:
        return self.args.dataloader_pin_memory and self.device.type == "cuda"

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
            loss, grad_norm, lr = self.training_step(micro_batches)
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

    def training_step(self, micro_batches: list[dict]) -> tuple[float, float | None, float]:
        """One optimizer step over the micro-batches; (loss, gradient norm before clipping, lr used)."""
        args, world = self.args, self.dist.world_size
        batches = [to_device(batch, self.device) for batch in micro_batches]
        weights, num_items = self._loss_weights(batches)
        total = torch.zeros((), device=self.device)
        for index, batch in enumerate(batches):
            self.tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else \
                batch["input_ids"].numel()
            self.state.total_flos += self._flos(batch) * world
            last = index == len(batches) - 1
            # DDP: all-reduce gradients once per optimizer step, not once per micro-batch (FSDP reduce-scatters
            # every micro-batch: holding unsharded gradients across micro-batches would undo its savings)
            sync = self.wrapped.no_sync() if world > 1 and not args.fsdp and not last else nullcontext()
            with sync:
                with self._autocast():
                    loss = self.compute_loss(self.wrapped, batch, num_items_in_batch=num_items) * weights[index]
                loss.backward()
            total += loss.detach()
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

    def _loss_weights(self, batches: list[dict]) -> tuple[list[float], torch.Tensor | None]:
        """Each micro-batch's loss weight: its share of the step's label tokens over all processes (times the
        process count, which DDP divides out), or an equal share when a batch has no labels to count."""
        counts = []
        for batch in batches:
            labels = batch.get("labels")
            if not isinstance(labels, torch.Tensor):
                counts = None
                break
            labels = labels[..., 1:] if self._loss_shifts_labels and labels.dim() > 1 else labels
            counts.append((labels != -100).sum())
        world = self.dist.world_size
        if counts is None:
            return [1.0 / len(batches)] * len(batches), None
        total = torch.stack(counts).sum()
        if world > 1:
            dist.all_reduce(total)
        if self.compute_loss_func is not None:  # its loss is already a mean over num_items_in_batch
            return [float(world)] * len(batches), total
        if int(total) == 0:
            return [1.0 / len(batches)] * len(batches), total
        return [float(c) * world / float(total) for c in counts], total

    def _flos(self, batch: dict) -> float:
        """transformers' estimate: 6 x tokens x parameters outside the embeddings."""
        if not hasattr(self, "_body_parameters"):
            embeddings = {id(m.weight) for m in self.model.modules() if isinstance(m, nn.Embedding)}
            self._body_parameters = sum(p.numel() for p in self.model.parameters() if id(p) not in embeddings)
        ids = batch.get("input_ids")
        return 6.0 * (ids.numel() if isinstance(ids, torch.Tensor) else 0) * self._body_parameters

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
            model, optimizer = self.model.state_dict(), self.optimizer.state_dict()
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
            if final:
                export(model, self.out)
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
        state_file = path / "trainer_state.pt"
        if not state_file.is_file():
            raise TrainingError(f"resume_from_checkpoint: {state_file} does not exist")
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        if state["global_batch"] != self.global_batch:
            raise TrainingError(f"resume_from_checkpoint: {path} was trained with a global batch of "
                                f"{state['global_batch']}, this run has {self.global_batch} (per_device_train_batch_"
                                "size * gradient_accumulation_steps * processes must match)")
        if bool(state.get("fsdp", False)) != self.args.fsdp:
            written = "with" if state.get("fsdp") else "without"
            raise TrainingError(f"resume_from_checkpoint: {path} was written {written} fsdp; resume it the same way "
                                "(the optimizer state is stored differently)")
        if self.args.fsdp:  # every rank reads the full state dicts and keeps its own shards
            from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

            set_model_state_dict(self.model, state["model"], options=_full_state_options())
            set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"], options=_full_state_options())
        else:
            self.model.load_state_dict(state["model"])
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
