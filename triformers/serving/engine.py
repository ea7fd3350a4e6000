"""The continuous-batching engine: one thread that owns the model, its slot cache and the running batch.

Each iteration of its loop (Orca's iteration-level scheduling, Yu et al. 2022; vLLM's and TGI's routers):
1. drop sequences whose client went away or whose request ran past its deadline (their slots free at once);
2. admit waiting requests while slots are free, up to a budget of prompt tokens: their prompts are computed
   in one right-padded batch into their slots (a request with n choices fills n slots from one prompt) and
   give the first tokens, so new requests start while others decode;
3. one decoding step over every running sequence (`slots.py`), each at its own position, with its own
   sampling settings (`sampling.py`) and its own stopping: end-of-sequence tokens, stop strings,
   `max_tokens`, the context length; a finished sequence leaves and its slot is reused at once.
Results go back to each request as a list of `Event`s per iteration through the request's `deliver`
callback (the HTTP app hands them to its event loop). The engine never raises into the app: a failure is
an error event for the requests it touched, and the loop goes on.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .sampling import Choice, RowSettings, choose
from .slots import SlotCache, SlotPlan

log = logging.getLogger("triformers.serving")


class QueueFull(Exception):
    """The waiting queue holds `max_queue` requests already."""


class ShuttingDown(Exception):
    """The engine is stopping and takes no new requests."""


@dataclass
class Event:
    """What happened to one choice of a request in one iteration (or, with index None, to the request).

    text: new text for the client; token: the sampled token (with its log-probabilities when asked for),
    None for the held-back flush at the end; finish_reason: "stop" / "length" when the choice ended;
    error: a message for the client when the request failed; usage: (prompt, completion) tokens, on the
    request's last event.
    """

    index: int | None
    text: str = ""
    token: Choice | None = None
    finish_reason: str | None = None
    error: str | None = None
    code: str | None = None  # with an error: "timeout", "shutdown" or "internal"
    usage: tuple[int, int] | None = None


@dataclass
class Request:
    prompt: list[int]
    settings: RowSettings
    max_tokens: int
    deliver: Callable[[list[Event]], None]  # called from the engine thread
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    timeout: float | None = None  # seconds from submission
    cancelled: bool = False  # set by the app when the client disconnects
    submitted: float = field(default_factory=time.monotonic)
    finished_choices: int = 0
    completion_tokens: int = 0
    done: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class Sequence:
    """One choice of a request in its slot: its tokens, its position in the cache and its text so far."""

    def __init__(self, request: Request, index: int, prompt_length: int):
        self.request, self.index = request, index
        self.position = prompt_length  # where the next fed token goes
        self.ids: list[int] = []
        self.prefix_offset = self.read_offset = 0  # incremental detokenisation (TGI's decode_token)
        self.sent, self.pending = "", ""
        self.generator = None
        if request.seed is not None:
            self.generator = torch.Generator().manual_seed(request.seed + index)


class Engine:
    """Serves generation requests for one decoder model; `submit` from any thread, `close` to stop."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 32, max_queue: int = 256,
                 max_context: int | None = None, prefill_budget: int = 1024, eos_token_ids: list[int] | None = None):
        if model.family != "decoder":
            raise ValueError(f"the generation engine serves decoder-only models, got a {model.family} model")
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_queue, self.prefill_budget = max_batch, max_queue, prefill_budget
        limit = model.max_length()
        self.context = min(limit, max_context) if limit and max_context else (limit or max_context or 2048)
        self.eos = set(eos_token_ids or [])
        stack = model.decoder
        self.cache = SlotCache([block.attn for block in stack.layers], max_batch, self.context, model.dtype,
                               model.device, capacity=min(self.context, 256))
        self.base_plan = stack.plan(1, self.context, model.dtype, model.device)  # key part only (ALiBi or none)
        self.counts = torch.zeros(max_batch, model.config.vocab_size, device=model.device)
        self.rows: list[Sequence] = []  # running sequences, packed: rows[i] lives in slot i
        self.waiting: collections.deque[Request] = collections.deque()
        self.condition = threading.Condition()
        self.stopping = False
        self.steps = 0
        self.outbox: dict[int, tuple[Request, list[Event]]] = {}
        self.thread = threading.Thread(target=self._loop, name="triformers-engine", daemon=True)
        self.thread.start()

    # -- the app's side ------------------------------------------------------------------------------
    def submit(self, request: Request) -> None:
        with self.condition:
            if self.stopping:
                raise ShuttingDown("the server is shutting down")
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} requests waiting); retry later")
            self.waiting.append(request)
            self.condition.notify()

    def stats(self) -> dict[str, int]:
        with self.condition:
            return {"running": len(self.rows), "waiting": len(self.waiting), "slots": self.max_batch,
                    "free_slots": self.max_batch - len(self.rows), "context": self.context, "steps": self.steps}

    def close(self, timeout: float = 10.0) -> None:
        """Stop: waiting and running requests get a clean error; the thread ends."""
        with self.condition:
            self.stopping = True
            self.condition.notify()
        self.thread.join(timeout)

    # -- the loop ------------------------------------------------------------------------------------
    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self.condition:
                while not self.stopping and not self.waiting and not self.rows:
                    self.condition.wait(timeout=1.0)
                if self.stopping:
                    break
            try:
                with torch.inference_mode():
                    self._iterate()
            except Exception as err:  # a bug, not a client's fault: fail what was running, keep serving
                log.exception("engine step failed")
                for sequence in list(self.rows):
                    self._fail(sequence.request, f"internal error in the engine ({type(err).__name__})", "internal")
            self._flush()
        with self.condition:
            pending = list(self.waiting) + [s.request for s in self.rows]
            self.waiting.clear()
        for request in pending:
            self._fail(request, "the server is shutting down", "shutdown")
        self._flush()

    def _iterate(self) -> None:
        now = time.monotonic()
        for sequence in list(self.rows):
            request = sequence.request
            if request.cancelled:
                self._release(request)
            elif request.timeout is not None and now - request.submitted > request.timeout:
                self._fail(request, f"the request timed out after {request.timeout:g} s", "timeout")
        self._admit(now)
        if self.rows:
            self._step()

    def _admit(self, now: float) -> None:
        """Take waiting requests while slots are free, up to `prefill_budget` prompt tokens (a longer prompt
        still goes in alone), and compute their prompts in one batch."""
        budget, taken, slots = self.prefill_budget, [], self.max_batch - len(self.rows)
        while True:
            with self.condition:
                if not self.waiting or self.waiting[0].n > slots:
                    break
                request = self.waiting[0]
                if budget < len(request.prompt) and taken:
                    break
                self.waiting.popleft()
            if request.cancelled:
                continue
            if request.timeout is not None and now - request.submitted > request.timeout:
                self._fail(request, f"the request timed out after {request.timeout:g} s in the queue", "timeout")
                continue
            budget, slots = budget - len(request.prompt), slots - request.n
            taken.append(request)
        if not taken:
            return
        try:
            self._prefill(taken)
        except Exception as err:
            log.exception("prompt pass failed")
            for request in taken:
                self._fail(request, f"the prompt could not be processed ({type(err).__name__})", "internal")

    def _prefill(self, requests: list[Request]) -> None:
        """The prompts of `requests`, right-padded into one batch: causal attention keeps every real token from
        the pads after it, so each row computes what its prompt alone computes (pad keys land in the row's slot
        past its length, where decoding masks and then overwrites them). Row k goes to slot first + k; the
        extra choices of a request (n > 1) get copies of its row after those."""
        first, lengths = len(self.rows), [len(r.prompt) for r in requests]
        B, T = len(requests), max(lengths)
        ids = torch.tensor([r.prompt + [0] * (T - len(r.prompt)) for r in requests], device=self.model.device)
        self.model.check_inputs(ids, None)
        view = self.cache.prompt_view(first, B, T)
        model = self.model
        hidden = model.decoder(model.embed_tokens(ids), input_ids=ids, cache=view)  # (B, T, H)
        last = hidden[torch.arange(B, device=ids.device), torch.tensor(lengths, device=ids.device) - 1]  # (B, H)
        logits = model.lm_logits(last[:, None]).float()[:, 0]  # (B, V)
        sequences = [Sequence(r, 0, n) for r, n in zip(requests, lengths, strict=True)]
        source = list(range(B))  # the logits row of each new sequence
        for k, request in enumerate(requests):
            for i in range(1, request.n):
                self.cache.copy_row(first + k, first + len(sequences), lengths[k])
                sequences.append(Sequence(request, i, lengths[k]))
                source.append(k)
        count = len(sequences)
        self.counts[first:first + count].zero_()
        self.rows.extend(sequences)
        choices = choose(logits.index_select(0, torch.tensor(source, device=logits.device)),
                         self.counts[first:first + count], [s.request.settings for s in sequences],
                         [s.generator for s in sequences])
        self._accept(sequences, choices, range(first, first + count))

    def _step(self) -> None:
        rows = self.rows
        tokens = torch.tensor([[s.ids[-1]] for s in rows], device=self.model.device)  # (A, 1)
        positions = torch.tensor([s.position for s in rows], device=self.model.device)  # (A,)
        low, high = min(s.position for s in rows), max(s.position for s in rows)
        self.cache.reserve(high + 1)
        self.cache.active, self.cache.read = len(rows), high + 1
        stack = self.model.decoder
        rotary = (stack.rotary.tables(positions[:, None], self.model.dtype, 0)  # {kind: (A, 1, 1, rot)}
                  if stack.rotary is not None else None)
        offset = self.model.config.position_offset if stack.positions is not None else 0  # OPT's table starts at 2
        plan = SlotPlan(self.base_plan, positions, high + 1, uniform=low == high, rotary=rotary, offset=offset)
        logits = self.model(tokens, cache=self.cache, plan=plan, cache_position=positions, logits_to_keep=1,
                            check=False).logits[:, -1].float()  # (A, V)
        for s in rows:
            s.position += 1
        self.steps += 1
        choices = choose(logits, self.counts[:len(rows)], [s.request.settings for s in rows],
                         [s.generator for s in rows])
        self._accept(list(rows), choices, range(len(rows)))

    # -- one new token per sequence ------------------------------------------------------------------
    def _accept(self, sequences: list[Sequence], choices: list[Choice], rows: range) -> None:
        """Each sequence's new token; `rows`: their slots (before any of them leaves)."""
        rows = torch.tensor(list(rows))
        self.counts[rows, torch.tensor([c.token for c in choices])] += 1  # for the penalties
        for sequence, choice in zip(sequences, choices, strict=True):
            request = sequence.request
            request.completion_tokens += 1
            if choice.token in self.eos:
                self._finish(sequence, "stop", choice)
                continue
            sequence.ids.append(choice.token)
            text, stopped = self._text(sequence)
            if stopped:
                self._post(request, Event(sequence.index, text, choice))
                self._finish(sequence, "stop")
            elif len(sequence.ids) >= request.max_tokens or sequence.position + 1 >= self.context:
                self._post(request, Event(sequence.index, text, choice))
                self._finish(sequence, "length")
            else:
                self._post(request, Event(sequence.index, text, choice))

    def _row(self, sequence: Sequence) -> int:
        for i in range(len(self.rows) - 1, -1, -1):
            if self.rows[i] is sequence:
                return i
        raise LookupError("sequence not running")

    def _text(self, s: Sequence) -> tuple[str, bool]:
        """(text to send now, whether a stop string ended the choice). Text that could be the start of a stop
        string, or an incomplete UTF-8 character, is held back until it is decided."""
        decode = self.tokenizer.decode
        before = decode(s.ids[s.prefix_offset:s.read_offset], skip_special_tokens=True)
        after = decode(s.ids[s.prefix_offset:], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            s.pending += after[len(before):]
            s.prefix_offset, s.read_offset = s.read_offset, len(s.ids)
        stops = s.request.stop
        if not stops:
            text, s.pending = s.pending, ""
            s.sent += text
            return text, False
        full = s.sent + s.pending
        start = max(0, len(s.sent) - max(len(x) for x in stops) + 1)
        hits = [i for i in (full.find(x, start) for x in stops) if i >= 0]
        if hits:
            text = full[len(s.sent):min(hits)]
            s.sent, s.pending = s.sent + text, ""
            return text, True
        keep = max((k for x in stops for k in range(1, min(len(x), len(full)) + 1) if full.endswith(x[:k])), default=0)
        keep = min(keep, len(s.pending))
        text = s.pending[:len(s.pending) - keep]
        s.sent, s.pending = s.sent + text, s.pending[len(s.pending) - keep:]
        return text, False

    def _finish(self, sequence: Sequence, reason: str, choice: Choice | None = None) -> None:
        request = sequence.request
        if reason != "stop" or choice is not None:  # not cut by a stop string: the held-back text goes out too
            decode = self.tokenizer.decode
            rest = decode(sequence.ids[sequence.prefix_offset:], skip_special_tokens=True)
            sequence.pending += rest[len(decode(sequence.ids[sequence.prefix_offset:sequence.read_offset],
                                                skip_special_tokens=True)):]
        self._post(request, Event(sequence.index, sequence.pending, choice, finish_reason=reason))
        self._remove(sequence)
        request.finished_choices += 1
        if request.finished_choices == request.n:
            request.done = True
            self._post(request, Event(None, usage=(len(request.prompt), request.completion_tokens)))

    # -- slots ---------------------------------------------------------------------------------------
    def _remove(self, sequence: Sequence) -> None:
        """Free a sequence's slot: the last running row moves into it, so rows stay packed."""
        row, last = self._row(sequence), len(self.rows) - 1
        if row != last:
            moved = self.rows[last]
            self.cache.move(last, row, moved.position)
            self.counts[row] = self.counts[last]
            self.rows[row] = moved
        self.rows.pop()
        self.cache.active = len(self.rows)

    def _release(self, request: Request) -> None:
        for sequence in [s for s in self.rows if s.request is request]:
            self._remove(sequence)
        request.done = True

    def _fail(self, request: Request, message: str, code: str) -> None:
        if request.done:
            return
        self._release(request)
        self._post(request, Event(None, error=message, code=code))

    def _post(self, request: Request, event: Event) -> None:
        self.outbox.setdefault(id(request), (request, []))[1].append(event)

    def _flush(self) -> None:
        outbox, self.outbox = self.outbox, {}
        for request, events in outbox.values():
            if request.cancelled:
                continue
            try:
                request.deliver(events)
            except Exception:  # the app's loop is gone (shutdown): nothing to tell
                log.debug("could not deliver events", exc_info=True)

