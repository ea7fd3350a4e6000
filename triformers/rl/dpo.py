"""DPOConfig / DPOTrainer: Direct Preference Optimization (Rafailov et al. 2023, arXiv:2305.18290) with trl's names,
on triformers' Trainer (its loop, checkpoints, logging), for decoder-only and encoder-decoder models.

    trainer = DPOTrainer(model=model, args=DPOConfig(output_dir="dpo", beta=0.1), train_dataset=prefs,
                         processing_class=tokenizer)        # prefs: rows of {"prompt", "chosen", "rejected"}
    trainer.train(); trainer.evaluate()                   # eval_rewards/accuracies, eval_rewards/margins, ...

The loss of a pair is -log sigmoid(beta x ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log
ref(rejected)))), log-probabilities summed over the completion's tokens. The reference log-probabilities are
computed once, before training, with `ref_model` or else with the model as it starts (a LoRA model: its adapter
as it starts); no second model is held during the run. Logged as trl does: rewards/chosen, rewards/rejected
(beta x the log-ratios), rewards/accuracies (chosen above rejected), rewards/margins, logps/chosen, logps/rejected.
The data is a list of dicts or a `datasets.Dataset` (read row by row; datasets is never imported).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..training import Trainer, TrainingArguments, option
from .core import logprobs_from_logits


@dataclass
class DPOConfig(TrainingArguments):
    beta: float = option(0.1, "DPO: how far the policy may move from the reference (the implicit reward's scale)")
    loss_type: Literal["sigmoid", "hinge", "ipo"] = option("sigmoid", "DPO: the preference loss")
    label_smoothing: float = option(0.0, "DPO (sigmoid): the assumed share of flipped preference labels")
    max_length: int = option(512, "DPO: tokens of prompt + completion (decoder-only), kept from the prompt's end")
    max_prompt_length: int = option(128, "DPO: prompt tokens (the end of a longer prompt is kept)")
    max_completion_length: int | None = option(None, "DPO: completion tokens (None: what max_length leaves)")
    precompute_ref_log_probs: bool = option(True, "DPO: reference log-probabilities computed once before training "
                                            "(the only mode: no reference model is held during the run)")
    remove_unused_columns: bool = option(False, "kept False: DPO's collator reads its own columns")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ConfigError(f"DPOConfig: beta must be positive, got {self.beta}")
        if not self.precompute_ref_log_probs:
            raise ConfigError("DPOConfig: precompute_ref_log_probs=False (a reference model held during training) is "
                              "not supported")


class DPOTrainer(Trainer):
    def __init__(self, model: nn.Module | None = None, ref_model: nn.Module | None = None,
                 args: DPOConfig | None = None, data_collator: Any = None, train_dataset: Any = None,
                 eval_dataset: Any = None, processing_class: Any = None, tokenizer: Any = None, **kwargs: Any):
        args = args if args is not None else DPOConfig(output_dir="dpo_output")
        if not isinstance(args, DPOConfig):
            raise ConfigError(f"DPOTrainer: args must be a DPOConfig, got {type(args).__name__}")
        tokenizer = processing_class if processing_class is not None else tokenizer
        if model is None or tokenizer is None or train_dataset is None:
            raise ConfigError("DPOTrainer needs model, processing_class (the tokenizer) and train_dataset")
        self.is_encoder_decoder = getattr(model, "family", None) == "encoder-decoder"
        self.tokenizer, self.beta = tokenizer, args.beta
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.collator = data_collator or PreferenceCollator(pad, self.is_encoder_decoder)
        train = self.tokenize(train_dataset, args)
        evals = self.tokenize(eval_dataset, args) if eval_dataset is not None else None
        reference = ref_model if ref_model is not None else model
        for rows in (train, evals):
            if rows is not None:
                self.add_reference_logps(reference, rows, args.per_device_eval_batch_size)
        del reference, ref_model
        self._stored: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        super().__init__(model=model, args=args, data_collator=self.collator, train_dataset=train,
                         eval_dataset=evals, processing_class=tokenizer, **kwargs)

    # ---- data ---------------------------------------------------------------------------------------------
    def tokenize(self, data: Any, args: DPOConfig) -> list[dict[str, Any]]:
        rows = []
        for i, example in enumerate(data):
            missing = [k for k in ("prompt", "chosen", "rejected") if not isinstance(example.get(k), str)]
            if missing:
                raise ConfigError(f"DPOTrainer: preference row {i} needs text fields prompt, chosen and rejected; "
                                  f"{', '.join(missing)} missing or not a string")
            rows.append(self.tokenize_row(example, args))
        if not rows:
            raise ConfigError("DPOTrainer: the preference data set is empty")
        return rows

    def tokenize_row(self, example: dict, args: DPOConfig) -> dict[str, Any]:
        tok = self.tokenizer
        prompt = list(tok(example["prompt"])["input_ids"])[-args.max_prompt_length:]
        if self.is_encoder_decoder:  # the tokenizer's own specials (T5: </s>) on both sides
            completions = [list(tok(example[k])["input_ids"]) for k in ("chosen", "rejected")]
            room = args.max_completion_length or args.max_length
        else:  # a decoder continues the prompt: the completion without specials, then EOS
            eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
            completions = [list(tok(example[k], add_special_tokens=False)["input_ids"]) + eos
                           for k in ("chosen", "rejected")]
            room = min(args.max_completion_length or args.max_length, args.max_length - len(prompt))
        if room < 1:
            raise ConfigError(f"DPOConfig: max_length={args.max_length} leaves no room for a completion after a "
                              f"{len(prompt)}-token prompt: raise it or lower max_prompt_length")
        chosen, rejected = (c[:room] for c in completions)
        return {"prompt_input_ids": prompt, "chosen_input_ids": chosen, "rejected_input_ids": rejected}

    @torch.no_grad()
    def add_reference_logps(self, reference: nn.Module, rows: list[dict], batch_size: int) -> None:
        was_training, device = reference.training, next(reference.parameters()).device
        reference.eval()
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            batch = {k: v.to(device) for k, v in self.collator(part).items()}
            chosen, rejected = self.completion_logps(reference, batch).float().cpu().chunk(2)
            for row, c, r in zip(part, chosen.tolist(), rejected.tolist(), strict=True):
                row["ref_chosen_logps"], row["ref_rejected_logps"] = c, r
        reference.train(was_training)

    # ---- the loss -----------------------------------------------------------------------------------------
    def completion_logps(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """(2B,) summed log-probabilities of the completions (chosen rows first, then rejected)."""
        if self.is_encoder_decoder:
            from ..models import shift_right

            config = model.config
            targets = batch["completion_ids"]
            decoder_input_ids = shift_right(targets, config.decoder_start_token_id, config.pad_token_id)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           decoder_input_ids=decoder_input_ids).logits
            return (logprobs_from_logits(logits, targets) * batch["completion_mask"]).sum(-1)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logps = logprobs_from_logits(logits[:, :-1], batch["input_ids"][:, 1:])  # position t scores token t+1
        return (logps * batch["completion_mask"][:, 1:]).sum(-1)

    def dpo_loss(self, chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor,
                 ref_rejected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-pair losses, chosen rewards, rejected rewards)."""
        logits = (chosen - ref_chosen) - (rejected - ref_rejected)
        kind, smoothing = self.args.loss_type, self.args.label_smoothing
        if kind == "sigmoid":
            losses = -F.logsigmoid(self.beta * logits) * (1 - smoothing) - F.logsigmoid(-self.beta * logits) * smoothing
        elif kind == "hinge":
            losses = torch.relu(1 - self.beta * logits)
        else:  # ipo
            losses = (logits - 1 / (2 * self.beta)) ** 2
        return losses, self.beta * (chosen - ref_chosen).detach(), self.beta * (rejected - ref_rejected).detach()

    def compute_loss(self, model: nn.Module, inputs: dict, return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | None = None):
        chosen, rejected = self.completion_logps(model, inputs).float().chunk(2)
        losses, chosen_rewards, rejected_rewards = self.dpo_loss(chosen, rejected, inputs["ref_chosen_logps"],
                                                                 inputs["ref_rejected_logps"])
        stored = self._stored["train" if model.training else "eval"]
        for name, value in (("rewards/chosen", chosen_rewards), ("rewards/rejected", rejected_rewards),
                            ("rewards/accuracies", (chosen_rewards > rejected_rewards).float()),
                            ("rewards/margins", chosen_rewards - rejected_rewards),
                            ("logps/chosen", chosen.detach()), ("logps/rejected", rejected.detach())):
            stored[name].extend(value.tolist())
        loss = losses.mean()
        return (loss, {"loss": loss}) if return_outputs else loss

    def prediction_step(self, model, inputs: dict, prediction_loss_only: bool, ignore_keys=None):
        from ..training.data import to_device

        with torch.no_grad(), self._autocast():
            loss = self.compute_loss(model, to_device(inputs, self.device))
        return loss.detach(), None, None

    # ---- logging ------------------------------------------------------------------------------------------
    def more_metrics(self) -> dict[str, float]:
        return self._averaged("eval", "eval_")

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self._averaged("train", ""))
        super().log(logs, start_time)

    def _averaged(self, split: str, prefix: str) -> dict[str, float]:
        stored = self._stored[split]
        out = {prefix + k: sum(v) / len(v) for k, v in stored.items() if v}
        stored.clear()
        return out


