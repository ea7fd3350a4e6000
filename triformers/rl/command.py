"""`triformers dpo`: DPO on a preference file; its flags are generated from `DpoOptions` (see `cli/flags.py`).

    triformers dpo --model M --data prefs.jsonl --out D [--eval held-out.jsonl] [--beta 0.1] [--epochs 1]

Each line of the file is {"prompt": ..., "chosen": ..., "rejected": ...} (or a .csv with those columns). The
model (decoder-only or encoder-decoder, chosen by its config) and its tokenizer are written to `--out`, where
the Auto classes load them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..training import check_fields, option
from .dpo import DPOConfig


def dpo_arguments() -> DPOConfig:
    """`triformers dpo`'s defaults: trl's DPO learning rate (1e-6 is for large models; 5e-5 suits small ones
    better, as in transformers' Trainer), one epoch, constant schedule, no checkpoints in between."""
    return DPOConfig(output_dir="dpo", learning_rate=5e-5, num_train_epochs=1.0, lr_scheduler_type="constant",
                     logging_steps=10, save_strategy="no", per_device_train_batch_size=8)


@dataclass
class DpoOptions:
    """What `triformers dpo` does; `triformers dpo --model M --data F` is exactly `DpoOptions(model=M, data=F)`."""

    model: str = option(help="model folder or hub id (decoder-only or encoder-decoder, with its tokenizer)")
    data: str = option(help="preference file (.jsonl or .csv with prompt, chosen, rejected)")
    eval: str | None = option(None, "held-out preference file: reward accuracy and margin after training")
    training: DPOConfig = option(help="training", factory=dpo_arguments)

    def __post_init__(self) -> None:
        check_fields(self)


def dpo(options: DpoOptions) -> dict[str, Any]:
    """Train, save into training.output_dir; returns the last training log and the held-out metrics."""
    import triformers

    from ..finetuning.data import read_records

    config = triformers.AutoConfig.from_pretrained(options.model)
    family_class = triformers.AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) \
        else triformers.AutoModelForCausalLM
    model = family_class.from_pretrained(options.model)
    tokenizer = triformers.AutoTokenizer.from_pretrained(options.model)
    held_out = read_records(options.eval) if options.eval else None
    trainer = triformers.rl.DPOTrainer(model=model, args=options.training, train_dataset=read_records(options.data),
                                       eval_dataset=held_out, processing_class=tokenizer)
    result = trainer.train()
    metrics = dict(result.metrics)
    if held_out is not None:
        metrics.update(trainer.evaluate())
    trainer.save_model(options.training.output_dir)
    return metrics
