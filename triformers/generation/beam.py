"""Beam search and beam sampling, vectorised, step for step as transformers v5.24's `_beam_search`.

Processors apply to log-probabilities; each step keeps `max(2, 1 + #eos) * num_beams` candidates,
divides a finished hypothesis' score by `generated_length ** length_penalty`, and stops by the same
`early_stopping` rules (True: when `num_beams` hypotheses are done; False: when no running beam can beat
the worst kept one at the current length; "never": at the best possible length).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .options import GenerationOptions, eos_tensor
from .outputs import recorder_for
from .prepare import Stopping
from .processors import LogitsProcessorList, no_token_error
from .runner import Runner

NEG = -1.0e9  # transformers' "impossible" score in beam search (finite, so sums stay comparable)
MAX_NORM = 1e30  # the length normaliser, length ** length_penalty, is kept in [1/MAX_NORM, MAX_NORM]


def _length_norm(length: int, penalty: float) -> float:
    """`length ** penalty` as transformers divides scores by it, kept finite and non-zero: an extreme
    penalty (1e308) would overflow Python's float or turn every score into 0, -inf or NaN."""
    try:
        norm = float(length) ** penalty
    except OverflowError:
        norm = MAX_NORM
    return min(max(norm, 1 / MAX_NORM), MAX_NORM)


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tensor (B, beams, ...) rows picked per batch by index (B, k) -> (B, k, ...)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)


def beam_search(runner: Runner, prompt: torch.Tensor, options: GenerationOptions, processors: LogitsProcessorList,
                stopping: Stopping) -> tuple[torch.Tensor, dict]:
    """Vectorised beam search (or beam sampling), transformers' `_beam_search` step for step.

    Returns the sequences and the output fields (sequences_scores, scores, logits, beam_indices)."""
    B, L = prompt.shape
    K, device = options.num_beams, prompt.device
    max_length = L + options.max_new_tokens
    eos = eos_tensor(stopping.eos_token_ids, device)
    criteria = stopping.criteria
    recorder = recorder_for(options)
    keep = max(2, 1 + len(stopping.eos_token_ids)) * K  # candidates kept per step: enough to survive EOS
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
    failed = torch.zeros((), dtype=torch.bool, device=device)  # NaN scores somewhere
    for step in range(options.max_new_tokens):
        flat = running.view(B * K, max_length)[:, :cur]  # (B*K, cur)
        if step == 0:
            logits = runner.logits(prompt, cur).repeat_interleave(K, dim=0)  # prompt fed once per batch row
            runner.expand(K)
        else:
            logits = runner.logits(flat, cur)
        log_probs = processors(flat, F.log_softmax(logits, dim=-1))  # (B*K, V)
        if recorder is not None:
            recorder.add(log_probs, logits)
        V = log_probs.shape[-1]
        log_probs = (log_probs.view(B, K, V) + running_scores[:, :, None]).view(B, K * V)
        bad = log_probs.isnan().any(dim=-1)  # (B,): NaN logits (a banned token is -inf, which beams survive)
        failed |= bad.any()

        if options.do_sample:
            probs = F.softmax(log_probs, dim=-1)
            probs = probs.masked_fill(probs.isnan().any(dim=-1, keepdim=True), 1.0)  # stand-in, refused below
            picked = torch.multinomial(probs, keep, generator=options.generator)
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
        if criteria:  # the other criteria judge each candidate as transformers does
            so_far = recorder.scores_so_far() if recorder is not None else None
            hits = hits | criteria(cand.view(B * keep, max_length)[:, :cur + 1], so_far).view(B, keep)

        # running beams for the next step: the K best candidates that did not end
        cand_running = top_scores + hits.float() * NEG
        best = torch.topk(cand_running, k=K)[1]
        running, running_scores = _gather(cand, best), _gather(cand_running, best)
        running_origin = _gather(cand_origin, best)

        # finished hypotheses: candidates that ended among the top K, scored by length-normalised log-prob
        just_done = hits & top_beams[None, :]
        done_scores = top_scores / _length_norm(cur + 1 - L, penalty)
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
        best_possible = running_scores[:, :1] / _length_norm(best_length, penalty)
        worst_done = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], NEG)
        can_improve = can_improve & (best_possible > worst_done).any(dim=-1, keepdim=True)
        go_on = can_improve.any() & ~(is_finished.all() & (early is True)) & ~hits.all()
        go_on, broken = torch.stack((go_on, failed)).tolist()  # the step's one synchronisation
        if broken:
            raise no_token_error(options, step)
        if not go_on:
            break

    R = options.num_return_sequences
    sequences = finished[:, :R].reshape(B * R, max_length)
    origin = finished_origin[:, :R].reshape(B * R, -1)
    generated = int((origin >= 0).sum(dim=1).max())
    extra = {}
    if recorder is not None:
        extra = {**recorder.fields(), "beam_indices": origin[:, :generated].to(torch.int32),  # int32, as there
                 "sequences_scores": finished_scores[:, :R].reshape(-1) if options.output_scores else None}
    return sequences[:, :L + generated], extra
