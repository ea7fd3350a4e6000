"""`generate`: greedy search, multinomial sampling and beam search, token for token as transformers.

The loops follow transformers v5.24 `GenerationMixin._sample` and the vectorised `_beam_search`
(`generation/utils.py`): processors see the scores in float32; finished rows continue with
`pad_token_id`; beam search applies the processors to log-probabilities, keeps
`max(2, 1 + #eos) * num_beams` candidates per step, divides a finished hypothesis' score by
`generated_length ** length_penalty`, and stops by the same `early_stopping` rules (True: when
`num_beams` hypotheses are done; False: when no running beam can beat the worst kept one at the
current length; "never": at the best possible length).

Speed: the prompt is fed once (once per prompt, not once per beam), each step feeds one token per
row through a preallocated KV cache, token buffers are allocated for the whole generation, and a
step synchronises with the device once, to decide whether to stop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from .options import GenerationOptions, resolve_options
from .processors import Processors, build_processors
from .runner import Runner

NEG = -1.0e9  # transformers' "impossible" score in beam search (finite, so sums stay comparable)


def _padding_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  options: GenerationOptions) -> torch.Tensor:
    """The prompt's mask; without one, inferred from pad tokens as transformers does (unless pad is an EOS)."""
    if attention_mask is not None:
        return attention_mask
    pad = options.pad_token_id
    if pad is not None and pad not in options.eos_token_ids and bool((input_ids == pad).any()):
        return input_ids.ne(pad).long()
    return torch.ones_like(input_ids)


@torch.no_grad()
def generate(model, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
             streamer: Any = None, **kwargs: Any) -> torch.Tensor:
    """Generate token ids; see `TransformerModel.generate` for the arguments.

    Returns (batch * num_return_sequences, length) ids: the prompt followed by the new tokens for a
    decoder-only model, the decoder ids (starting with decoder_start_token_id) for an encoder-decoder.
    """
    name = type(model).__name__
    if model.family not in ("decoder", "encoder-decoder"):
        raise InputError(f"generate: {name} is an encoder-only ({model.config.model_type}) model and cannot "
                         "generate text; load a decoder (AutoModelForCausalLM) or encoder-decoder "
                         "(AutoModelForSeq2SeqLM) checkpoint")
    if model.head != "lm":
        raise InputError(f"generate: {name} has the {model.head!r} head; generation needs the language-model "
                         "head (AutoModelForCausalLM / AutoModelForSeq2SeqLM)")
    model.check_inputs(input_ids, attention_mask)
    device = model.device
    input_ids = input_ids.to(device=device, dtype=torch.long)
    attention_mask = attention_mask.to(device) if attention_mask is not None else None
    B = input_ids.shape[0]
    decoder_only = model.family == "decoder"
    L = input_ids.shape[1] if decoder_only else 1  # decoder positions before the first new token
    options = resolve_options(model, L, **kwargs)
    if streamer is not None and not all(callable(getattr(streamer, m, None)) for m in ("put", "end")):
        raise InputError(f"generate: streamer must have put(ids) and end() methods (e.g. TextStreamer), "
                         f"got {type(streamer).__name__}")
    if streamer is not None and (B > 1 or options.num_beams > 1 or options.num_return_sequences > 1):
        raise InputError("generate: a streamer follows one sequence; use it with one prompt, num_beams=1 "
                         "and num_return_sequences=1")
    mask = _padding_mask(input_ids, attention_mask, options)
    padded = not bool(mask.all())
    total = L + options.max_new_tokens
    runner = Runner(model, input_ids, mask, padded, total, options.use_cache)
    prompt = (input_ids if decoder_only
              else torch.full((B, 1), options.decoder_start_token_id, dtype=torch.long, device=device))
    if options.num_beams > 1:
        expand = options.num_beams
    else:
        expand = options.num_return_sequences  # >1 only when sampling
    padding_lengths = None
    if decoder_only and padded:  # repetition penalty skips each row's left padding
        padding_lengths = (mask != 0).int().argmax(dim=1).repeat_interleave(expand)
    processors = build_processors(options, L, model.config.vocab_size, padding_lengths, device)
    if options.num_beams > 1:
        return beam_search(runner, prompt, options, processors)
    return sample(runner, prompt, options, processors, streamer)


def _eos_tensor(options: GenerationOptions, device: torch.device) -> torch.Tensor | None:
    return torch.tensor(options.eos_token_ids, device=device) if options.eos_token_ids else None


def sample(runner: Runner, prompt: torch.Tensor, options: GenerationOptions, processors: Processors,
           streamer: Any = None) -> torch.Tensor:
    """Greedy search (argmax) or multinomial sampling, one row per prompt and return sequence."""
    B, L = prompt.shape
    R = options.num_return_sequences
    tokens = prompt.new_empty(B * R, L + options.max_new_tokens)  # (N, total), filled left to right
    tokens[:, :L] = prompt.repeat_interleave(R, dim=0)
    eos = _eos_tensor(options, prompt.device)
    unfinished = torch.ones(B * R, dtype=torch.bool, device=prompt.device)
    if streamer is not None:
        streamer.put(prompt.cpu())
    cur = L
    for step in range(options.max_new_tokens):
        if step == 0:  # the prompt is fed once per prompt, then repeated for each return sequence
            logits = runner.logits(prompt, cur).repeat_interleave(R, dim=0)
            runner.expand(R)
        else:
            logits = runner.logits(tokens, cur)
        scores = processors(tokens[:, :cur], logits)
        if options.do_sample:
            probs = F.softmax(scores, dim=-1)
            next_tokens = torch.multinomial(probs, num_samples=1, generator=options.generator).squeeze(1)
        else:
            next_tokens = torch.argmax(scores, dim=-1)
        if eos is not None:  # finished rows continue with padding
            next_tokens = torch.where(unfinished, next_tokens, options.pad_token_id)
        tokens[:, cur] = next_tokens
        cur += 1
        if streamer is not None:
            streamer.put(next_tokens.cpu())
        if eos is not None:
            unfinished &= ~torch.isin(next_tokens, eos)
            if not bool(unfinished.any()):  # the step's one synchronisation
                break
    if streamer is not None:
        streamer.end()
    return tokens[:, :cur]


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tensor (B, beams, ...) rows picked per batch by index (B, k) -> (B, k, ...)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)