class PreferenceCollator:
    """Rows of prompt / chosen / rejected ids to one right-padded batch of 2B sequences (chosen rows first):
    decoder-only `input_ids` = prompt + completion; encoder-decoder `input_ids` = prompt and `completion_ids`;
    `completion_mask` marks the completion tokens."""

    def __init__(self, pad_token_id: int, is_encoder_decoder: bool):
        self.pad, self.is_encoder_decoder = pad_token_id, is_encoder_decoder

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        completions = [r["chosen_input_ids"] for r in rows] + [r["rejected_input_ids"] for r in rows]
        prompts = [r["prompt_input_ids"] for r in rows] * 2
        if self.is_encoder_decoder:
            ids, mask = self._pad(prompts)
            targets, target_mask = self._pad(completions)
            batch = {"input_ids": ids, "attention_mask": mask, "completion_ids": targets,
                     "completion_mask": target_mask}
        else:
            ids, mask = self._pad([p + c for p, c in zip(prompts, completions, strict=True)])
            completion = torch.zeros_like(mask)
            for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
                completion[i, len(p):len(p) + len(c)] = 1
            batch = {"input_ids": ids, "attention_mask": mask, "completion_mask": completion}
        if "ref_chosen_logps" in rows[0]:
            batch["ref_chosen_logps"] = torch.tensor([r["ref_chosen_logps"] for r in rows])
            batch["ref_rejected_logps"] = torch.tensor([r["ref_rejected_logps"] for r in rows])
        return batch

    def _pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, s in enumerate(sequences):
            ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s, dtype=torch.long), 1
        return ids, mask
