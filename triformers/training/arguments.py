"""TrainingArguments: everything the training loop needs, with its defaults and help in one place."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TrainingError

SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class TrainingArguments:
    """Everything the loop needs; the CLI's `pretrain` flags parse into this."""

    output_dir: str = "out"
    max_steps: int = 100  # optimizer steps
    batch_size: int = 8  # examples per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step; global batch = batch_size * grad_accum * world
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    min_lr_ratio: float = 0.0  # decay ends at min_lr_ratio * lr
    max_grad_norm: float | None = 1.0  # None or 0: no clipping
    bf16: bool = False  # autocast matmuls to bfloat16 where the hardware supports it
    eval_every: int = 0  # 0: evaluate only at the end (when there is held-out data)
    eval_batches: int = 16  # held-out batches per evaluation (per process)
    save_every: int = 0  # 0: no intermediate checkpoints
    save_total_limit: int = 2  # checkpoints kept on disk
    log_every: int = 1
    seed: int = 0
    resume: str | bool | None = None  # True / "latest": newest checkpoint in output_dir; or a checkpoint path
    overwrite: bool = False  # a fresh run may delete the checkpoints of an earlier run in output_dir
    progress: bool = True
    plot: bool = True
    device: str | None = None  # default: cuda:LOCAL_RANK when available, else cpu
    fsdp: bool = False  # under torchrun: shard parameters, gradients and optimizer state (FSDP2), not DDP

    def validate(self) -> None:
        if self.schedule not in SCHEDULES:
            raise TrainingError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("max_steps", "batch_size", "grad_accum", "log_every", "eval_batches", "save_total_limit"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.eval_every < 0 or self.save_every < 0:
            raise TrainingError("warmup_steps, eval_every and save_every must not be negative")
