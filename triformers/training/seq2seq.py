"""`Seq2SeqTrainingArguments` and `Seq2SeqTrainer`: the Trainer, evaluating and predicting with `generate` when
`predict_with_generate` (transformers' trainer_seq2seq.py).

With `predict_with_generate`, a batch's predictions are the generated token ids (padded with the pad token to the
generation length: `max_length`, or `max_new_tokens` + 1, so that every batch has the same width) and its loss
is still the teacher-forced loss on the labels; `generation_max_length` / `generation_num_beams` are the
defaults of `evaluate()` / `predict()`'s `max_length` / `num_beams`, and further keyword arguments go to
`generate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .arguments import TrainingArguments
from .data import to_device
from .evaluation import PredictionOutput
from .fields import option
from .trainer import Trainer

DEFAULT_NEW_TOKENS = 20  # generate's default length when nothing sets one


@dataclass
class Seq2SeqTrainingArguments(TrainingArguments):
    sortish_sampler: bool = option(False, "refused: use train_sampling_strategy='group_by_length'")
    predict_with_generate: bool = option(False, "evaluate and predict with generate (for ROUGE / BLEU)")
    generation_max_length: int | None = option(None, "max_length of generate in evaluate / predict", minimum=1)
    generation_num_beams: int | None = option(None, "num_beams of generate in evaluate / predict", minimum=1)
    generation_config: object | None = option(None, "a GenerationConfig handed to generate in evaluate / predict")

    def validate(self) -> None:
        super().validate()
        if self.sortish_sampler:
            from ..errors import TrainingError

            raise TrainingError("Seq2SeqTrainingArguments: sortish_sampler=True is not supported: use "
                                "train_sampling_strategy='group_by_length' (batches of similar lengths)")


class Seq2SeqTrainer(Trainer):
    """The Trainer; with `predict_with_generate`, evaluation and prediction generate (see the module docstring)."""

    def _generation_kwargs(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        args, kwargs = self.args, dict(gen_kwargs)
        if kwargs.get("max_length") is None and kwargs.get("max_new_tokens") is None and \
                getattr(args, "generation_max_length", None) is not None:
            kwargs["max_length"] = args.generation_max_length
        if kwargs.get("num_beams") is None and getattr(args, "generation_num_beams", None) is not None:
            kwargs["num_beams"] = args.generation_num_beams
        if getattr(args, "generation_config", None) is not None and "generation_config" not in kwargs:
            kwargs["generation_config"] = args.generation_config
        return {k: v for k, v in kwargs.items() if v is not None}

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval", **gen_kwargs: Any) -> dict[str, float]:
        self._gen_kwargs = self._generation_kwargs(gen_kwargs)
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def predict(self, test_dataset: Any, ignore_keys: list[str] | None = None, metric_key_prefix: str = "test",
                **gen_kwargs: Any) -> PredictionOutput:
        self._gen_kwargs = self._generation_kwargs(gen_kwargs)
        return super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def prediction_step(self, model, inputs: dict, prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None, **gen_kwargs: Any) -> tuple[Any, Any, Any]:
        if not getattr(self.args, "predict_with_generate", False) or prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = to_device(inputs, self.device)
        gen_kwargs = gen_kwargs or dict(getattr(self, "_gen_kwargs", {}))
        generation_inputs = dict(inputs)
        if "labels" in inputs and "decoder_input_ids" in inputs and \
                inputs["labels"].shape == inputs["decoder_input_ids"].shape:
            # made from the labels by the collator: generation starts afresh, not from them
            generation_inputs = {k: v for k, v in inputs.items() if k not in ("decoder_input_ids",
                                                                            "decoder_attention_mask")}
        generation_inputs.pop("labels", None)
        with torch.no_grad(), self._autocast():
            generated = model.generate(**generation_inputs, **gen_kwargs)
            loss = None
            if "labels" in inputs:
                loss = self.compute_loss(model, inputs).detach().mean()
        width = self._generation_width(gen_kwargs)
        generated = self._pad_to(generated, width)
        labels = self._pad_to(inputs["labels"], width) if "labels" in inputs else None
        return loss, generated, labels

    @staticmethod
    def _generation_width(gen_kwargs: dict[str, Any]) -> int:
        config = gen_kwargs.get("generation_config")
        max_length = gen_kwargs.get("max_length", getattr(config, "max_length", None))
        new_tokens = gen_kwargs.get("max_new_tokens", getattr(config, "max_new_tokens", None))
        if max_length is not None and new_tokens is None:
            return max_length
        return (new_tokens or DEFAULT_NEW_TOKENS) + 1

    def _pad_to(self, tensor: torch.Tensor, width: int) -> torch.Tensor:
        if tensor.shape[-1] >= width:
            return tensor
        pad = getattr(self.processing_class, "pad_token_id", None)
        if pad is None:
            pad = getattr(self.processing_class, "eos_token_id", None)
        if pad is None:
            pad = self.model.config.pad_token_id
        padded = tensor.new_full((tensor.shape[0], width), pad)
        padded[:, :tensor.shape[-1]] = tensor
        return padded
