"""`generate`: merges and checks its settings, prepares the decode state once, and runs greedy search,
multinomial sampling (this file) or beam search (`beam.py`), token for token as transformers.

The sampling loop follows transformers v5.24 `GenerationMixin._sample` (`generation/utils.py`):
processors see the scores in float32; finished rows continue with `pad_token_id`.

Speed: the prompt is fed once (once per prompt, not once per beam), each step feeds one token per
row through a preallocated KV cache, token buffers are allocated for the whole generation, and a
step synchronises with the device once, to decide whether to stop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from .beam import beam_search
from .options import GenerationOptions, apply_lengths, check_positions, eos_tensor, resolve_options
from .outputs import make_output, recorder_for
from .prepare import Inputs, Stopping, merge_config, plan_stopping, split_inputs
from .processors import LogitsProcessorList, build_processors, no_token_error, unusable
from .runner import Runner


def _padding_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  options: GenerationOptions) -> torch.Tensor:
    """The prompt's mask; without one, inferred from pad tokens as transformers does (unless pad is an EOS)."""
    if attention_mask is not None:
        return attention_mask
    pad = options.pad_token_id
    if pad is not None and pad not in options.eos_token_ids and bool((input_ids == pad).any()):
        return input_ids.ne(pad).long()
    return torch.ones_like(input_ids)


def _check_model(model) -> None:
    name = type(model).__name__
    if model.family not in ("decoder", "encoder-decoder"):
        raise InputError(f"generate: {name} is an encoder-only ({model.config.model_type}) model and cannot "
                         "generate text; load a decoder (AutoModelForCausalLM) or encoder-decoder "
                         "(AutoModelForSeq2SeqLM) checkpoint")
    if model.head != "lm":
        raise InputError(f"generate: {name} has the {model.head!r} head; generation needs the language-model "
                         "head (AutoModelForCausalLM / AutoModelForSeq2SeqLM)")


def _decoder_prompt(model, inputs: Inputs, options: GenerationOptions) -> torch.Tensor:
    """The decoder's first positions: the prompt (decoder-only), else decoder_start_token_id, put in front of
    the caller's decoder_input_ids unless every row already starts with it (as transformers does)."""
    device = model.device
    if model.family == "decoder":
        return inputs.input_ids
    start = torch.full((inputs.batch_size, 1), options.decoder_start_token_id, dtype=torch.long, device=device)
    given = inputs.decoder_input_ids
    if given is None:
        return start
    model.check_inputs(given, None, name="decoder_input_ids")
    given = given.to(device=device, dtype=torch.long)
    return torch.cat([start, given], dim=1) if bool((given[:, 0] != start[:, 0]).all()) else given


@torch.no_grad()
def generate(model, inputs: torch.Tensor | None = None, generation_config: Any = None,
             logits_processor: list | None = None, stopping_criteria: list | None = None, streamer: Any = None,
             **kwargs: Any) -> Any:
    """Generate token ids; see `TransformerModel.generate` for the arguments.

    Returns (batch * num_return_sequences, length) ids: the prompt followed by the new tokens for a
    decoder-only model, the decoder ids (starting with decoder_start_token_id) for an encoder-decoder;
    with `return_dict_in_generate=True`, transformers' output object around them.
    """
    _check_model(model)
    config, rest, default_max_length, given = merge_config(model, generation_config, kwargs)
    inputs = split_inputs(model, inputs, rest, config.bos_token_id)
    device = model.device
    input_ids, mask = inputs.input_ids, inputs.attention_mask
    if input_ids is not None:
        model.check_inputs(input_ids, mask)
        input_ids = input_ids.to(device=device, dtype=torch.long)
    mask = mask.to(device) if mask is not None else None
    decoder_only = model.family == "decoder"
    options = resolve_options(model, config, given=given, generator=inputs.generator, seed=inputs.seed)
    prompt = _decoder_prompt(model, inputs, options)
    apply_lengths(options, model, config, prompt.shape[1], default_max_length)
    stopping = plan_stopping(options, stopping_criteria, inputs.tokenizer)
    if stopping.max_length != options.max_length:  # a MaxLengthCriteria of the caller's sets the length
        check_positions(model, prompt.shape[1], stopping.max_length - prompt.shape[1])
        options.max_new_tokens = stopping.max_length - prompt.shape[1]
        if options.max_new_tokens < 1:
            raise InputError(f"generate: MaxLengthCriteria({stopping.max_length}) leaves no room after the "
                             f"{prompt.shape[1]} prompt positions")
    _check_streamer(streamer, inputs.batch_size, options)
    runner, processors = _prepare(model, input_ids, mask, inputs, prompt, options, logits_processor)
    if options.num_beams > 1:
        sequences, extra = beam_search(runner, prompt, options, processors, stopping)
    else:
        sequences, extra = sample(runner, prompt, options, processors, stopping, streamer)
    if not options.return_dict_in_generate:
        return sequences
    return make_output(not decoder_only, options.num_beams > 1, sequences=sequences, **extra)


