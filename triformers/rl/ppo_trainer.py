"""PPOTrainer with trl 0.11's step interface: the course's Lab 3 loop runs with the import changed.

    ppo_trainer = PPOTrainer(config=config, model=ppo_model, ref_model=ref_model, tokenizer=tokenizer,
                             dataset=dataset, data_collator=collator)
    for batch in ppo_trainer.dataloader:
        responses = [ppo_trainer.generate(q, **generation_kwargs).squeeze() for q in batch["input_ids"]]
        stats = ppo_trainer.step(batch["input_ids"], responses, rewards)   # trl's statistic names
        ppo_trainer.log_stats(stats, batch, rewards)

One `step` (Ouyang et al. 2022; Ziegler et al. 2019, arXiv:1909.08593, as trl implements it): log-probabilities
and values of the responses under the policy, and log-probabilities under the reference (the frozen
`ref_model`, or the policy with its LoRA adapter disabled when ref_model is None: no second model); a per-token
reward of -kl_coef x KL plus the score on the last response token; GAE advantages (gamma, lam), whitened;
`ppo_epochs` passes over shuffled minibatches with the clipped policy loss and the clipped value loss
(vf_coef); then the KL coefficient is updated (adaptive towards `target`, or fixed).
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..training.rng import set_seed
from .core import (AdaptiveKLController, FixedKLController, clip_by_value, entropy_from_logits, flatten_dict,
                   logprobs_from_logits, masked_mean, masked_var, masked_whiten, stack_dicts, to_scalars)
from .ppo_config import PPOConfig
from .value_head import create_reference_model

KEPT_COLUMNS = ("input_ids", "attention_mask", "label", "query", "response")


class PPOTrainer:
    def __init__(self, config: PPOConfig | None = None, model: nn.Module | None = None,
                 ref_model: nn.Module | None = None, tokenizer: Any = None, dataset: Any = None,
                 optimizer: torch.optim.Optimizer | None = None, data_collator: Callable | None = None,
                 num_shared_layers: int | None = None, lr_scheduler: Any = None,
                 training_data_collator: Callable | None = None):
        if model is None or not hasattr(model, "v_head"):
            raise ConfigError("PPOTrainer needs a model with a value head (AutoModelFor...WithValueHead)")
        self.config = config if config is not None else PPOConfig()
        set_seed(self.config.seed)
        self.model, self.tokenizer = model, tokenizer
        self.is_encoder_decoder, self.is_peft_model = model.is_encoder_decoder, model.is_peft_model
        if ref_model is None and not self.is_peft_model:
            ref_model = create_reference_model(model)
        self.ref_model = ref_model  # None: the policy with its adapter disabled
        self.current_device = next(model.parameters()).device
        self.dataset = dataset
        if dataset is not None and self.config.remove_unused_columns and hasattr(dataset, "remove_columns"):
            unused = [c for c in dataset.column_names if c not in KEPT_COLUMNS]
            self.dataset = dataset.remove_columns(unused) if unused else dataset
        self.data_collator = data_collator
        self.dataloader = self.prepare_dataloader(self.dataset, data_collator) if dataset is not None else None
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = optimizer or torch.optim.Adam(trainable, lr=self.config.learning_rate)
        self.lr_scheduler = lr_scheduler
        self.kl_ctl = (AdaptiveKLController(self.config.init_kl_coef, self.config.target, self.config.horizon)
                       if self.config.adap_kl_ctrl else FixedKLController(self.config.init_kl_coef))
        self._score_moments = [0.0, 0.0, 1e-24]  # running mean, M2, count (use_score_scaling)
        self.history: list[dict[str, Any]] = []

    def prepare_dataloader(self, dataset: Any, data_collator: Callable | None = None) -> torch.utils.data.DataLoader:
        generator = torch.Generator().manual_seed(self.config.seed)
        return torch.utils.data.DataLoader(dataset, batch_size=self.config.batch_size, collate_fn=data_collator,
                                           shuffle=True, drop_last=True, generator=generator)

    # ---- generation ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, query_tensor: torch.Tensor | list[torch.Tensor], length_sampler: Callable | None = None,
                 batch_size: int = 4, return_prompt: bool = True, generate_ref_response: bool = False,
                 **generation_kwargs: Any):
        """The policy's response to one query (1-D ids; returns (1, T)) or to a list of them (a list of 1-D
        responses, generated `batch_size` at a time); decoder-only responses include the prompt unless
        return_prompt=False."""
        if isinstance(query_tensor, (list, tuple)):
            response = self._generate_batched(self.model, query_tensor, length_sampler, batch_size, return_prompt,
                                              **generation_kwargs)
            if generate_ref_response:
                with self._reference() as ref:
                    return response, self._generate_batched(ref, query_tensor, length_sampler, batch_size,
                                                            return_prompt, **generation_kwargs)
            return response
        if query_tensor.dim() != 1:
            raise ValueError("query_tensor must be a tensor of shape (`seq_len`) or a list of tensors of shape "
                             "(`seq_len`)")
        if length_sampler is not None:
            generation_kwargs["max_new_tokens"] = length_sampler()
        was_training = self.model.training
        self.model.eval()
        response = self.model.generate(input_ids=query_tensor.unsqueeze(0), **generation_kwargs)
        if generate_ref_response:
            with self._reference() as ref:
                ref_response = ref.generate(input_ids=query_tensor.unsqueeze(0), **generation_kwargs)
        self.model.train(was_training)
        if not return_prompt and not self.is_encoder_decoder:
            response = response[:, query_tensor.shape[0]:]
            if generate_ref_response:
                ref_response = ref_response[:, query_tensor.shape[0]:]
        return (response, ref_response) if generate_ref_response else response

    def _generate_batched(self, model: nn.Module, queries: list[torch.Tensor], length_sampler: Callable | None,
                          batch_size: int, return_prompt: bool, **generation_kwargs: Any) -> list[torch.Tensor]:
        pad = self._pad_id()
        outputs = []
        for start in range(0, len(queries), batch_size):
            if length_sampler is not None:
                generation_kwargs["max_new_tokens"] = length_sampler()
            part = queries[start:start + batch_size]
            width = max(len(q) for q in part)
            left = not self.is_encoder_decoder  # a decoder continues the prompt: pad on the left
            ids = torch.full((len(part), width), pad, dtype=torch.long)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            for row, q in enumerate(part):
                span = slice(width - len(q), width) if left else slice(0, len(q))
                ids[row, span], mask[row, span] = q, 1
            generated = model.generate(input_ids=ids.to(self.current_device),
                                       attention_mask=mask.to(self.current_device), **generation_kwargs)
            for row, q in enumerate(part):
                out = generated[row]
                if not self.is_encoder_decoder:
                    out = out[width - len(q):]  # drop the left padding
                    if not return_prompt:
                        out = out[len(q):]
                elif pad is not None:  # drop padding after the end (the decoder start token stays)
                    keep = len(out)
                    while keep > 1 and out[keep - 1] == pad:
                        keep -= 1
                    out = out[:keep]
                outputs.append(out)
        return outputs

    def _pad_id(self) -> int:
        tok = self.tokenizer
        pad = getattr(tok, "pad_token_id", None)
        return pad if pad is not None else (getattr(tok, "eos_token_id", None) or 0)

    def _reference(self):
        if self.ref_model is not None:
            return nullcontext(self.ref_model)
        return _Disabled(self.model)

    # ---- the step -----------------------------------------------------------------------------------------
    def step(self, queries: list[torch.Tensor], responses: list[torch.Tensor], scores: list[torch.Tensor],
             response_masks: list[torch.Tensor] | None = None) -> dict[str, Any]:
        """One PPO optimisation on a batch of (query, response, score); returns trl's statistics."""
        config, t0 = self.config, time.time()
        queries, responses, scores = self._check(queries, responses, scores, response_masks)
        scores = self._scale_scores(scores)
        timing = {}
        inputs = self.prepare_model_inputs(queries, responses)
        full_kl = config.kl_penalty == "full"
        with torch.no_grad():
            t = time.time()
            logprobs, logits, values, masks = self.batched_forward_pass(self.model, queries, responses, inputs,
                                                                        full_kl, response_masks)
            with self._reference() as ref:
                ref_logprobs, ref_logits, _, _ = self.batched_forward_pass(ref, queries, responses, inputs, full_kl)
            timing["time/ppo/forward_pass"] = time.time() - t
            if full_kl:
                rewards, non_score_reward, kls = self.compute_rewards(
                    scores, F.log_softmax(logits, -1), F.log_softmax(ref_logits, -1), masks)
            else:
                rewards, non_score_reward, kls = self.compute_rewards(scores, logprobs, ref_logprobs, masks)
            values, advantages, returns = self.compute_advantages(values, rewards, masks)
        t = time.time()
        all_stats = self._optimise(queries, responses, inputs, logprobs, values, masks, advantages, returns)
        timing["time/ppo/optimize_step"] = time.time() - t
        train_stats = stack_dicts(all_stats)
        for key in ("policy/advantages", "policy/ratio"):  # kept per token, not averaged
            train_stats[key] = torch.flatten(train_stats[key]).unsqueeze(0)
        stats = self.record_step_stats(scores=scores, logprobs=logprobs, ref_logprobs=ref_logprobs,
                                       non_score_reward=non_score_reward, train_stats=train_stats,
                                       kl_coef=self.kl_ctl.value, masks=masks, queries=queries, responses=responses,
                                       kls=kls)
        stats = to_scalars(stats)
        stats["ppo/learning_rate"] = self.optimizer.param_groups[0]["lr"]
        self.kl_ctl.update(stats["objective/kl"], config.batch_size)
        timing["time/ppo/total"] = time.time() - t0
        stats.update(timing)
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        return stats

    def _check(self, queries, responses, scores, response_masks):
        batch = self.config.batch_size
        for name, items in (("queries", queries), ("responses", responses), ("scores", scores)):
            if not isinstance(items, (list, tuple)):
                raise ValueError(f"{name} must be a list of tensors - got {type(items)}")
            if len(items) != batch:
                raise ValueError(f"Batch size ({batch}) does not match number of examples - but got {len(items)} "
                                 f"for: {name}")
        if response_masks is not None and len(response_masks) != batch:
            raise ValueError(f"response_masks has {len(response_masks)} rows, batch_size is {batch}")
        for name, items in (("queries", queries), ("responses", responses)):
            for i, item in enumerate(items):
                if not isinstance(item, torch.Tensor) or item.dim() != 1 or not len(item):
                    raise ValueError(f"{name}[{i}] must be a non-empty 1-D tensor of token ids, got "
                                     f"{getattr(item, 'shape', type(item))}")
        device = self.current_device
        scores = torch.stack([torch.as_tensor(s, dtype=torch.float32).reshape(()) for s in scores]).to(device)
        return [q.to(device) for q in queries], [r.to(device) for r in responses], scores

    def _scale_scores(self, scores: torch.Tensor) -> torch.Tensor:
        config = self.config
        if config.use_score_scaling:
            mean, m2, count = self._score_moments
            for s in scores.tolist():  # Welford's running moments over every score seen
                count += 1
                delta = s - mean
                mean += delta / count
                m2 += delta * (s - mean)
            self._score_moments = [mean, m2, count]
            std = math.sqrt(m2 / max(count - 1, 1)) + torch.finfo(scores.dtype).eps
            scores = (scores - mean) / std if config.use_score_norm else scores / std
        if config.score_clip is not None:
            scores = torch.clip(scores, -config.score_clip, config.score_clip)
        return scores

    def prepare_model_inputs(self, queries: list[torch.Tensor], responses: list[torch.Tensor]) -> dict:
        """Right-padded model inputs: encoder-decoder queries as input_ids and responses as decoder_input_ids;
        decoder-only query + response."""
        pad = self._pad_id()
        if self.is_encoder_decoder:
            ids, mask = _pad_right(queries, pad)
            dec, dec_mask = _pad_right(responses, pad)
            return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec,
                    "decoder_attention_mask": dec_mask}
        ids, mask = _pad_right([torch.cat([q, r]) for q, r in zip(queries, responses, strict=True)], pad)
        return {"input_ids": ids, "attention_mask": mask}

    def batched_forward_pass(self, model: nn.Module, queries: list[torch.Tensor], responses: list[torch.Tensor],
                             model_inputs: dict, return_logits: bool = False,
                             response_masks: list[torch.Tensor] | None = None):
        """(logprobs, logits or None, values, masks), each (B, T-1): position t scores token t+1; the mask
        covers the response tokens."""
        size, all_logprobs, all_logits, all_values, all_masks = self.config.mini_batch_size, [], [], [], []
        model.eval()
        for start in range(0, len(queries), size):
            part = {k: v[start:start + size] for k, v in model_inputs.items()}
            logits, _, values = model(**part)
            key = "decoder_" if self.is_encoder_decoder else ""
            input_ids, attention_mask = part[key + "input_ids"], part[key + "attention_mask"]
            logprobs = logprobs_from_logits(logits[:, :-1, :], input_ids[:, 1:])
            masks = torch.zeros_like(attention_mask)
            masks[:, :-1] = attention_mask[:, 1:]
            for j in range(len(part["input_ids"])):
                if self.is_encoder_decoder:  # the response's first token is the decoder start
                    begin, end = 1, int(attention_mask[j].sum()) - 1
                else:
                    begin = len(queries[start + j]) - 1
                    end = begin + len(responses[start + j])
                masks[j, :begin] = 0
                masks[j, end:] = 0
                if response_masks is not None:
                    masks[j, begin:end] *= response_masks[start + j].to(masks)[:end - begin]
            if return_logits:
                all_logits.append(logits)
            all_values.append(values)
            all_logprobs.append(logprobs)
            all_masks.append(masks)
        return (torch.cat(all_logprobs), torch.cat(all_logits)[:, :-1] if return_logits else None,
                torch.cat(all_values)[:, :-1], torch.cat(all_masks)[:, :-1])

    def compute_rewards(self, scores, logprobs, ref_logprobs, masks):
        """Per-token rewards: -kl_coef x KL everywhere, plus the score on each response's last token."""
        kls = self._kl_penalty(logprobs, ref_logprobs)  # (B, T)
        non_score_rewards = -self.kl_ctl.value * kls
        rewards = non_score_rewards.clone()
        for row, (score, mask) in enumerate(zip(scores, masks, strict=True)):
            rewards[row, mask.nonzero()[-1]] += score
        return rewards, non_score_rewards, kls

    def _kl_penalty(self, logprob: torch.Tensor, ref_logprob: torch.Tensor) -> torch.Tensor:
        kind = self.config.kl_penalty
        if kind == "kl":
            return logprob - ref_logprob
        if kind == "abs":
            return (logprob - ref_logprob).abs()
        if kind == "mse":
            return 0.5 * (logprob - ref_logprob).square()
        return F.kl_div(ref_logprob, logprob, log_target=True, reduction="none").sum(-1)  # "full"

    def compute_advantages(self, values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor):
        """Generalised advantage estimation (Schulman et al. 2015) over the response tokens."""
        config, last, reversed_advantages = self.config, 0.0, []
        values, rewards = values * mask, rewards * mask
        if config.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False)
        length = rewards.shape[-1]
        for t in reversed(range(length)):
            next_values = values[:, t + 1] if t < length - 1 else 0.0
            delta = rewards[:, t] + config.gamma * next_values - values[:, t]
            last = delta + config.gamma * config.lam * last
            reversed_advantages.append(last)
        advantages = torch.stack(reversed_advantages[::-1]).transpose(0, 1)
        returns = advantages + values
        return values, masked_whiten(advantages, mask).detach(), returns

    def _optimise(self, queries, responses, inputs, logprobs, values, masks, advantages, returns) -> list[dict]:
        config, batch = self.config, len(queries)
        all_stats, accumulated = [], 0
        for _ in range(config.ppo_epochs):
            order = np.random.permutation(batch)
            for start in range(0, batch, config.mini_batch_size):
                rows = order[start:start + config.mini_batch_size]
                index = torch.as_tensor(rows, device=masks.device)
                part = {k: v[index] for k, v in inputs.items()}
                new_logprobs, logits, vpreds, _ = self.batched_forward_pass(
                    self.model, [queries[i] for i in rows], [responses[i] for i in rows], part, return_logits=True)
                self.model.train()  # as trl: the forward above ran in eval mode (no dropout)
                loss_p, loss_v, stats = self.loss(logprobs[index], values[index], logits, vpreds, new_logprobs,
                                                  masks[index], advantages[index], returns[index])
                ((loss_p + loss_v) / config.gradient_accumulation_steps).backward()
                accumulated += 1
                if accumulated % config.gradient_accumulation_steps == 0:
                    if config.max_grad_norm is not None:
                        params = [p for p in self.model.parameters() if p.requires_grad]
                        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                all_stats.append(stats)
            if config.early_stopping and self._early_stop(stats["policy/policykl"]):
                break
        return all_stats

    def _early_stop(self, policykl: torch.Tensor) -> bool:
        if float(policykl) > 1.5 * self.config.target_kl:
            self.optimizer.zero_grad(set_to_none=True)
            return True
        return False

    def loss(self, old_logprobs, values, logits, vpreds, logprobs, mask, advantages, returns):
        """The clipped policy loss and vf_coef x the clipped value loss, and the minibatch's statistics."""
        config = self.config
        vpred_clipped = clip_by_value(vpreds, values - config.cliprange_value, values + config.cliprange_value)
        vf_losses1, vf_losses2 = (vpreds - returns) ** 2, (vpred_clipped - returns) ** 2
        vf_loss = 0.5 * masked_mean(torch.max(vf_losses1, vf_losses2), mask)
        vf_clipfrac = masked_mean(torch.gt(vf_losses2, vf_losses1).float(), mask)
        ratio = torch.exp(logprobs - old_logprobs)
        pg_losses = -advantages * ratio
        pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - config.cliprange, 1.0 + config.cliprange)
        pg_loss = masked_mean(torch.max(pg_losses, pg_losses2), mask)
        pg_clipfrac = masked_mean(torch.gt(pg_losses2, pg_losses).float(), mask)
        loss = pg_loss + config.vf_coef * vf_loss
        avg_ratio = masked_mean(ratio, mask).item()
        if avg_ratio > config.ratio_threshold:
            warnings.warn(f"The average ratio of batch ({avg_ratio:.2f}) exceeds threshold "
                          f"{config.ratio_threshold:.2f}. Skipping batch.", stacklevel=2)
            pg_loss, vf_loss, loss = pg_loss * 0.0, vf_loss * 0.0, loss * 0.0
        entropy = masked_mean(entropy_from_logits(logits), mask)
        stats = dict(
            loss=dict(policy=pg_loss.detach(), value=vf_loss.detach(), total=loss.detach()),
            policy=dict(entropy=entropy.detach(), approxkl=(0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)
                                                            ).detach(),
                        policykl=masked_mean(old_logprobs - logprobs, mask).detach(), clipfrac=pg_clipfrac.detach(),
                        advantages=advantages.detach(), advantages_mean=masked_mean(advantages, mask).detach(),
                        ratio=ratio.detach()),
            returns=dict(mean=masked_mean(returns, mask).detach(), var=masked_var(returns, mask).detach()),
            val=dict(vpred=masked_mean(vpreds, mask).detach(), error=masked_mean((vpreds - returns) ** 2, mask
                                                                                 ).detach(),
                     clipfrac=vf_clipfrac.detach(), mean=masked_mean(values, mask).detach(),
                     var=masked_var(values, mask).detach()),
        )
        return pg_loss, config.vf_coef * vf_loss, flatten_dict(stats)

    def record_step_stats(self, kl_coef: float, **data: Any) -> dict[str, Any]:
        mask, kls = data.pop("masks"), data.pop("kls")
        kl_list = (kls * mask).sum(axis=-1)
        mean_kl = kl_list.mean()
        if mean_kl.item() < -1.0:
            warnings.warn(f"KL divergence is starting to become negative: {mean_kl.item():.2f} - this might be a "
                          "precursor for failed training (check the generation kwargs)", stacklevel=2)
        query_lens = torch.tensor([len(q) for q in data["queries"]], dtype=torch.float)
        response_lens = torch.tensor([len(r) for r in data["responses"]], dtype=torch.float)
        stats = {
            "objective/kl": mean_kl, "objective/kl_dist": kl_list, "objective/logprobs": data["logprobs"],
            "objective/ref_logprobs": data["ref_logprobs"], "objective/kl_coef": kl_coef,
            "objective/entropy": (-data["logprobs"] * mask).sum(axis=-1).mean(),
            "ppo/mean_non_score_reward": masked_mean(data["non_score_reward"], mask),
            "ppo/mean_scores": data["scores"].mean(), "ppo/std_scores": data["scores"].std(),
            "tokens/queries_len_mean": query_lens.mean().item(), "tokens/queries_len_std": query_lens.std().item(),
            "tokens/queries_dist": query_lens.numpy(), "tokens/responses_len_mean": response_lens.mean().item(),
            "tokens/responses_len_std": response_lens.std().item(), "tokens/responses_dist": response_lens.numpy(),
        }
        for key, value in data["train_stats"].items():
            stats[f"ppo/{key}"] = torch.mean(value, axis=0)
        stats["ppo/val/var_explained"] = 1 - stats["ppo/val/error"] / stats["ppo/returns/var"]
        return stats

    def log_stats(self, stats: dict, batch: dict, rewards: list[torch.Tensor] | torch.Tensor,
                  columns_to_log: tuple[str, ...] = ("query", "response")) -> None:
        """Append the step's scalar statistics with env/reward_mean, _std and _dist to `history` (trackers, as
        trl's log_with, are not wired)."""
        rewards = torch.stack([torch.as_tensor(r, dtype=torch.float32).reshape(()) for r in rewards]) \
            if isinstance(rewards, (list, tuple)) else torch.as_tensor(rewards, dtype=torch.float32)
        record = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
        record.update({"env/reward_mean": rewards.mean().item(), "env/reward_std": rewards.std().item(),
                       "env/reward_dist": rewards.numpy()})
        self.history.append(record)

    def _save_pretrained(self, save_directory: str) -> None:
        self.model.save_pretrained(save_directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)


class _Disabled:
    """The policy as its own reference: the LoRA adapter off inside the block."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> nn.Module:
        self.context = self.model.pretrained_model.disable_adapter()
        self.context.__enter__()
        return self.model

    def __exit__(self, *exc: Any) -> None:
        self.context.__exit__(*exc)


def _pad_right(rows: list[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = rows[0].new_full((len(rows), width), pad)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=rows[0].device)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
    return ids, mask
