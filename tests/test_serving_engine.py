"""The continuous-batching engine in process (no HTTP): greedy replies equal offline `generate` whatever else
runs beside them (GPT-2's learned positions and BLOOM's ALiBi), seeded sampling repeats, stop strings,
cancellation frees a slot at the next step, a full queue refuses, and the cache is empty afterwards."""

from __future__ import annotations

import threading

import pytest
import torch
from serving_assets import build_gpt2, build_tokenizer

from triformers import AutoModelForCausalLM, AutoTokenizer
from triformers.serving import Engine, QueueFull, Request, RowSettings
from triformers.serving.sampling import choose

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    folder = build_gpt2(tmp_path_factory.mktemp("serving") / "gpt2", positions=256)
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def bloom(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serving") / "bloom"
    build_tokenizer(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BloomConfig(vocab_size=len(tokenizer), hidden_size=32, n_layer=2, n_head=4,
                                      initializer_range=0.3, eos_token_id=tokenizer.eos_token_id)
    transformers.BloomForCausalLM(config).eval().save_pretrained(folder)
    return AutoModelForCausalLM.from_pretrained(folder), tokenizer


class Collector:
    """A request's events, and a way to wait for its end."""

    def __init__(self):
        self.events, self.done = [], threading.Event()

    def __call__(self, events):
        self.events.extend(events)
        if any(e.index is None for e in events):
            self.done.set()

    def tokens(self, index=0):
        return [e.token.token for e in self.events if e.index == index and e.token is not None]

    def text(self, index=0):
        return "".join(e.text for e in self.events if e.index == index)

    def finish(self, index=0):
        return [e.finish_reason for e in self.events if e.index == index and e.finish_reason][0]


def run(engine, prompt, max_tokens, timeout=60, **kwargs):
    settings = RowSettings(**{k: kwargs.pop(k) for k in list(kwargs) if hasattr(RowSettings, k)})
    collector = Collector()
    request = Request(prompt=prompt, settings=settings, max_tokens=max_tokens, deliver=collector, **kwargs)
    engine.submit(request)
    return request, collector


def offline(model, prompt, max_tokens, eos):
    out = model.generate(torch.tensor([prompt]), max_new_tokens=max_tokens, do_sample=False, eos_token_id=eos)
    return out[0, len(prompt):].tolist()


def prompts(tokenizer, count):
    words = "the quick brown fox jumps over a lazy dog while json dumps an ordered dict".split()
    return [tokenizer(" ".join(words[i % 7:i % 7 + 2 + i % 9]))["input_ids"] for i in range(count)]


@pytest.mark.parametrize("which", ["gpt2", "bloom"])
def test_many_requests_of_different_settings_finish_and_greedy_ones_equal_generate(which, request):
    model, tokenizer = request.getfixturevalue(which)
    eos = tokenizer.eos_token_id
    engine = Engine(model, tokenizer, max_batch=16, eos_token_ids=[eos])
    try:
        jobs = []
        for i, prompt in enumerate(prompts(tokenizer, 64 if which == "gpt2" else 24)):
            greedy = i % 2 == 0
            settings = {} if greedy else dict(temperature=0.5 + (i % 3) / 2, top_p=[1.0, 0.9, 0.5][i % 3],
                                              presence_penalty=0.5 * (i % 2), frequency_penalty=0.3, seed=i)
            jobs.append((prompt, 3 + (i * 7) % 40, greedy, *run(engine, prompt, 3 + (i * 7) % 40,
                                                                temperature=0.0 if greedy else settings.pop(
                                                                    "temperature"), **settings)))
        for _, _, _, _, collector in jobs:
            assert collector.done.wait(60)
        for prompt, max_tokens, greedy, _, collector in jobs:
            assert collector.finish() in ("stop", "length")
            assert 1 <= len(collector.tokens()) <= max_tokens
            if greedy:
                assert collector.tokens() == offline(model, prompt, max_tokens, eos)
        stats = engine.stats()
        assert stats["running"] == 0 and stats["waiting"] == 0 and engine.cache.active == 0
    finally:
        engine.close()


def test_seeded_sampling_repeats_alone_or_in_a_batch_and_n_choices_differ(gpt2):
    model, tokenizer = gpt2
    engine = Engine(model, tokenizer, max_batch=8)
    try:
        prompt = prompts(tokenizer, 1)[0]
        _, alone = run(engine, prompt, 20, temperature=1.0, seed=7, n=2)
        assert alone.done.wait(30)
        crowd = [run(engine, p, 30, temperature=0.8, seed=i)[1] for i, p in enumerate(prompts(tokenizer, 5))]
        _, again = run(engine, prompt, 20, temperature=1.0, seed=7, n=2)
        assert again.done.wait(30) and all(c.done.wait(30) for c in crowd)
        assert again.tokens(0) == alone.tokens(0) and again.tokens(1) == alone.tokens(1)
        assert alone.tokens(0) != alone.tokens(1)  # choice i draws from seed + i
        usage = [e.usage for e in again.events if e.usage][0]
        assert usage == (len(prompt), len(again.tokens(0)) + len(again.tokens(1)))
    finally:
        engine.close()


def test_a_stop_string_ends_the_choice_before_it(gpt2):
    model, tokenizer = gpt2
    engine = Engine(model, tokenizer, max_batch=4)
    try:
        prompt = prompts(tokenizer, 3)[2]
        _, full = run(engine, prompt, 30, temperature=0.0)
        assert full.done.wait(30)
        text = full.text()
        stop = text[len(text) // 2:len(text) // 2 + 3]
        _, cut = run(engine, prompt, 30, temperature=0.0, stop=[stop, "never-there"])
        assert cut.done.wait(30)
        assert cut.text() == text[:text.index(stop)] and cut.finish() == "stop"
        assert full.text() == tokenizer.decode(full.tokens(), skip_special_tokens=True)
    finally:
        engine.close()


def test_a_cancelled_request_frees_its_slot_at_the_next_step(gpt2):
    model, tokenizer = gpt2
    engine = Engine(model, tokenizer, max_batch=2)
    try:
        request, collector = run(engine, prompts(tokenizer, 1)[0], 240, temperature=0.0)
        while len(collector.events) < 3:
            threading.Event().wait(0.001)
        request.cancel()
        for _ in range(2000):
            if engine.stats()["running"] == 0:
                break
            threading.Event().wait(0.005)
        assert engine.stats()["running"] == 0
        assert len(collector.events) < 200 and not collector.done.is_set()
        _, after = run(engine, prompts(tokenizer, 2)[1], 5, temperature=0.0)  # the slot serves the next one
        assert after.done.wait(30) and len(after.tokens()) >= 1
    finally:
        engine.close()


def test_a_full_queue_refuses_and_closing_fails_what_waits(gpt2):
    model, tokenizer = gpt2
    engine = Engine(model, tokenizer, max_batch=1, max_queue=1)
    engine.close()  # the loop is stopped: nothing leaves the queue
    engine.stopping = False
    run(engine, [5, 6], 4)
    with pytest.raises(QueueFull, match="queue is full"):
        run(engine, [5, 6], 4)


def test_choose_greedy_top_p_and_logprobs():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    counts = torch.zeros(2, 4)
    settings = [RowSettings(temperature=1.5, top_p=1e-9, top_logprobs=2), RowSettings(temperature=0.0)]
    choices = choose(logits, counts, settings, [torch.Generator().manual_seed(0), None])
    assert [c.token for c in choices] == [1, 0]  # a vanishing nucleus keeps only the likeliest token
    expected = torch.log_softmax(logits[0], -1)
    assert choices[0].logprob == pytest.approx(float(expected[1]))
    assert [t for t, _ in choices[0].top] == [1, 3] and choices[1].logprob is None
    counts[1, 0] = 3  # frequency 2 x 3 = 6 takes token 0 below the others
    settings = [RowSettings(temperature=0.0), RowSettings(temperature=0.0, frequency_penalty=2.0)]
    penalised = choose(logits, counts, settings, [None, None])
    assert penalised[1].token != 0


def test_serve_options_build_an_int8_engine_whose_greedy_replies_equal_its_generate(tmp_path):
    from triformers.serving import ServeOptions
    from triformers.serving.server import build

    folder = build_gpt2(tmp_path / "gpt2")
    served = build(ServeOptions(model=str(folder), quantize="int8", max_batch=4))
    try:
        assert served.model_name == "gpt2" and served.embedder is None
        model, tokenizer = served.engine.model, served.engine.tokenizer
        prompt = prompts(tokenizer, 4)[3]
        _, collector = run(served.engine, prompt, 12, temperature=0.0)
        assert collector.done.wait(30)
        assert collector.tokens() == offline(model, prompt, 12, tokenizer.eos_token_id)
    finally:
        served.engine.close()


class IdText:
    """A tokenizer stand-in for random-vocabulary checkpoints: each id decodes to its own word."""

    def decode(self, ids, skip_special_tokens=False):
        return "".join(f" {i}" for i in ids)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral", "gemma3_text", "gpt_neox", "opt"])
def test_todays_decoders_serve_greedy_replies_equal_to_generate(kind, tmp_path):
    """Grouped-query caches, rotary positions, sliding windows and OPT's counted positions in the engine's
    slots: each greedy reply of a batch of concurrent requests equals offline `generate` of its prompt."""
    from decoder_assets import VOCAB, build

    build(kind, "lm", tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    eos = model.config.eos_token_id
    generator = torch.Generator().manual_seed(0)
    try:
        engine = Engine(model, IdText(), max_batch=4, eos_token_ids=[eos])
    except (ValueError, NotImplementedError) as err:  # a model the slot plan refuses must say so by name
        assert kind in str(err) or "window" in str(err) or "position" in str(err)
        pytest.skip(f"the engine refuses {kind}: {err}")
    try:
        jobs = []
        for i in range(6):
            prompt = torch.randint(3, VOCAB, (3 + 2 * i,), generator=generator).tolist()
            jobs.append((prompt, *run(engine, prompt, 10, temperature=0.0)))
        for prompt, _, collector in jobs:
            assert collector.done.wait(60)
            assert collector.tokens() == offline(model, prompt, 10, eos)
        assert engine.cache.active == 0
    finally:
        engine.close()
