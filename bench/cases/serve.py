"""`triformers serve` under load (issue 18, item 5): streaming clients against the server, against sequential
`generate` on the same requests, and against `transformers serve --continuous-batching` where it runs here.

Each model is a random checkpoint (transformers builds and saves it) with a word-level tokenizer that covers
its whole vocabulary, so every generated id decodes. SmolLM2-135M's shape is built in the llama dialect when
triformers has it, else as a GPT-2 of the same width, depth, heads and vocabulary. Each server runs in its
own process (2 threads) and is warmed up; then for 1/8/32/64 concurrent clients each client streams
`PER_CLIENT` greedy completions back to back (prompts of 16-48 tokens, `max_tokens` fixed per model), so
requests join and leave the running batch. Figures per level: completion tokens per second of wall time,
time to first token (TTFT) p50/p99, and per-token latency (time between a request's first and last token
over its tokens after the first) p50/p99. Sequential `generate` runs the same requests one at a time in the
bench process (no HTTP), which is the baseline of the speed-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..harness import Row, Settings, skipped_row
from .common import log, temporary_folder

LEVELS = (1, 8, 32, 64)
PER_CLIENT = 2
SHAPES = {  # name -> (GPT-2 keyword arguments, Llama keyword arguments or None, max_tokens)
    "tiny": (dict(n_layer=4, n_embd=256, n_head=4, vocab_size=8192, n_positions=512), None, 64),
    "smollm2-135m-shaped": (dict(n_layer=30, n_embd=576, n_head=9, n_inner=1536, vocab_size=49152,
                                 n_positions=2048),
                            dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                 intermediate_size=1536, vocab_size=49152, max_position_embeddings=2048,
                                 rope_theta=100000.0, tie_word_embeddings=True), 32),
}


def build(name: str, folder: Path) -> str:
    """A random checkpoint of `name` with a tokenizer in `folder`; returns the dialect it was built in."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    from triformers.dialects import DIALECTS

    gpt2, llama, _ = SHAPES[name]
    torch.manual_seed(0)
    if llama is not None and "llama" in DIALECTS:
        config, dialect = transformers.LlamaConfig(bos_token_id=0, eos_token_id=0, **llama), "llama"
    else:
        config, dialect = transformers.GPT2Config(bos_token_id=0, eos_token_id=0, **gpt2), "gpt2"
    transformers.AutoModelForCausalLM.from_config(config).eval().save_pretrained(folder)
    vocab = {f"w{i}": i for i in range(config.vocab_size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="w1"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                              "eos_token": "w0", "model_max_length": 2048}))
    return dialect


def prompts(count: int, vocab: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(f"w{rng.randrange(2, vocab)}" for _ in range(rng.randrange(16, 49))) for _ in range(count)]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """A server subprocess (ours or transformers'), stopped by its pid."""

    def __init__(self, command: list[str], port: int, threads: int):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float = 300) -> None:
        import httpx2 as httpx
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stderr.read()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server did not start in time")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)


async def _one(client, url: str, body: dict[str, Any]) -> tuple[float, list[float], int]:
    """(send time, content chunk times, completion tokens) of one streamed completion."""
    sent, times, tokens = time.perf_counter(), [], 0
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if any(c.get("text") for c in chunk.get("choices", [])):
                times.append(time.perf_counter())
    return sent, times, tokens or len(times)


async def _load(url: str, model: str, texts: list[str], clients: int, max_tokens: int, ours: bool) -> dict[str, Any]:
    import httpx2 as httpx

    queue = list(texts)
    results = []

    async def client_loop(client) -> None:
        while queue:
            text = queue.pop()
            body = {"model": model, "prompt": text, "max_tokens": max_tokens, "stream": True}
            if ours:
                body.update(temperature=0, stream_options={"include_usage": True})
            results.append(await _one(client, url + "/v1/completions", body))

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall = time.perf_counter() - start
    ttft = [times[0] - sent for sent, times, _ in results if times]
    per_token = [(times[-1] - times[0]) / (tokens - 1) for _, times, tokens in results if len(times) > 1 and tokens > 1]
    total = sum(tokens for _, _, tokens in results)
    return {"tok_s": total / wall, "tokens": total, "wall": wall, "ttft": ttft, "per_token": per_token}


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _describe(figures: dict[str, Any]) -> str:
    ms = lambda v: f"{1000 * v:.0f} ms"  # noqa: E731
    return (f"TTFT p50 {ms(_pct(figures['ttft'], .5))} p99 {ms(_pct(figures['ttft'], .99))}, per-token p50 "
            f"{ms(_pct(figures['per_token'], .5))} p99 {ms(_pct(figures['per_token'], .99))}, "
            f"{figures['tokens']} tokens in {figures['wall']:.1f} s")


