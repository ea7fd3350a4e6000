"""`triformers serve` end to end: the real `openai` client against servers this module starts on free loopback
ports (subprocesses, stopped by their pid with SIGTERM). Models are tiny and built here (serving_assets.py):
a GPT-2 with a ChatML template for chat and completions, a BERT for embeddings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from serving_assets import build_bert, build_gpt2

from conftest import ROOT, free_port
from triformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

openai = pytest.importorskip("openai")
try:  # the HTTP client the openai package itself uses (httpx2 in openai 3.x, httpx before)
    import httpx2 as httpx
except ImportError:
    httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

KEY = "test-key"


class Server:
    """A `triformers serve` subprocess; `ready()` waits for its /health."""

    def __init__(self, *flags: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output: str | None = None
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.process = subprocess.Popen([sys.executable, "-m", "triformers", "serve", "--port", str(self.port),
                                         "--threads", "1", *flags], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)

    def ready(self) -> Server:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{self.stop()}")
            time.sleep(0.2)

    def health(self) -> dict:
        return httpx.get(self.url + "/health").json()

    def client(self, **kwargs):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=kwargs.pop("api_key", KEY), max_retries=0, **kwargs)

    def stop(self) -> str:
        """SIGTERM by pid, then the log (which must hold no traceback)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        if self.output is None:
            self.output, _ = self.process.communicate(timeout=60)
        return self.output

    def stopped_cleanly(self) -> bool:
        """Exited after a graceful shutdown: uvicorn re-raises the SIGTERM it handled, so -15 is clean too."""
        return self.process.returncode in (0, -signal.SIGTERM) and "Traceback" not in self.output \
            and "Finished server process" in self.output


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return build_gpt2(root / "tiny-gpt2", positions=1024), build_bert(root / "tiny-bert")


@pytest.fixture(scope="module")
def servers(folders):
    """Both servers, started side by side: a roomy one, and one slot with a one-request queue."""
    gpt2, bert = folders
    both = (Server("--model", str(gpt2), "--embedding-model", str(bert), "--max-batch", "16", "--max-queue", "128",
                   "--api-key", KEY),
            Server("--model", str(gpt2), "--max-batch", "1", "--max-queue", "1", "--api-key", KEY))
    try:
        yield tuple(server.ready() for server in both)
    finally:
        for server in both:
            server.stop()


@pytest.fixture(scope="module")
def server(servers):
    yield servers[0]
    servers[0].stop()
    assert servers[0].stopped_cleanly(), servers[0].output


@pytest.fixture(scope="module")
def small(servers):
    return servers[1]


@pytest.fixture(scope="module")
def offline(folders):
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folders[0]), AutoTokenizer.from_pretrained(folders[0])

    def reply(messages=None, prompt=None, max_tokens=16):
        ids = (tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"] if messages
               else tokenizer(prompt)["input_ids"])
        out = model.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id)
        return tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True)
    return reply


def chat(i: int) -> list[dict]:
    return [{"role": "system", "content": "You are terse."}, {"role": "user", "content": f"Count to {i}, please."}]


def test_models_health_and_a_greedy_chat_completion_equal_to_generate(server, offline):
    client = server.client()
    assert [m.id for m in client.models.list().data] == ["tiny-gpt2", "tiny-bert"]
    assert server.health()["status"] == "ok"
    out = client.chat.completions.create(model="tiny-gpt2", messages=chat(3), max_tokens=12, temperature=0)
    choice = out.choices[0]
    assert out.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.message.content == offline(chat(3), max_tokens=12)
    assert choice.finish_reason in ("stop", "length")
    usage = out.usage
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streaming_chat_sends_chunks_usage_and_done(server, offline):
    client = server.client()
    stream = client.chat.completions.create(model="tiny-gpt2", messages=chat(5), max_completion_tokens=10,
                                            temperature=0, stream=True, stream_options={"include_usage": True},
                                            logprobs=True, top_logprobs=2)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == offline(chat(5), max_tokens=10)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    entries = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert entries and all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in entries)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(entries)


def test_completions_n_stop_logprobs_and_seeded_sampling(server, offline):
    client = server.client()
    out = client.completions.create(model="tiny-gpt2", prompt=["the quick", "a lazy dog"], max_tokens=8,
                                    temperature=0, logprobs=2)
    assert [c.index for c in out.choices] == [0, 1]
    assert out.choices[1].text == offline(prompt="a lazy dog", max_tokens=8)
    assert len(out.choices[0].logprobs.tokens) == len(out.choices[0].logprobs.token_logprobs) >= 1
    text = out.choices[0].text
    stop = text[2:4]
    cut = client.completions.create(model="tiny-gpt2", prompt="the quick", max_tokens=8, temperature=0, stop=stop)
    assert cut.choices[0].text == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"
    sampled = [client.chat.completions.create(model="tiny-gpt2", messages=chat(2), max_tokens=16, n=2, seed=11,
                                              temperature=1.0, top_p=0.95) for _ in range(2)]
    texts = [[c.message.content for c in s.choices] for s in sampled]
    assert texts[0] == texts[1] and len(texts[0]) == 2 and texts[0][0] != texts[0][1]