def beam_search(runner: Runner, prompt: torch.Tensor, options: GenerationOptions,
                processors: Processors) -> torch.Tensor:
    """Vectorised beam search (or beam sampling), transformers' `_beam_search` step for step."""
    B, L = prompt.shape
    K, device = options.num_beams, prompt.device
    max_length = L + options.max_new_tokens
    eos = _eos_tensor(options, device)
    keep = max(2, 1 + len(options.eos_token_ids)) * K  # candidates kept per step: enough to survive EOS
    top_beams = torch.arange(keep, device=device) < K  # (keep,): candidates that may finish a hypothesis
    pad = options.pad_token_id
    fill = (pad if pad else options.eos_token_ids[0]) if eos is not None else -1  # transformers' choice, 0 included
    early, penalty = options.early_stopping, options.length_penalty

    running = torch.full((B, K, max_length), fill, dtype=torch.long, device=device)
    running[:, :, :L] = prompt[:, None, :]
    finished = running.clone()  # best finished hypotheses, (B, K, max_length)
    running_scores = torch.zeros(B, K, device=device)
    running_scores[:, 1:] = NEG  # at first all beams are the same prompt: only beam 0 may extend
    finished_scores = torch.full((B, K), NEG, device=device)
    is_finished = torch.zeros(B, K, dtype=torch.bool, device=device)
    can_improve = torch.ones(B, 1, dtype=torch.bool, device=device)
    running_origin = torch.full((B, K, max_length - L), -1, dtype=torch.long, device=device)  # beam index per step
    finished_origin = running_origin.clone()
    offsets = torch.arange(B, device=device)[:, None] * K  # (B, 1): batch row -> flat row

    cur = L
    for step in range(options.max_new_tokens):
        flat = running.view(B * K, max_length)[:, :cur]  # (B*K, cur)
        if step == 0:
            logits = runner.logits(prompt, cur).repeat_interleave(K, dim=0)  # prompt fed once per batch row
            runner.expand(K)
        else:
            logits = runner.logits(flat, cur)
        log_probs = processors(flat, F.log_softmax(logits, dim=-1))  # (B*K, V)
        V = log_probs.shape[-1]
        log_probs = (log_probs.view(B, K, V) + running_scores[:, :, None]).view(B, K * V)

        if options.do_sample:
            picked = torch.multinomial(F.softmax(log_probs, dim=-1), keep, generator=options.generator)
            top_scores, order = torch.gather(log_probs, 1, picked).sort(dim=-1, descending=True)
            picked = picked.gather(-1, order)
        else:
            top_scores, picked = torch.topk(log_probs, k=keep)  # (B, keep)
        source = picked // V  # (B, keep): the beam each candidate extends
        cand = _gather(running, source)  # (B, keep, max_length)
        cand[:, :, cur] = picked % V
        cand_origin = _gather(running_origin, source)
        cand_origin[:, :, cur - L] = source + offsets

        # (B, keep): EOS or the length limit ends a candidate
        if eos is not None:
            hits = torch.isin(cand[:, :, cur], eos) | (cur + 1 >= max_length)
        else:
            hits = torch.full((B, keep), cur + 1 >= max_length, dtype=torch.bool, device=device)

        # running beams for the next step: the K best candidates that did not end
        cand_running = top_scores + hits.float() * NEG
        best = torch.topk(cand_running, k=K)[1]
        running, running_scores = _gather(cand, best), _gather(cand_running, best)
        running_origin = _gather(cand_origin, best)

        # finished hypotheses: candidates that ended among the top K, scored by length-normalised log-prob
        just_done = hits & top_beams[None, :]
        done_scores = top_scores / ((cur + 1 - L) ** penalty)
        full = is_finished.all(dim=-1, keepdim=True) & (early is True)
        done_scores = done_scores + full.float() * NEG + (~can_improve).float() * NEG + (~just_done).float() * NEG
        merged_scores = torch.cat((finished_scores, done_scores), dim=1)
        best = torch.topk(merged_scores, k=K)[1]
        finished = _gather(torch.cat((finished, cand), dim=1), best)
        finished_scores = _gather(merged_scores, best)
        finished_origin = _gather(torch.cat((finished_origin, cand_origin), dim=1), best)
        is_finished = _gather(torch.cat((is_finished, just_done), dim=1), best)

        runner.select(running_origin[:, :, cur - L].reshape(-1))  # caches follow the kept beams
        cur += 1

        # can a running beam still beat the worst finished one? (transformers' early-stop heuristic)
        best_length = (max_length - L) if (early == "never" and penalty > 0.0) else (cur - L)
        best_possible = running_scores[:, :1] / (best_length ** penalty)
        worst_done = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], NEG)
        can_improve = can_improve & (best_possible > worst_done).any(dim=-1, keepdim=True)
        go_on = can_improve.any() & ~(is_finished.all() & (early is True)) & ~hits.all()
        if not bool(go_on):  # the step's one synchronisation
            break

    R = options.num_return_sequences
    sequences = finished[:, :R].reshape(B * R, max_length)
    origin = finished_origin[:, :R].reshape(B * R, -1)
    generated = int((origin >= 0).sum(dim=1).max())
    return sequences[:, :L + generated]
