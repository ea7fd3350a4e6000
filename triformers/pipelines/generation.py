"""Pipelines that generate text: `text-generation` (decoder-only) and `text2text-generation`,
`summarization`, `translation` (encoder-decoder).

Every keyword argument of `model.generate` passes through (max_new_tokens, do_sample, num_beams,
temperature, top_k, top_p, num_return_sequences, ...). `text-generation` follows transformers'
TextGenerationPipeline (5.x): prompts are left-padded in a batch, the new tokens are decoded without
special tokens, and `return_full_text=True` (default) puts the prompt text in front. A chat (a list of
{"role", "content"} messages, or a batch of them) is rendered with the tokenizer's chat template and comes back
as the conversation with the reply appended as an assistant message (or, when the chat ends with an assistant
message, that message continued: `continue_final_message`). Unless told
otherwise it samples (do_sample=True, temperature=0.7) up to 256 new tokens: transformers' pipeline
defaults for a model without generation_config.json (the length capped by the model's positions).
The seq2seq pipelines keep transformers v4's behaviour (the pipelines were dropped in v5): keys
`generated_text` / `summary_text` / `translation_text`, and the config's `task_specific_params` (T5:
"summarize: ", "translate English to German: " prefixes with their beam settings) as defaults.
"""

from __future__ import annotations

from typing import Any


from ..auto import AutoModelForCausalLM, AutoModelForSeq2SeqLM
from ..errors import InputError
from ..tokenization.batch import pad_ids
from .base import Pipeline, chunks

