"""fp32 matmuls of a few rows through MKL (`F.linear`) and oneDNN (plain and packed weight), side by side.

    python -m bench.linear_kernels [--rows 1,2,3,4,8,32] [--copies 24] [--reps 7]

This is the measurement behind `layers/onednn.py`'s `blas_first`: which kernel a decoding step's matmuls
should take on this machine. Each shape is one of the decoders' (SmolLM2-135M, GPT-2 124M, Qwen2.5-0.5B: the
fused q|k|v, attention output, fused gate|up, down, MLP and the LM heads); `--copies` weights of it are
multiplied in turn, so that the weights come from memory as in a model, not from cache. The table gives
oneDNN's time over MKL's per shape and row count (> 1: MKL is faster), best of `--reps`, the kernels
interleaved repetition by repetition, and what `blas_first` chooses here.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

SHAPES = {  # (out, in)
    "SmolLM2 qkv": (960, 576), "SmolLM2 o": (576, 576), "SmolLM2 gate|up": (3072, 576),
    "SmolLM2 down": (576, 1536), "GPT-2 qkv": (2304, 768), "GPT-2 o": (768, 768), "GPT-2 fc": (3072, 768),
    "GPT-2 proj": (768, 3072), "Qwen2.5 qkv": (1152, 896), "Qwen2.5 gate|up": (9728, 896),
    "Qwen2.5 down": (896, 4864), "SmolLM2 head": (49152, 576), "GPT-2 head": (50257, 768),
}
HEADS = {"SmolLM2 head", "GPT-2 head"}  # one copy: a head is read once per step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,2,3,4,8,32")
    parser.add_argument("--copies", type=int, default=24)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    from triformers.layers import onednn

    if not onednn.AVAILABLE:
        raise SystemExit("this torch build has no oneDNN linear kernel: nothing to compare")
    rows = [int(r) for r in args.rows.split(",")]
    torch.manual_seed(0)
    print(f"oneDNN time / MKL time, fp32, {torch.get_num_threads()} threads, best of {args.reps} "
          f"(> 1: MKL faster); blas_first here: MKL up to {onednn.BLAS_ROWS if onednn.BLAS_FEW_ROWS else 0} rows")
    print(f"{'shape':18} " + " ".join(f"{'r' + str(r):>13}" for r in rows))
    for name, (out, inner) in SHAPES.items():
        weights = [torch.randn(out, inner) for _ in range(1 if name in HEADS else args.copies)]
        packed = [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in weights]
        cells = []
        for r in rows:
            x = torch.randn(r, inner)
            kernels = {"mkl": lambda x=x, weights=weights: [F.linear(x, w) for w in weights],
                       "dnn": lambda x=x, weights=weights: [onednn.matmul(x, w) for w in weights],
                       "packed": lambda x=x, packed=packed: [onednn.matmul(x, w) for w in packed]}
            best = {k: float("inf") for k in kernels}
            for _ in range(args.reps):
                for k, run in kernels.items():
                    start = time.perf_counter()
                    run()
                    best[k] = min(best[k], time.perf_counter() - start)
            cells.append(f"{best['dnn'] / best['mkl']:5.2f}/{best['packed'] / best['mkl']:4.2f}pk")
        print(f"{name:18} " + " ".join(f"{c:>13}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