def _check_streamer(streamer: Any, batch_size: int, options: GenerationOptions) -> None:
    if streamer is None:
        return
    if not all(callable(getattr(streamer, m, None)) for m in ("put", "end")):
        raise InputError(f"generate: streamer must have put(ids) and end() methods (e.g. TextStreamer), "
                         f"got {type(streamer).__name__}")
    if batch_size > 1 or options.num_beams > 1 or options.num_return_sequences > 1:
        raise InputError("generate: a streamer follows one sequence; use it with one prompt, num_beams=1 "
                         "and num_return_sequences=1")


def _prepare(model, input_ids: torch.Tensor | None, mask: torch.Tensor | None, inputs: Inputs,
             prompt: torch.Tensor, options: GenerationOptions, user_processors: list | None
             ) -> tuple[Runner, LogitsProcessorList]:
    """The decode state (runner) and the processors of this call."""
    decoder_only = model.family == "decoder"
    if input_ids is not None:
        mask = _padding_mask(input_ids, mask, options)
    padded = mask is not None and not bool(mask.all())
    total = prompt.shape[1] + options.max_new_tokens
    runner = Runner(model, input_ids, mask, padded, total, options.use_cache, options.static_cache,
                    encoded=inputs.encoder_outputs)
    expand = options.num_beams if options.num_beams > 1 else options.num_return_sequences
    padding_lengths = None
    if decoder_only and padded:  # repetition penalty skips each row's left padding
        padding_lengths = (mask != 0).int().argmax(dim=1).repeat_interleave(expand)
    for processor in user_processors or []:
        if not callable(processor):
            raise InputError(f"generate: logits_processor holds {type(processor).__name__}, which is not callable")
    processors = build_processors(options, prompt.shape[1], model.config.vocab_size, padding_lengths, input_ids,
                                  user_processors, model.device)
    return runner, processors


def sample(runner: Runner, prompt: torch.Tensor, options: GenerationOptions, processors: LogitsProcessorList,
           stopping: Stopping, streamer: Any = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Greedy search (argmax) or multinomial sampling, one row per prompt and return sequence.

    Returns the sequences and the output fields recorded on the way (scores, logits)."""
    B, L = prompt.shape
    R = options.num_return_sequences
    tokens = prompt.new_empty(B * R, L + options.max_new_tokens)  # (N, total), filled left to right
    tokens[:, :L] = prompt.repeat_interleave(R, dim=0)
    eos = eos_tensor(stopping.eos_token_ids, prompt.device)
    if eos is not None and options.pad_token_id is None:
        raise InputError("generate: stopping at EOS needs pad_token_id for the rows that finish first")
    recorder = recorder_for(options)
    criteria = stopping.criteria
    unfinished = torch.ones(B * R, dtype=torch.bool, device=prompt.device)
    if streamer is not None:
        streamer.put(prompt.cpu())
    cur = L
    failed = torch.zeros((), dtype=torch.bool, device=prompt.device)  # a row had no token to choose
    for step in range(options.max_new_tokens):
        if step == 0:  # the prompt is fed once per prompt, then repeated for each return sequence
            logits = runner.logits(prompt, cur).repeat_interleave(R, dim=0)
            runner.expand(R)
        else:
            logits = runner.logits(tokens, cur)
        scores = processors(tokens[:, :cur], logits)
        if recorder is not None:
            recorder.add(scores, logits)
        if options.do_sample:
            probs = F.softmax(scores, dim=-1)
            bad = probs.isnan().any(dim=-1)  # NaN scores, +inf scores, or every token at -inf
            probs = probs.masked_fill(bad[:, None], 1.0)  # a valid stand-in (never a device assert); refused below
            next_tokens = torch.multinomial(probs, num_samples=1, generator=options.generator).squeeze(1)
        else:
            bad = unusable(scores)
            next_tokens = torch.argmax(scores, dim=-1)
        failed |= bad.any()
        if eos is not None:  # finished rows continue with padding
            next_tokens = torch.where(unfinished, next_tokens, options.pad_token_id)
        tokens[:, cur] = next_tokens
        cur += 1
        if streamer is not None:
            streamer.put(next_tokens.cpu())
        if eos is not None:
            unfinished &= ~torch.isin(next_tokens, eos)
        if criteria:
            unfinished &= ~criteria(tokens[:, :cur], recorder.scores_so_far() if recorder is not None else None)
        if eos is not None or criteria:
            alive, broken = torch.stack((unfinished.any(), failed)).tolist()  # the step's one synchronisation
            if broken:
                raise no_token_error(options, step)
            if not alive:
                break
    if bool(failed):  # without EOS ids nothing synchronised during the loop
        raise no_token_error(options, None)
    if streamer is not None:
        streamer.end()
    return tokens[:, :cur], recorder.fields() if recorder is not None else {}
