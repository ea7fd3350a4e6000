"""The linear layers of one SmolLM2-135M decode step at batch 1, in each weight format triformers can hold.

    python -m bench.quantized_linears [--gguf .assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf] [--reps 7]

The weights are the real file's, dequantized (q|k|v and gate|up fused, as a decoder fuses them; the tied head
multiplies by the embedding matrix): 30 x (qkv 576->960, o 576->576, gate|up 576->3072, down 1536->576) and
the head 576->49152 (int8 in the int4 rows, as `quantize="int4"` keeps it; their error column is the blocks').
Each format multiplies one token's activations through all of them in turn, the formats
interleaved repetition by repetition (these hosts drift); the table gives the median time of a step, its
tokens/s if the linears were the whole step, the weight bytes read and the bandwidth floor they imply, and the
weights' error against the dequantized fp32 ones. This is the measurement behind shipping `quantize="int4"`:
at batch 1 decoding is bound by the weight bytes read per token.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

DEFAULT = Path(__file__).resolve().parent.parent / ".assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_weights(path: Path) -> list[torch.Tensor]:
    """The decode step's weight matrices, (out, in) fp32, in the order a step uses them."""
    from triformers.io.gguf import GGUFFile
    from triformers.io.gguf_mapping import GGUFTensors

    tensors = GGUFTensors(GGUFFile(path))
    layers = tensors.config["num_hidden_layers"]
    weights = []
    for i in range(layers):
        p = f"model.layers.{i}."
        weights.append(torch.cat([tensors[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]))
        weights.append(tensors[p + "self_attn.o_proj.weight"])
        weights.append(torch.cat([tensors[p + "mlp.gate_proj.weight"], tensors[p + "mlp.up_proj.weight"]]))
        weights.append(tensors[p + "mlp.down_proj.weight"])
    weights.append(tensors["model.embed_tokens.weight"])
    return weights


def formats(weights: list[torch.Tensor]) -> dict[str, tuple[list, torch.dtype, int, float]]:
    """name -> (layers as callables on x, activation dtype, weight bytes, max relative weight error)."""
    from triformers.layers import onednn
    from triformers.layers.int4 import Int4Linear
    from triformers.layers.int8 import Int8Linear

    out = {}
    fp32 = [(lambda x, w=w: F.linear(x, w)) for w in weights]
    out["fp32"] = (fp32, torch.float32, sum(w.numel() * 4 for w in weights), 0.0)
    bf16 = [w.to(torch.bfloat16) for w in weights]
    out["bf16"] = ([(lambda x, w=w: F.linear(x, w)) for w in bf16], torch.bfloat16, sum(w.numel() * 2 for w in bf16),
                   _error(weights, [w.float() for w in bf16]))
    if onednn.packable(bf16[0]):
        packed = [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in bf16]
        out["bf16 packed"] = ([(lambda x, w=w: onednn.matmul(x, w)) for w in packed], torch.bfloat16,
                              out["bf16"][2], out["bf16"][3])
    int8 = [Int8Linear(w) for w in weights]
    out["int8"] = (int8, torch.float32, sum(m.weight_int8.numel() + m.scale.numel() * 4 for m in int8),
                   _error(weights, [m.weight_int8.float() * m.scale[:, None] for m in int8]))
    for group in (32, 64, 128):  # quantize="int4": the blocks in int4 (groups of 32), the head in int8
        if not all(Int4Linear.fits(w, group) for w in weights[:-1]):
            continue
        int4 = [Int4Linear(w, group_size=group) for w in weights[:-1]]
        nbytes = sum(m.weight_int4.numel() + m.scales_and_zeros.numel() * 2 for m in int4) + \
            int8[-1].weight_int8.numel() + int8[-1].scale.numel() * 4
        out[f"int4 g{group}"] = (int4 + [int8[-1]], torch.float32, nbytes,
                                 _error(weights[:-1], [m.dequantized() for m in int4]))
    return out


def _error(reference: list[torch.Tensor], got: list[torch.Tensor]) -> float:
    """The largest per-matrix relative Frobenius error."""
    return max(float((g - r).norm() / r.norm()) for r, g in zip(reference, got, strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gguf", type=Path, default=DEFAULT)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="decode steps per timed repetition")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bandwidth", type=float, default=31.7e9, help="read bandwidth for the floor (bytes/s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    weights = smollm2_weights(args.gguf)
    table = formats(weights)
    inputs = {dtype: {k: torch.randn(1, k).to(dtype) for k in {w.shape[1] for w in weights}}
              for dtype in (torch.float32, torch.bfloat16)}
    runs = {}
    for name, (layers, dtype, _, _) in table.items():
        shapes = [w.shape[1] for w in weights]
        runs[name] = (lambda layers=layers, dtype=dtype, shapes=shapes:
                      [layer(inputs[dtype][k]) for layer, k in zip(layers, shapes, strict=True)])
        for _ in range(3):
            runs[name]()  # warm-up: packing, first-call dispatch
    times = {name: [] for name in runs}
    with torch.inference_mode():
        for _ in range(args.reps):
            for name, run in runs.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    run()
                times[name].append((time.perf_counter() - start) / args.steps)
    print(f"SmolLM2-135M decode-step linears, batch 1, {args.threads} threads, {args.reps} interleaved reps "
          f"x {args.steps} steps (median)")
    print(f"{'format':12s} {'ms/step':>8s} {'tok/s':>7s} {'MB read':>8s} {'floor tok/s':>11s} {'weight error':>12s}")
    for name, (_, _, nbytes, error) in table.items():
        median = statistics.median(times[name])
        print(f"{name:12s} {median * 1e3:8.2f} {1 / median:7.0f} {nbytes / 1e6:8.0f} "
              f"{args.bandwidth / nbytes:11.0f} {error:12.2e}")


if __name__ == "__main__":
    main()