PIPELINE_NEW_TOKENS = 256  # transformers' text-generation pipeline defaults
PIPELINE_SAMPLING = {"do_sample": True, "temperature": 0.7}
LANGUAGES = {"en": "English", "de": "German", "fr": "French", "ro": "Romanian", "es": "Spanish",
             "it": "Italian", "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "zh": "Chinese", "ja": "Japanese"}


class TextGenerationPipeline(Pipeline):
    task = "text-generation"
    auto_class = AutoModelForCausalLM

    families, heads = ("decoder",), ("lm",)

    def is_single(self, inputs: list | tuple) -> bool:
        """A list of messages is one chat (a list of chats is a batch)."""
        return bool(inputs) and isinstance(inputs[0], dict)

    def prompt_ids(self, item: Any, prefix: str, add_special_tokens: bool, continue_final_message: bool | None,
                   tools: Any, documents: Any) -> list[int]:
        """The ids of one prompt: a text (with `prefix`), or a chat through the chat template."""
        if isinstance(item, str):
            return self.tokenizer(prefix + item, add_special_tokens=add_special_tokens)["input_ids"]
        if not _is_chat(item):
            raise InputError(f"text-generation takes strings or chats (lists of {{'role', 'content'}} messages), "
                             f"got {item!r:.100}")
        prefill = _continues(item, continue_final_message)
        return self.tokenizer.apply_chat_template(list(item), add_generation_prompt=not prefill,
                                                  continue_final_message=prefill, tools=tools, documents=documents,
                                                  return_dict=False)

    def run(self, items: list[Any], batch_size: int, return_full_text: bool = True, return_text: bool = True,
            return_tensors: bool = False, prefix: str = "", skip_special_tokens: bool = True,
            clean_up_tokenization_spaces: bool | None = None, add_special_tokens: bool = False,
            continue_final_message: bool | None = None, tools: Any = None, documents: Any = None,
            **generate_kwargs: Any) -> list[list[dict]]:
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            eos = self.config.eos_token_id
            pad_id = (eos[0] if isinstance(eos, list) else eos) or 0
        results = []
        for group in chunks(items, batch_size):
            rows = [self.prompt_ids(item, prefix, add_special_tokens, continue_final_message, tools, documents)
                    for item in group]
            ids, mask = pad_ids(rows, pad_id, side="left", device=self.device)
            kwargs = {**PIPELINE_SAMPLING, **generate_kwargs}
            if kwargs.get("max_new_tokens") is None and kwargs.get("max_length") is None:
                limit = self.model.max_length()
                room = PIPELINE_NEW_TOKENS if limit is None else max(1, limit - ids.shape[1])
                kwargs["max_new_tokens"] = min(PIPELINE_NEW_TOKENS, room)
            if pad_id != self.tokenizer.pad_token_id and "pad_token_id" not in kwargs:
                kwargs["pad_token_id"] = pad_id
            out = self.model.generate(ids, attention_mask=mask, **kwargs).cpu()
            per_prompt = out.shape[0] // len(group)
            for row, item in enumerate(group):
                records = []
                for sequence in out[row * per_prompt:(row + 1) * per_prompt].tolist():
                    if return_tensors:
                        records.append({"generated_token_ids": sequence})
                        continue
                    new = self.tokenizer.decode(sequence[ids.shape[1]:], skip_special_tokens=skip_special_tokens,
                                                clean_up_tokenization_spaces=clean_up_tokenization_spaces)
                    text = new if not return_full_text else item + new if isinstance(item, str) \
                        else _with_reply(item, new, continue_final_message)
                    records.append({"generated_text": text})
                results.append(records)
        return results


def _is_chat(item: Any) -> bool:
    return isinstance(item, (list, tuple)) and bool(item) and all(
        isinstance(m, dict) and "role" in m and "content" in m for m in item)


def _continues(chat: list[dict], continue_final_message: bool | None) -> bool:
    """transformers' default: a chat that ends with an assistant message is a prefill to continue."""
    return chat[-1]["role"] == "assistant" if continue_final_message is None else bool(continue_final_message)


def _with_reply(chat: list[dict], reply: str, continue_final_message: bool | None) -> list[dict]:
    """The conversation with the reply: appended as an assistant message, or continuing the final message."""
    if _continues(chat, continue_final_message):
        last = chat[-1]
        return list(chat[:-1]) + [{"role": last["role"], "content": last["content"] + reply}]
    return list(chat) + [{"role": "assistant", "content": reply}]


class Text2TextGenerationPipeline(Pipeline):
    task = "text2text-generation"
    auto_class = AutoModelForSeq2SeqLM
    result_key = "generated_text"

    families, heads = ("encoder-decoder",), ("lm",)

    def task_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The config's task_specific_params for this task (prefix and generation defaults)."""
        table = self.config.extra.get("task_specific_params") or {}
        return dict(table.get(self.task) or {})

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        result = super().__call__(inputs, *args, **kwargs)
        if isinstance(inputs, (list, tuple)) and all(len(records) == 1 for records in result):
            return [records[0] for records in result]  # transformers v4 flattens a batch of single answers
        return result

    def run(self, items: list[str], batch_size: int, return_tensors: bool = False, return_text: bool = True,
            skip_special_tokens: bool = True, clean_up_tokenization_spaces: bool | None = None,
            truncation: bool | str = False, prefix: str | None = None, **generate_kwargs: Any) -> list[list[dict]]:
        task = self.task_params(generate_kwargs)
        generate_kwargs.pop("src_lang", None), generate_kwargs.pop("tgt_lang", None)
        prefix = task.pop("prefix", "") if prefix is None else prefix
        if "min_length" in task:  # min_length counts the decoder start token
            task["min_new_tokens"] = max(0, int(task.pop("min_length")) - 1)
        kwargs = {**{k: v for k, v in task.items() if k in GENERATE_KEYS}, **generate_kwargs}
        if "min_length" in kwargs:
            kwargs["min_new_tokens"] = max(0, int(kwargs.pop("min_length")) - 1)
        results = []
        for group in chunks(items, batch_size):
            for item in group:
                if not isinstance(item, str):
                    raise InputError(f"{self.task} takes strings, got {item!r}")
            batch = self.encode([prefix + text for text in group], truncation=truncation)
            out = self.model.generate(batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs).cpu()
            per_input = out.shape[0] // len(group)
            for row in range(len(group)):
                records = []
                for sequence in out[row * per_input:(row + 1) * per_input].tolist():
                    if return_tensors:
                        records.append({self.result_key.replace("_text", "_token_ids"): sequence})
                    else:
                        records.append({self.result_key: self.tokenizer.decode(
                            sequence, skip_special_tokens=skip_special_tokens,
                            clean_up_tokenization_spaces=clean_up_tokenization_spaces)})
                results.append(records)
        return results


class SummarizationPipeline(Text2TextGenerationPipeline):
    task = "summarization"
    result_key = "summary_text"


class TranslationPipeline(Text2TextGenerationPipeline):
    """`translation`, `translation_en_to_de`, or `translation` with src_lang= / tgt_lang=."""

    task = "translation"
    result_key = "translation_text"

    def task_params(self, params: dict[str, Any]) -> dict[str, Any]:
        table = self.config.extra.get("task_specific_params") or {}
        src, tgt = params.get("src_lang"), params.get("tgt_lang")
        if (src is None) != (tgt is None):
            raise InputError("translation: give both src_lang and tgt_lang, or neither")
        if src is not None:
            key = f"translation_{src}_to_{tgt}"
            if key in table:
                return dict(table[key])
            if self.config.model_type != "t5":
                return {}
            if src not in LANGUAGES or tgt not in LANGUAGES:
                raise InputError(f"translation: no prefix known for {src!r} -> {tgt!r}; known languages: "
                                 f"{', '.join(sorted(LANGUAGES))} (or pass prefix=...)")
            return {"prefix": f"translate {LANGUAGES[src]} to {LANGUAGES[tgt]}: "}
        # like transformers: plain "translation" takes the config's first translation task
        keys = [k for k in table if k.startswith("translation")]
        return dict(table[keys[0]]) if keys else {}


GENERATE_KEYS = ("max_new_tokens", "min_new_tokens", "max_length", "do_sample", "temperature", "top_k", "top_p",
                 "num_beams", "length_penalty", "early_stopping", "num_return_sequences", "repetition_penalty",
                 "no_repeat_ngram_size", "eos_token_id", "pad_token_id", "bos_token_id", "forced_bos_token_id",
                 "forced_eos_token_id", "decoder_start_token_id")
