"""The Trainer's state and callbacks, with transformers' names: `TrainerState` (global_step, epoch, log_history,
best_metric, ...), `TrainerControl` (the should_* flags), `TrainerCallback` and its events, and the callbacks
every Trainer has: `DefaultFlowCallback` (when to log, evaluate and save, as transformers decides it), the
progress bar (`ProgressCallback`, or `PrinterCallback` with `disable_tqdm`), plus `EarlyStoppingCallback`.

A callback written for transformers' Trainer runs here unchanged: it gets the same events with the same
arguments (args, state, control, and model / processing_class / optimizer / lr_scheduler / train_dataloader /
eval_dataloader / metrics / logs as keywords) and may return a changed control, or set its flags, to stop
training, or to log, evaluate or save after a step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

logger = logging.getLogger("triformers")

EVENTS = ("on_init_end", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_step_begin",
          "on_pre_optimizer_step", "on_optimizer_step", "on_substep_end", "on_step_end", "on_evaluate", "on_predict",
          "on_save", "on_log", "on_prediction_step")


@dataclass
class TrainerState:
    """Where a run is; written next to each checkpoint as trainer_state.json (transformers' layout)."""

    epoch: float = 0.0
    global_step: int = 0
    max_steps: int = 0
    logging_steps: int = 500
    eval_steps: int = 500
    save_steps: int = 500
    train_batch_size: int | None = None
    num_train_epochs: int = 0
    num_input_tokens_seen: int = 0
    total_flos: float = 0.0
    log_history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_global_step: int | None = None
    best_model_checkpoint: str | None = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    is_hyper_param_search: bool = False
    trial_name: str | None = None
    trial_params: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save_to_json(self, json_path: str) -> None:
        with open(json_path, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load_from_json(cls, json_path: str) -> TrainerState:
        with open(json_path, encoding="utf-8") as handle:
            known = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in json.load(handle).items() if k in known})


@dataclass
class TrainerControl:
    """Flags the callbacks set to steer the loop."""

    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False


class TrainerCallback:
    """Override the events you need; each gets (args, state, control, **kwargs) and may return a control."""


for _event in EVENTS:
    setattr(TrainerCallback, _event, lambda self, args, state, control, **kwargs: None)


class CallbackHandler:
    """Calls every callback for an event, in order, handing the Trainer's objects along as keywords."""

    def __init__(self, callbacks: list, model: Any, processing_class: Any, optimizer: Any, lr_scheduler: Any):
        self.callbacks: list[TrainerCallback] = []
        for callback in callbacks:
            self.add_callback(callback)
        self.model, self.processing_class = model, processing_class
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.train_dataloader = self.eval_dataloader = None

    def add_callback(self, callback: type | TrainerCallback) -> None:
        self.callbacks.append(callback() if isinstance(callback, type) else callback)

    def pop_callback(self, callback: type | TrainerCallback) -> TrainerCallback | None:
        for held in self.callbacks:
            if (isinstance(held, callback) if isinstance(callback, type) else held is callback):
                self.callbacks.remove(held)
                return held
        return None

    def remove_callback(self, callback: type | TrainerCallback) -> None:
        self.pop_callback(callback)

    def call_event(self, event: str, args: Any, state: TrainerState, control: TrainerControl,
                   **kwargs: Any) -> TrainerControl:
        # transformers resets the flags an event answers before asking the callbacks again
        if event == "on_train_begin":
            control.should_training_stop = False
        elif event == "on_epoch_begin":
            control.should_epoch_stop = False
        elif event == "on_step_begin":
            control.should_log = control.should_evaluate = control.should_save = False
        elif event in ("on_evaluate", "on_save", "on_log"):
            setattr(control, {"on_evaluate": "should_evaluate", "on_save": "should_save",
                              "on_log": "should_log"}[event], False)
        for callback in self.callbacks:
            result = getattr(callback, event)(
                args, state, control, model=self.model, processing_class=self.processing_class,
                optimizer=self.optimizer, lr_scheduler=self.lr_scheduler, train_dataloader=self.train_dataloader,
                eval_dataloader=self.eval_dataloader, **kwargs)
            if result is not None:
                control = result
        return control


class DefaultFlowCallback(TrainerCallback):
    """transformers' schedule: log / evaluate / save every N steps or after each epoch; at the last step evaluate
    (if not just done) and save under the 'steps' strategies, while the 'epoch' ones act at the epoch's end."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1 and args.logging_first_step:
            control.should_log = True
        if args.logging_strategy == "steps" and state.global_step % state.logging_steps == 0:
            control.should_log = True
        if args.eval_strategy == "steps" and state.global_step % state.eval_steps == 0:
            control.should_evaluate = True
        if args.save_strategy == "steps" and state.global_step % state.save_steps == 0:
            control.should_save = True
        if state.global_step >= state.max_steps:
            control.should_training_stop = True
            if args.eval_strategy == "steps" and state.global_step % state.eval_steps != 0:
                control.should_evaluate = True
            if args.save_strategy == "steps":
                control.should_save = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if args.logging_strategy == "epoch":
            control.should_log = True
        if args.eval_strategy == "epoch":
            control.should_evaluate = True
        if args.save_strategy == "epoch":
            control.should_save = True
        return control


class ProgressCallback(TrainerCallback):
    """A tqdm bar over the optimizer steps (on the main process), showing the last logged loss and lr."""

    def __init__(self):
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        if "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', math.nan):.2e}")
        else:
            self.bar.write(str({k: v for k, v in logs.items() if k != "total_flos"}))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PrinterCallback(TrainerCallback):
    """With `disable_tqdm`: each log line goes to the `triformers` logger instead of a bar."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs:
            logger.info("%s", {k: v for k, v in logs.items() if k != "total_flos"})


class EarlyStoppingCallback(TrainerCallback):
    """Stop when `metric_for_best_model` has not improved (by more than the threshold) for `patience` evaluations."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float | None = 0.0):
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold or 0.0
        self.early_stopping_patience_counter = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if args.metric_for_best_model is None or args.eval_strategy == "no":
            raise ValueError("EarlyStoppingCallback needs metric_for_best_model and an eval_strategy")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        name = args.metric_for_best_model
        value = (metrics or {}).get(name if name.startswith("eval_") else f"eval_{name}")
        if value is None:
            logger.warning("early stopping: the metrics have no %s; early stopping is off", name)
            return
        best = state.best_metric  # the best before this evaluation: the Trainer updates it afterwards
        better = best is None or (value > best if args.greater_is_better else value < best)
        if best is None or (better and abs(value - best) > self.early_stopping_threshold):
            self.early_stopping_patience_counter = 0
        else:
            self.early_stopping_patience_counter += 1
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True
