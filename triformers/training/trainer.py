"""The training loop: AdamW groups, warmup + cosine/linear decay, accumulation, bf16, checkpoints, DDP.

`Trainer(model, args, train_data, collator, eval_data=...)` trains any model whose forward takes the
collator's batch and returns an output with `.loss` (every triformers model with labels does).
- Arguments: `TrainingArguments`, with transformers' names and defaults; `plan.py` turns them into the
  number of steps (from `num_train_epochs` when `max_steps` is -1), the warmup, and when to log, evaluate
  (`eval_strategy`) and save (`save_strategy`), as transformers' Trainer does.
- Optimizer: AdamW (fused where torch has it, else foreach) without weight decay on biases, norms and
  embeddings (the GPT-2 / nanoGPT grouping); warmup then linear or cosine decay to
  `min_lr_ratio * learning_rate`.
- Determinism: example order is a function of (seed, epoch) and the step; a collator with a
  `generator` attribute (MLM, span corruption, infilling) gets one seeded from (seed, step,
  micro-batch, rank), so masks never depend on RNG state. A checkpoint stores the model, optimizer,
  step and every rank's torch / numpy / python RNG state, so `resume_from_checkpoint` ends bit-identical
  to an uninterrupted run (same world size and global batch).
- Checkpoints: `out/checkpoints/checkpoint-NNNNNNN/` (trainer_state.pt + a Hugging Face export) are
  written to a temporary folder and renamed, the last `save_total_limit` kept; the final model (a Hugging
  Face folder) is written to output_dir itself after the last step. A non-finite loss or
  gradient norm raises `TrainingError` naming the step; the checkpoints on disk stay as they were.
- Distributed: under `torchrun` (RANK / WORLD_SIZE set) a process group is started (nccl on CUDA,
  gloo on CPU), the model wrapped in DistributedDataParallel, and each rank reads its own slice of
  every global batch; rank 0 alone writes checkpoints, metrics and the plot. Several machines::

      # on each of 2 nodes (node_rank 0 and 1), 8 processes each, rendezvous at the first node:
      torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 --master_addr=10.0.0.1 --master_port=29500 \
          -m triformers pretrain --family decoder --data corpus/ --out runs/gpt
      # or elastic: torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=10.0.0.1:29500 ...

  `--out` must be a shared filesystem for `--resume` to find rank 0's checkpoints on every node.
- FSDP (`fsdp=True`, `--fsdp`): the same torchrun launch (one node or several, the flags above), but
  the model is sharded with FSDP2's `fully_shard` instead of replicated by DDP; see `shard_model`.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..errors import TrainingError
from .arguments import TrainingArguments
from .checkpoints import checkpoint_paths, export_into, latest_checkpoint, read_state, resuming, write_checkpoint
from .distributed import _full_state_options, bf16_supported, init_distributed, meta_copy, shard_model
from .metrics import append_jsonl, plot_metrics, truncate_metrics
from .optim import build_optimizer, learning_rate
from .plan import epoch_order, example_lengths, make_plan
from .rng import capture_rng, restore_rng

logger = logging.getLogger("triformers")


@dataclass
class TrainResult:
    step: int
    loss: float  # mean training loss of the last step
    eval_loss: float | None = None  # of the last evaluation (None: none ran)
    eval_perplexity: float | None = None
    tokens: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # the metrics lines of this run


class Trainer:
    """Train `model` on `train_data[i]` examples batched by `collator`; see the module docstring."""

    def __init__(self, model: nn.Module, args: TrainingArguments, train_data: Sequence[Any],
                 collator: Callable[[list[Any]], dict[str, torch.Tensor]], eval_data: Sequence[Any] | None = None,
                 eval_collator: Callable | None = None, export: Callable[[nn.Module, Path], None] | None = None):
        args.validate()
        self.args, self.collator, self.eval_collator = args, collator, eval_collator or collator
        self.train_data, self.eval_data = train_data, eval_data
        self.export = export  # writes a Hugging Face folder (model + tokenizer); default model.save_pretrained
        self.dist = init_distributed(args.device)
        default = f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(args.device or default)
        if args.fsdp and self.dist.world_size < 2:
            raise TrainingError("fsdp shards the model across processes: launch with torchrun --nproc_per_node=N "
                                "(N >= 2; WORLD_SIZE is unset or 1 here), or drop fsdp")
        model.train()  # before DDP/FSDP see the parameters: weights still held as checkpoint views are written out
        self.export_copy = meta_copy(model) if args.fsdp and self.dist.is_main else None
        # FSDP moves each shard to the device itself (never the whole model); the optimizer must see
        # the sharded parameters, so it is built after sharding
        self.model = shard_model(model, self.device, self.dist.world_size) if args.fsdp else model.to(self.device)
        self.optimizer = build_optimizer(self.model, args)
        self.wrapped: nn.Module = self.model
        if self.dist.world_size > 1 and not args.fsdp:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.bf16 = args.bf16 and bf16_supported(self.device)
        if args.bf16 and not self.bf16:
            logger.warning("--bf16: this %s has no native bfloat16; training in float32", self.device.type)
        self.out = Path(args.output_dir)
        self.global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * self.dist.world_size
        if len(train_data) < self.global_batch:
            raise TrainingError(f"the training split has {len(train_data)} examples, fewer than one global batch "
                                f"({self.global_batch}); use more data or a smaller batch / sequence length")
        if args.eval_strategy != "no" and (eval_data is None or not len(eval_data)):
            raise TrainingError(f"TrainingArguments: eval_strategy={args.eval_strategy!r} but there is no held-out "
                                "data: pass eval_data or set eval_strategy='no'")
        self.plan = make_plan(args, len(train_data), self.global_batch)
        self.step, self.tokens = 0, 0
        self._epoch, self._order = -1, np.zeros(0, dtype=np.int64)
        self._lengths = example_lengths(train_data) if args.train_sampling_strategy == "group_by_length" else None

    # ---- data ---------------------------------------------------------------------------------
    def _order_for(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._order = epoch, epoch_order(self.args, epoch, len(self.train_data), self.global_batch,
                                                          self._lengths)
        return self._order

    def _indices(self, step: int, micro: int) -> list[int]:
        """This rank's examples for one micro-batch: a slice of the global batch of optimizer step `step`."""
        n, b = len(self.train_data), self.args.per_device_train_batch_size
        first = step * self.global_batch + (micro * self.dist.world_size + self.dist.rank) * b
        return [int(self._order_for(p // n)[p % n]) for p in range(first, first + b)]

    def _batch(self, examples: list[Any], collator: Callable, seed: Sequence[int]) -> dict[str, torch.Tensor]:
        if hasattr(collator, "generator"):
            collator.generator = torch.Generator().manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        return {k: v.to(self.device) for k, v in collator(examples).items()}

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    # ---- the loop -----------------------------------------------------------------------------
    def train(self) -> TrainResult:
        args, plan = self.args, self.plan
        if args.resume_from_checkpoint:
            self.resume(args.resume_from_checkpoint)
        else:
            self._fresh_start()
        metrics = self.out / "metrics.jsonl"
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            truncate_metrics(metrics, self.step)
        bar = tqdm(total=plan.max_steps, initial=self.step, disable=args.disable_tqdm or not self.dist.is_main,
                   desc="train", dynamic_ncols=True)
        result = TrainResult(step=self.step, loss=float("nan"))
        started = time.perf_counter()
        self.model.train()
        while self.step < plan.max_steps:
            tick = time.perf_counter()
            lr = learning_rate(self.step, args, plan.max_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss, tokens = self._train_step()
            self.step += 1
            self.tokens += tokens
            record = {"step": self.step, "epoch": round(plan.epoch(self.step), 4), "loss": loss, "lr": lr,
                      "tokens": self.tokens, "tokens_per_s": tokens / max(time.perf_counter() - tick, 1e-9)}
            result.loss = loss
            records = [record] if plan.logs(args, self.step) else []
            if plan.evaluates(args, self.step):
                evaluation = {"step": self.step, **self._eval_record()}
                result.eval_loss, result.eval_perplexity = evaluation["eval_loss"], evaluation["eval_perplexity"]
                records.append(evaluation)
            if self.dist.is_main:
                for line in records:
                    append_jsonl(metrics, line)
                result.history += records
            if plan.saves(args, self.step) and self.step < plan.max_steps:
                self.save_checkpoint()
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_s']:.0f}")
            bar.update(1)
        bar.close()
        self.save_checkpoint(final=True)
        if self.dist.is_main and args.plot_loss:
            plot_metrics(metrics, self.out / "loss_curve.png")
        result.step, result.tokens, result.seconds = self.step, self.tokens, time.perf_counter() - started
        return result

    def _train_step(self) -> tuple[float, int]:
        args, total, tokens = self.args, torch.zeros((), device=self.device), 0
        self.optimizer.zero_grad(set_to_none=True)
        accumulation = args.gradient_accumulation_steps
        for micro in range(accumulation):
            examples = [self.train_data[i] for i in self._indices(self.step, micro)]
            batch = self._batch(examples, self.collator, (args.seed, 0, self.step, micro, self.dist.rank))
            tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
            last = micro == accumulation - 1
            # DDP: all-reduce gradients once per optimizer step, not once per micro-batch (FSDP reduce-scatters
            # every micro-batch: holding unsharded gradients across micro-batches would undo its savings)
            ddp = self.dist.world_size > 1 and not args.fsdp
            sync = self.wrapped.no_sync() if ddp and not last else nullcontext()
            with sync:
                with self._autocast():
                    loss = self.wrapped(**batch).loss / accumulation
                loss.backward()
            total += loss.detach()
        if self.dist.world_size > 1:  # every rank sees the same loss, so every rank stops together
            dist.all_reduce(total, op=dist.ReduceOp.AVG)
            counted = torch.tensor(tokens, device=self.device)
            dist.all_reduce(counted)
            tokens = int(counted)
        loss_value = float(total)
        if not math.isfinite(loss_value):
            self._fail(f"loss is {loss_value}", self.step + 1)
        if args.max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
            norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # a DTensor under FSDP
            if not math.isfinite(norm):
                self._fail(f"gradient norm is {norm}", self.step + 1)
        self.optimizer.step()
        return loss_value, tokens

    def _fail(self, what: str, step: int) -> None:
        last = latest_checkpoint(self.out)
        kept = f"the last good checkpoint, {last}, is intact (resume from it with a lower learning_rate)" if last else \
            "no checkpoint had been written yet"
        raise TrainingError(f"training stopped at step {step}: {what}; the optimizer step was not taken and {kept}")

    # ---- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """(mean loss over label tokens, perplexity) on the held-out data (its first `max_eval_batches` batches)."""
        self.model.eval()
        b, world, n = self.args.per_device_eval_batch_size, self.dist.world_size, len(self.eval_data)
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # (loss * tokens, tokens)
        batches = math.ceil(n / (b * world))
        if self.args.max_eval_batches is not None:
            batches = min(batches, self.args.max_eval_batches)
        if self.args.fsdp:  # each forward is collective: only batches in which every rank has examples
            batches = min(batches, sum(1 for i in range(batches) if ((i + 1) * world - 1) * b < n))
        for batch_index in range(batches):
            first = (batch_index * world + self.dist.rank) * b
            indices = range(first, min(first + b, n))
            if not indices:
                break
            batch = self._batch([self.eval_data[i] for i in indices], self.eval_collator,
                                (self.args.seed, 1, batch_index, self.dist.rank))  # the same masks at every evaluation
            with self._autocast():
                loss = self.model(**batch).loss
            count = int((batch["labels"] != -100).sum()) if "labels" in batch else 1
            sums += torch.tensor([float(loss) * count, count], dtype=torch.float64, device=self.device)
        if world > 1:
            dist.all_reduce(sums)
        self.model.train()
        mean = float(sums[0] / sums[1].clamp(min=1))
        return mean, math.exp(min(mean, 700.0))

    def _eval_record(self) -> dict[str, float]:
        if self.eval_data is None or not len(self.eval_data):
            return {}
        loss, perplexity = self.evaluate()
        return {"eval_loss": loss, "eval_perplexity": perplexity}

    # ---- checkpoints --------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        rng = capture_rng()
        rngs = [None] * self.dist.world_size
        if self.dist.world_size > 1:  # every rank's dropout stream, so a resumed run continues each of them
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        if self.args.fsdp:  # gathered to full state dicts (keyed by parameter name) on rank 0 alone
            from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

            options = _full_state_options(cpu_offload=True)
            model = get_model_state_dict(self.model, options=options)
            optimizer = get_optimizer_state_dict(self.model, self.optimizer, options=options)
        else:
            model, optimizer = self.model.state_dict(), self.optimizer.state_dict()
        return {"format": 1, "step": self.step, "tokens": self.tokens, "world_size": self.dist.world_size,
                "global_batch": self.global_batch, "fsdp": self.args.fsdp, "model": model, "optimizer": optimizer,
                "rng": rngs, "args": _plain(asdict(self.args))}

    def _exportable(self, state: dict[str, Any]) -> nn.Module:
        """The model to hand to `export`: under FSDP the meta copy filled with the gathered weights."""
        if self.export_copy is None:
            return self.model
        self.export_copy.load_state_dict(state["model"], assign=True)
        return self.export_copy

    def save_checkpoint(self, final: bool = False) -> Path | None:
        """Rank 0 writes checkpoint-<step> atomically (and, when `final`, the export into output_dir)."""
        state = self._state()  # collective under DDP and FSDP: every rank takes part
        path = None
        if self.dist.is_main:
            export = self.export or (lambda model, folder: model.save_pretrained(folder))
            model = self._exportable(state)
            if final:  # published into output_dir as one set (its checkpoints and logs stay)
                export_into(self.out, lambda folder: export(model, folder))
            if not final or self.args.save_strategy != "no":
                path = write_checkpoint(self.out, self.step, state, lambda folder: export(model, folder),
                                        self.args.save_total_limit)
            if self.export_copy is not None:
                self.export_copy.to_empty(device="meta")  # let the gathered weights go
        self.dist.barrier()
        return path

    def resume(self, where: str | bool) -> None:
        path = latest_checkpoint(self.out) if where is True or where == "latest" else Path(where)
        if path is None:
            raise TrainingError(f"resume_from_checkpoint: no checkpoint under {self.out / 'checkpoints'}")
        state = read_state(path / "trainer_state.pt")
        if state["global_batch"] != self.global_batch:
            raise TrainingError(f"resume_from_checkpoint: {path} was trained with a global batch of "
                                f"{state['global_batch']}, this run has {self.global_batch} (per_device_train_batch_"
                                "size * gradient_accumulation_steps * processes must match)")
        if bool(state.get("fsdp", False)) != self.args.fsdp:
            written = "with" if state.get("fsdp") else "without"
            raise TrainingError(f"resume_from_checkpoint: {path} was written {written} fsdp; resume it the same way "
                                "(the optimizer state is stored differently)")
        with resuming(path):  # another model shape or optimizer setup: one TrainingError naming the checkpoint
            if self.args.fsdp:  # every rank reads the full state dicts and keeps its own shards
                from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

                set_model_state_dict(self.model, state["model"], options=_full_state_options())
                set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"],
                                         options=_full_state_options())
            else:
                self.model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
            self.step, self.tokens = int(state["step"]), int(state["tokens"])
            if state["world_size"] == self.dist.world_size:
                restore_rng(state["rng"][self.dist.rank])
            else:
                logger.warning("resume: %d processes now, %d before; dropout RNG streams are re-seeded",
                               self.dist.world_size, state["world_size"])
                self._seed_all(self.step)
        logger.info("resumed from %s at step %d", path, self.step)

    def _fresh_start(self) -> None:
        old = checkpoint_paths(self.out)
        if old and not self.args.overwrite_output_dir:
            raise TrainingError(f"{self.out} holds checkpoints of an earlier run ({old[-1].name}): pass --resume "
                                "(resume_from_checkpoint=True) to continue it, --overwrite (overwrite_output_dir=True) "
                                "to start over, or another --out (output_dir)")
        if old and self.dist.is_main:
            shutil.rmtree(self.out / "checkpoints")
        self.dist.barrier()
        self._seed_all()

    def _seed_all(self, salt: int = 0) -> None:
        seed = int(np.random.SeedSequence([self.args.seed, self.dist.rank, salt]).generate_state(1)[0])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


def _plain(value: Any) -> Any:
    """Arguments as plain lists/dicts/scalars (what torch.load(weights_only=True) reads back)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
