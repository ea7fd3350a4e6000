"""Training on several processes: the torchrun process group (DDP), FSDP2 sharding, and device capabilities.

Under `torchrun` (RANK / WORLD_SIZE set) a process group is started (nccl on CUDA, gloo on CPU); the
Trainer wraps the model in DistributedDataParallel, or shards it with FSDP2's `fully_shard`
(`shard_model`) when asked, and each rank reads its own slice of every global batch. Several machines::

    # on each of 2 nodes (node_rank 0 and 1), 8 processes each, rendezvous at the first node:
    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 --master_addr=10.0.0.1 --master_port=29500 \\
        -m triformers pretrain --family decoder --data corpus/ --out runs/gpt
    # or elastic: torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=10.0.0.1:29500 ...

`output_dir` must be a shared filesystem for a resume to find rank 0's checkpoints on every node.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import TrainingError

logger = logging.getLogger("triformers")


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed(device: str | None = None) -> Distributed:
    """Start the process group when launched by torchrun (RANK/WORLD_SIZE in the environment)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return Distributed(rank, world_size, local_rank)


def place_model(model: nn.Module, args) -> tuple[Distributed, torch.device, nn.Module, nn.Module | None, bool]:
    """(process group, device, the model on it, FSDP's meta copy for exports, bf16 autocast?) for `args`."""
    group = init_distributed(args.device)
    default = f"cuda:{group.local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device or default)
    if args.fsdp and group.world_size < 2:
        raise TrainingError("fsdp shards the model across processes: launch with torchrun --nproc_per_node=N "
                            "(N >= 2; WORLD_SIZE is unset or 1 here), or drop fsdp")
    model.train()  # before DDP/FSDP see the parameters: weights still held as checkpoint views are written out
    export_copy = meta_copy(model) if args.fsdp and group.is_main else None
    # FSDP moves each shard to the device itself (never the whole model); the optimizer must see
    # the sharded parameters, so it is built after sharding
    model = shard_model(model, device, group.world_size) if args.fsdp else model.to(device)
    bf16 = args.bf16 and bf16_supported(device)
    if args.bf16 and not bf16:
        logger.warning("--bf16: this %s has no native bfloat16; training in float32", device.type)
    return group, device, model, export_copy, bf16


def shard_model(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """Shard `model` in place with FSDP2 (`fully_shard`): one shard group per transformer `Block`, the
    root group holding the rest (embeddings, final norm, heads).

    Each rank keeps 1/world of every parameter, its gradient and its AdamW moments; a group's full
    weights are all-gathered just before its forward and backward and freed after, and gradients are
    reduce-scattered. Pick FSDP over DDP when parameters + gradients + optimizer state (about 16 bytes
    per parameter in fp32 AdamW) do not fit one device; DDP is simpler and faster when they do (it
    communicates half as much). The model is built whole in CPU memory on each rank and moved to the
    device one Block at a time as it is sharded, so the device never holds all of it. Several nodes:
    launch exactly as for DDP (torchrun --nnodes/--node_rank/--master_addr or --rdzv_endpoint, see the
    module docstring), adding `--fsdp`; the shards then span every process on every node.
    Checkpoints hold full (gathered) model and optimizer state dicts, written by rank 0, so a run may be
    resumed with any number of processes, but only with FSDP again (the optimizer state is keyed by
    parameter name, not by DDP's parameter index).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from ..layers.block import Block

    mesh = init_device_mesh(device.type, (world_size,))
    for block in [m for m in model.modules() if isinstance(m, Block)]:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def meta_copy(model: nn.Module) -> nn.Module:
    """`model`'s structure with every tensor on the meta device (no memory): FSDP's rank 0 loads the
    gathered full weights into it (`load_state_dict(assign=True)`) to write the Hugging Face export."""
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad) for p in model.parameters()}
    memo.update({id(b): torch.empty_like(b, device="meta") for b in model.buffers()})
    return copy.deepcopy(model, memo)  # deepcopy takes each tensor from memo instead of copying it


def _full_state_options(**extra: bool):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up defensively
    return any(getattr(cpu, name, lambda: False)() for name in checks)
