"""Side-by-side benchmarks of triformers against Hugging Face transformers (the oracle).

`python -m bench` runs every case in its own subprocess, times both libraries interleaved in the same
process (warm-up, alternating order, medians), checks that their outputs agree where both run in fp32,
and relates each figure to this machine's floor (GEMM FLOP/s and memory bandwidth measured in the
same run). See `python -m bench --help` and `bench/harness.py`.
"""
