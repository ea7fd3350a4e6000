"""The Trainer's bookkeeping around the loop (mixed into `Trainer`): logging into `state.log_history` and
metrics.jsonl, the log / evaluate / save decisions after a step, the best checkpoint (`load_best_model_at_end`),
`save_model` / `save_state` / `log_metrics` / `save_metrics`, the callbacks' list, and the end of a run.

transformers' record shapes: a training line is {loss, grad_norm, learning_rate, epoch, step}, where loss is
the mean of the steps since the last line; an evaluation line is evaluate()'s metrics with epoch and step; the
last line is the run's summary {train_runtime, train_samples_per_second, train_steps_per_second, total_flos,
train_loss, epoch, step}, where train_loss is the mean loss of the steps this train() call took.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .callbacks import TrainerCallback
from .checkpoints import checkpoint_paths, latest_checkpoint, load_model_state, read_state
from .distributed import _full_state_options
from .evaluation import TrainOutput, TrainResult, plain_metrics, speed_metrics
from .metrics import append_jsonl, plot_metrics

OUT_OF_MEMORY = ("CUDA out of memory.", "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED.",
                 "DefaultCPUAllocator: can't allocate memory")


def is_out_of_memory(err: BaseException) -> bool:
    """An error that a smaller batch may avoid (transformers' `should_reduce_batch_size`)."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and len(err.args) == 1 and any(m in str(err.args[0]) for m in OUT_OF_MEMORY))


def default_export(processing_class: Any, collator: Any) -> Callable[[nn.Module, Path], None]:
    """transformers' save_model: the model (save_pretrained, or its weights as model.safetensors) and the
    tokenizer (the processing_class, or the collator's)."""
    tokenizer = processing_class if processing_class is not None else getattr(collator, "tokenizer", None)

    def export(model: nn.Module, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(folder)
        else:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(Path(folder) /
                                                                                     "model.safetensors"))
        if hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(str(folder))
    return export


class Saving:
    def _export_function(self) -> Callable[[nn.Module, Path], None]:
        return self.export or default_export(self.processing_class, self.data_collator)

    def _export_checkpoint(self, export: Callable, model: nn.Module, folder: Path) -> None:
        export(model, folder)
        self.state.save_to_json(str(Path(folder) / "trainer_state.json"))

    # ---- logging ------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add `logs` (with epoch and step) to state.log_history and metrics.jsonl, and tell the callbacks."""
        logs.update(plain_metrics(logs))
        if self.state.epoch is not None:
            logs["epoch"] = self.state.epoch
        record = {**logs, "step": self.state.global_step}
        self.state.log_history.append(record)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            append_jsonl(self.out / "metrics.jsonl", {"step": record["step"], **logs})  # step first: easy to scan
        self.control = self.callback_handler.call_event("on_log", self.args, self.state, self.control, logs=logs)

    def log_metrics(self, split: str, metrics: dict[str, float]) -> None:
        if self.is_world_process_zero():
            print(f"***** {split} metrics *****")
            for key in sorted(metrics):
                print(f"  {key:<{max(map(len, metrics))}} = {metrics[key]}")

    def save_metrics(self, split: str, metrics: dict[str, float], combined: bool = True) -> None:
        """`<split>_results.json` (and all_results.json, merged) in output_dir."""
        if not self.is_world_process_zero():
            return
        (self.out / f"{split}_results.json").write_text(json.dumps(metrics, indent=4, sort_keys=True) + "\n")
        if combined:
            everything = self.out / "all_results.json"
            merged = json.loads(everything.read_text()) if everything.is_file() else {}
            everything.write_text(json.dumps({**merged, **metrics}, indent=4, sort_keys=True) + "\n")

    def save_state(self) -> None:
        if self.is_world_process_zero():
            self.state.save_to_json(str(self.out / "trainer_state.json"))

    def is_world_process_zero(self) -> bool:
        return self.dist.is_main

    def is_local_process_zero(self) -> bool:
        return self.dist.local_rank == 0

    # ---- callbacks ----------------------------------------------------------------------------
    def add_callback(self, callback: type | TrainerCallback) -> None:
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback: type | TrainerCallback) -> TrainerCallback | None:
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback: type | TrainerCallback) -> None:
        self.callback_handler.remove_callback(callback)

    # ---- after each step ----------------------------------------------------------------------
    def _maybe_log_save_evaluate(self, grad_norm: float | None, lr: float) -> None:
        control = self.control
        if control.should_log and self.step > self._last_logged:
            logs = {"loss": self._tr_loss / (self.step - self._last_logged)}
            if grad_norm is not None:
                logs["grad_norm"] = grad_norm
            logs["learning_rate"] = lr
            self._total_loss += self._tr_loss
            self._tr_loss, self._last_logged = 0.0, self.step
            self.log(logs)
        if self.control.should_evaluate:
            new_best = self._determine_best_metric(self.evaluate(ignore_keys=self._ignore_keys_for_eval))
            if self.args.save_strategy == "best":
                self.control.should_save = new_best
        if self.control.should_save:
            self.save_checkpoint()
            if self.state.best_global_step == self.step:
                self.state.best_model_checkpoint = str(latest_checkpoint(self.out))
            self.control = self.callback_handler.call_event("on_save", self.args, self.state, self.control)

    def _determine_best_metric(self, metrics: dict[str, float]) -> bool:
        name = self.args.metric_for_best_model
        if name is None:
            return False
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            raise KeyError(f"metric_for_best_model is {key!r}, which evaluate() did not return; it returned "
                           f"{sorted(metrics)}")
        value, best = metrics[key], self.state.best_metric
        if best is None or (value > best if self.args.greater_is_better else value < best):
            self.state.best_metric, self.state.best_global_step = value, self.step
            return True
        return False

    def _prune_keeping_best(self) -> None:
        """With load_best_model_at_end, keep the newest save_total_limit checkpoints and the best one."""
        keep = self.args.save_total_limit
        if not self.args.load_best_model_at_end or keep is None:
            return
        paths = checkpoint_paths(self.out)
        kept = {str(p) for p in paths[-keep:]} | {self.state.best_model_checkpoint}
        for path in paths:
            if str(path) not in kept:
                shutil.rmtree(path)

    def _load_best_model(self) -> None:
        weights = read_state(Path(self.state.best_model_checkpoint) / "trainer_state.pt")["model"]
        if self.args.fsdp:
            from torch.distributed.checkpoint.state_dict import set_model_state_dict

            set_model_state_dict(self.model, weights, options=_full_state_options())
        else:
            load_model_state(self.model, weights)

    def _restore_schedule_and_state(self, state: dict[str, Any]) -> None:
        """On resume: the lr schedule where it was, and the trainer state (log history, best metric)."""
        if state.get("scheduler") is not None:
            self.lr_scheduler.load_state_dict(state["scheduler"])
        elif self._own_scheduler:  # a checkpoint from before schedulers were saved
            for group in self.optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_scheduler.lr_lambdas[0],
                                                                  last_epoch=self.step - 1)
        saved = state.get("trainer_state") or {}
        for key in ("log_history", "best_metric", "best_global_step", "best_model_checkpoint", "total_flos",
                    "num_input_tokens_seen"):
            if key in saved:
                setattr(self.state, key, saved[key])
        self.state.epoch = self.plan.epoch(self.step)

    # ---- the end ------------------------------------------------------------------------------
    def _finish(self, started: float, first_step: int) -> TrainOutput:
        """The summary line, the best model (if asked), the final export into output_dir, the plot."""
        args, plan, done = self.args, self.plan, self.step - first_step
        self._total_loss += self._tr_loss
        train_loss = self._total_loss / max(done, 0.001)
        samples = (plan.max_steps * plan.global_batch if args.max_steps > 0 else
                   plan.examples * args.num_train_epochs) * done / max(plan.max_steps, 1)
        metrics = speed_metrics("train", started, num_samples=samples, num_steps=done)
        metrics.update(total_flos=self.state.total_flos, train_loss=train_loss)
        self.log(metrics)
        if args.load_best_model_at_end and self.state.best_model_checkpoint is not None:
            self._load_best_model()
        self.save_checkpoint(final=True, checkpoint=False)
        if self.dist.is_main and args.plot_loss:
            plot_metrics(self.out / "metrics.jsonl", self.out / "loss_curve.png")
        self.control = self.callback_handler.call_event("on_train_end", args, self.state, self.control)
        history = [r for r in self.state.log_history if r["step"] > first_step]
        evaluations = [r["eval_loss"] for r in history if "eval_loss" in r]
        eval_loss = evaluations[-1] if evaluations else None
        self.result = TrainResult(
            step=self.step, loss=self._last_loss, eval_loss=eval_loss,
            eval_perplexity=None if eval_loss is None else math.exp(min(eval_loss, 700.0)), tokens=self.tokens,
            seconds=time.time() - started, history=history)
        return TrainOutput(self.step, train_loss, metrics)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The model (and tokenizer) as a Hugging Face folder in `output_dir` (default: args.output_dir)."""
        folder = Path(output_dir or self.args.output_dir)
        model = self.model
        if self.args.fsdp:  # gathered on rank 0 into the meta copy (collective)
            from torch.distributed.checkpoint.state_dict import get_model_state_dict

            weights = get_model_state_dict(self.model, options=_full_state_options(cpu_offload=True))
            model = self._exportable({"model": weights}) if self.dist.is_main else None
        if self.dist.is_main:
            self._export_function()(model, folder)
            if self.export_copy is not None:
                self.export_copy.to_empty(device="meta")
        self.dist.barrier()