def test_embeddings_are_mean_pooled_normalised_and_match_offline(server, folders):
    client = server.client()
    out = client.embeddings.create(model="tiny-bert", input=["hello there", "a longer sentence about dicts"])
    assert [d.index for d in out.data] == [0, 1] and out.usage.prompt_tokens > 0
    model, tokenizer = AutoModel.from_pretrained(folders[1]), AutoTokenizer.from_pretrained(folders[1])
    for text, item in zip(["hello there", "a longer sentence about dicts"], out.data, strict=True):
        batch = tokenizer(text, return_tensors="pt")
        expected = torch.nn.functional.normalize(model(**batch).last_hidden_state[0].mean(0), dim=-1)
        torch.testing.assert_close(torch.tensor(item.embedding), expected, atol=1e-5, rtol=0)  # fp32 round trip
    floats = httpx.post(server.url + "/v1/embeddings", json={"model": "tiny-bert", "input": "hello there"},
                        headers={"authorization": f"Bearer {KEY}"}).json()
    assert floats["data"][0]["embedding"] == pytest.approx(out.data[0].embedding, abs=1e-6)


def test_64_concurrent_streams_finish_greedy_ones_equal_generate_and_the_cache_empties(server, offline):
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)

    async def one(i: int):
        greedy = i % 2 == 0
        settings = dict(temperature=0) if greedy else dict(temperature=0.9, top_p=0.8, seed=i, presence_penalty=0.5)
        stream = await client.chat.completions.create(model="tiny-gpt2", messages=chat(i), max_tokens=4 + i % 29,
                                                      stream=True, **settings)
        text, finish = "", None
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        return i, greedy, text, finish

    async def all_of_them():
        return await asyncio.gather(*(one(i) for i in range(64)))
    results = asyncio.run(all_of_them())
    assert all(finish in ("stop", "length") for _, _, _, finish in results)
    for i, greedy, text, _ in results:
        if greedy:
            assert text == offline(chat(i), max_tokens=4 + i % 29), i
    health = server.health()
    assert health["running"] == 0 and health["waiting"] == 0 and health["free_slots"] == health["slots"]


def test_clients_that_disconnect_mid_stream_free_their_slots(server):
    before = server.health()["steps"]
    body = {"model": "tiny-gpt2", "messages": chat(1), "max_tokens": 900, "temperature": 0, "stream": True}
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {KEY}"}) as http:
        for _ in range(6):
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                lines = response.iter_lines()
                assert next(lines).startswith("data: ")
        for _ in range(2):  # a plain request whose client gives up
            with pytest.raises(httpx.TimeoutException):
                http.post("/v1/chat/completions", json={**body, "stream": False}, timeout=0.3)
        for _ in range(400):
            health = server.health()
            if health["running"] == 0:
                break
            time.sleep(0.01)
    assert health["running"] == 0 and health["waiting"] == 0
    assert health["steps"] - before < 800  # eight requests of 900 tokens did not run to their end


def test_bad_requests_get_clear_errors_while_others_are_served(server):
    url = server.url + "/v1/chat/completions"
    good = {"model": "tiny-gpt2", "messages": chat(1), "max_tokens": 40, "temperature": 0, "stream": True}
    with httpx.Client(headers={"authorization": f"Bearer {KEY}"}) as http, \
            http.stream("POST", url, json=good) as running:
        cases = [
            (dict(content=b'{"model": "tiny-gpt2", "messages": ['), 400, "invalid_json"),
            (dict(json={**good, "stream": False, "temperature": "hot"}), 400, "invalid_type"),
            (dict(json={**good, "stream": False, "max_tokens": True}), 400, "invalid_type"),
            (dict(json={**good, "stream": False, "colour": "blue"}), 400, "unknown_parameter"),
            (dict(json={**good, "stream": False, "max_tokens": 10**9}), 400, "context_length_exceeded"),
            (dict(json={**good, "messages": [{"role": "user", "content": "dict " * 1200}]}), 400,
             "context_length_exceeded"),
            (dict(json={**good, "response_format": {"type": "json_object"}}), 400, "unsupported_parameter"),
            (dict(json={**good, "n": 99}), 400, "invalid_value"),
            (dict(json={**good, "model": "gpt-4o"}), 404, "model_not_found"),
            (dict(json={**good, "messages": [{"role": "wizard", "content": "x"}]}), 400, "invalid_value"),
            (dict(content=b"x" * (2 << 20)), 413, "request_too_large"),
        ]
        for kwargs, status, code in cases:
            response = http.post(url, **kwargs)
            assert response.status_code == status, (kwargs, response.text)
            error = response.json()["error"]
            assert error["code"] == code and error["message"] and "Traceback" not in response.text
        lines = [line for line in running.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and json.loads(lines[-2][6:])["choices"][0]["finish_reason"] == "length"


def test_the_api_key_is_required_when_set(small):
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
        small.client(api_key="wrong").models.list()
    assert httpx.get(small.url + "/v1/models").status_code == 401
    assert small.client().models.list().data[0].id == "tiny-gpt2"


def test_a_full_queue_answers_429_and_the_others_finish(small):
    client = openai.AsyncOpenAI(base_url=small.url + "/v1", api_key=KEY, max_retries=0)

    async def one(i: int):
        try:
            out = await client.completions.create(model="tiny-gpt2", prompt=f"number {i}", max_tokens=300,
                                                  temperature=0)
            return out.choices[0].finish_reason
        except openai.RateLimitError as err:
            assert err.status_code == 429 and "queue is full" in str(err)
            return 429

    async def all_of_them():
        return await asyncio.gather(*(one(i) for i in range(12)))
    results = asyncio.run(all_of_them())
    assert 429 in results and "length" in results and set(results) <= {429, "length", "stop"}


def test_sigterm_lets_a_running_stream_finish_and_exits_cleanly(small):
    body = {"model": "tiny-gpt2", "prompt": "the", "max_tokens": 200, "temperature": 0, "stream": True}
    with httpx.Client(headers={"authorization": f"Bearer {KEY}"}) as http, \
            http.stream("POST", small.url + "/v1/completions", json=body) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        os.kill(small.process.pid, signal.SIGTERM)
        rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]"
    small.stop()
    assert small.stopped_cleanly(), small.output