def _sequential(folder: Path, texts: list[str], max_tokens: int) -> float:
    """Tokens per second of `generate`, one request at a time, greedy (the same work as the served requests)."""
    from triformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    tokens, start = 0, None
    for i, text in enumerate(texts):
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        if i == 1:
            start, tokens = time.perf_counter(), 0  # the first call is a warm-up
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False, eos_token_id=0)
        tokens += out.shape[1] - ids.shape[1]
    return tokens / (time.perf_counter() - start)


def _transformers_serve_missing() -> str | None:
    check = subprocess.run([sys.executable, "-c", "import fastapi, uvicorn, transformers.cli.serve"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        return f"transformers serve cannot run here: it needs FastAPI (transformers[serving]); {last}"
    return None


def _measure(case: str, label: str, served: Served, model: str, texts_of, max_tokens: int, ours: bool,
             levels) -> dict[int, dict[str, Any]]:
    figures = {}
    for clients in levels:
        texts = texts_of(clients)
        log(f"{case}: {label}, {clients} clients, {len(texts)} requests")
        figures[clients] = asyncio.run(_load(served.url, model, texts, clients, max_tokens, ours))
        log(f"  {figures[clients]['tok_s']:.1f} tok/s; {_describe(figures[clients])}")
    return figures


def _rows(case: str, name: str, ours: dict[int, dict], sequential: float, theirs: dict[int, dict] | None,
          missing: str | None) -> list[Row]:
    """Per level: triformers serve against sequential generate (the >= 3x target at 32 clients), and against
    transformers serve on the same load (or why that could not run)."""
    rows = []
    for clients, figures in ours.items():
        row = Row(case=case, label=f"{name} c{clients} streaming: serve vs sequential generate", unit="tok/s",
                  higher_is_better=True, transformers=sequential, triformers=figures["tok_s"],
                  speedup=figures["tok_s"] / sequential, baseline="sequential triformers generate",
                  notes=f"triformers serve: {_describe(figures)}")
        if clients == 32:
            row.target, row.min_speedup, row.met = ">=3x", 3.0, row.speedup >= 3.0
        rows.append(row)
        label = f"{name} c{clients} streaming: triformers serve vs transformers serve --continuous-batching"
        if theirs is None or clients not in theirs:
            rows.append(skipped_row(case, label, missing or "transformers serve did not run this level"))
            continue
        other = theirs[clients]
        rows.append(Row(case=case, label=label, unit="tok/s", higher_is_better=True, transformers=other["tok_s"],
                        triformers=figures["tok_s"], speedup=figures["tok_s"] / other["tok_s"],
                        baseline="transformers serve --continuous-batching",
                        notes=f"transformers serve: {_describe(other)}"))
    return rows


def run(settings: Settings, model: str) -> list[Row]:
    case = f"serve/{model}"
    max_tokens = SHAPES[model][2] if not settings.smoke else 4
    levels = LEVELS if not settings.smoke else (1, 8)
    threads = str(settings.threads)
    with temporary_folder() as folder:
        log(f"{case}: building a random checkpoint")
        dialect = build(model, folder)
        vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
        name = f"{model} ({dialect}, fp32)"
        texts_of = lambda clients: prompts(PER_CLIENT * clients if clients > 1 else 4, vocab, clients)  # noqa: E731
        sequential = _sequential(folder, prompts(9, vocab, 99), max_tokens)
        log(f"{case}: sequential generate {sequential:.1f} tok/s")
        port = _port()
        ours = Served([sys.executable, "-m", "triformers", "serve", "--model", str(folder), "--port", str(port),
                       "--threads", threads, "--max-batch", "64", "--log-level", "warning"], port, settings.threads)
        try:
            ours.wait()
            asyncio.run(_load(ours.url, folder.name, prompts(2, vocab, 7), 1, 4, True))  # warm-up
            figures = _measure(case, "triformers serve", ours, folder.name, texts_of, max_tokens, True, levels)
        finally:
            ours.stop()
        theirs, missing = None, _transformers_serve_missing()
        if missing is None:
            port = _port()
            entry = "import sys; from transformers.cli.transformers import main; sys.argv[0] = 'transformers'; main()"
            server = Served([sys.executable, "-c", entry, "serve", str(folder), "--port", str(port),
                             "--continuous-batching"], port, settings.threads)
            try:
                server.wait()
                asyncio.run(_load(server.url, str(folder), prompts(2, vocab, 7), 1, 4, False))  # warm-up
                theirs = _measure(case, "transformers serve --continuous-batching", server, str(folder), texts_of,
                                  max_tokens, False, levels)
            except Exception as err:  # their server failing is a row, not a crash of the case
                missing = f"transformers serve failed: {type(err).__name__}: {err}"[:300]
            finally:
                server.stop()
    return _rows(case, name, figures, sequential, theirs, missing)


def cases() -> list[dict[str, Any]]:
    return [dict(name=f"serve/{model}", run="serve:run", params=dict(model=model), quick=model == "tiny")
            for model in SHAPES]
