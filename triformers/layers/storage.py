"""How a weight is held in memory: views of the checkpoint file, written out row-major when that pays off.

Loading keeps tensors that need no change as views of the memory-mapped safetensors file. GPT-2's Conv1D
weights arrive as (in, out) and are kept as transposed views (loading costs nothing; many-row matmuls read
them as fast); the first matmul of a few rows (decoding) or one that takes a gradient writes such a weight
out row-major (`row_major`), which single-row matmuls read faster. Once a tensor's values have been copied
out of the file, its mapped pages are released (`release_pages`) so the process holds one copy, not two.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from pathlib import Path

import torch

_MADV_DONTNEED = 4  # Linux


def is_transposed(weight: torch.Tensor) -> bool:
    """A 2-D tensor laid out as the transpose of a row-major one (GPT-2's Conv1D weights as loaded)."""
    return weight.dim() == 2 and not weight.is_contiguous() and weight.t().is_contiguous()


def mapped_from(weight: torch.Tensor, path: Path) -> None:
    """Note that `weight` is a view of the memory-mapped file `path`, whose pages `row_major` may release."""
    weight.__dict__["_mapped_from"] = (weight.data_ptr(), path)


def row_major(weight: torch.Tensor) -> None:
    """Replace a transposed-view weight by a row-major copy of the same values, in place (`.data`: the
    Parameter, its gradient hooks and optimizer state are kept); other weights are left alone. Written in
    bands of rows, which is faster than `.contiguous()` walking the source one column at a time. The mapped
    file pages it was read from are released afterwards (as loading does for copied-out tensors)."""
    if not is_transposed(weight):
        return
    with torch.inference_mode(False), torch.no_grad():
        source = weight.detach().t()  # (in, out), row-major
        out = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device)
        for start in range(0, source.shape[0], 256):
            out[:, start:start + 256].copy_(source[start:start + 256].t())
        mapped = weight.__dict__.pop("_mapped_from", None)
        weight.data = out
    if mapped is not None and mapped[0] == source.data_ptr():  # still the file's own pages
        release_pages(source, mapped[1])


def release_pages(tensor: torch.Tensor, path: Path) -> None:
    """Drop the resident pages of a tensor that was memory-mapped from the safetensors file `path`, once
    its values have been copied out (transposed, cast): they would otherwise stay in the process' memory
    next to the copy. Only pages wholly inside the tensor are dropped; touched again, they are re-read
    from the file. Only for safetensors' read-only file mappings (on anonymous memory the call would zero
    the data), and only on Linux; elsewhere a no-op."""
    if Path(path).suffix != ".safetensors" or not sys.platform.startswith("linux") or tensor.device.type != "cpu":
        return
    page = os.sysconf("SC_PAGE_SIZE")
    begin = tensor.data_ptr()
    start = -(-begin // page) * page
    end = (begin + tensor.numel() * tensor.element_size()) // page * page
    if end > start:
        _libc().madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return libc
