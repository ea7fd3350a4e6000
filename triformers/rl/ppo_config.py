"""PPOConfig: trl 0.11's fields and defaults, those that mean something without accelerate / trackers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError


@dataclass
class PPOConfig:
    model_name: str | None = None  # recorded only, as in trl
    query_dataset: str | None = None
    reward_model: str | None = None
    seed: int = 0
    log_with: str | None = None  # trackers are not wired: log_stats keeps the history in memory
    tracker_kwargs: dict[str, Any] = field(default_factory=dict)
    accelerator_kwargs: dict[str, Any] = field(default_factory=dict)
    project_kwargs: dict[str, Any] = field(default_factory=dict)
    tracker_project_name: str = "trl"
    remove_unused_columns: bool = True
    steps: int = 20000
    learning_rate: float = 1.41e-5
    adap_kl_ctrl: bool = True  # adaptive KL coefficient (Ziegler et al.), else fixed at init_kl_coef
    init_kl_coef: float = 0.2
    kl_penalty: Literal["kl", "abs", "mse", "full"] = "kl"
    target: float = 6.0  # the KL the adaptive controller steers to
    horizon: float = 10000.0
    gamma: float = 1.0
    lam: float = 0.95  # GAE lambda
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    batch_size: int = 128
    forward_batch_size: int | None = None
    mini_batch_size: int = 128
    gradient_accumulation_steps: int = 1
    ppo_epochs: int = 4
    max_grad_norm: float | None = None
    early_stopping: bool = False
    target_kl: float = 1.0
    ratio_threshold: float = 10.0
    use_score_scaling: bool = False
    use_score_norm: bool = False
    score_clip: float | None = None
    whiten_rewards: bool = False
    optimize_cuda_cache: bool | None = None
    optimize_device_cache: bool = False
    compare_steps: int = 1
    push_to_hub_if_best_kwargs: dict[str, Any] = field(default_factory=dict)
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.forward_batch_size is not None:  # trl's deprecated name for mini_batch_size
            self.mini_batch_size = self.forward_batch_size
        if self.kl_penalty not in ("kl", "abs", "mse", "full"):
            raise ConfigError(f"PPOConfig: kl_penalty must be 'kl', 'abs', 'mse' or 'full', got {self.kl_penalty!r}")
        self.backward_batch_size = self.mini_batch_size * self.gradient_accumulation_steps
        if min(self.batch_size, self.mini_batch_size, self.gradient_accumulation_steps, self.ppo_epochs) < 1:
            raise ConfigError("PPOConfig: batch_size, mini_batch_size, gradient_accumulation_steps and ppo_epochs "
                              "must be at least 1")
        if self.batch_size % self.backward_batch_size:
            raise ConfigError(f"PPOConfig: batch_size ({self.batch_size}) must be a multiple of mini_batch_size x "
                              f"gradient_accumulation_steps ({self.backward_batch_size})")
        if self.use_score_norm and not self.use_score_scaling:
            raise ConfigError("PPOConfig: use_score_norm needs use_score_scaling")
