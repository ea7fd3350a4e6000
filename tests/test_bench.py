"""Smoke test of the benchmark suite: the tiniest case end to end through the CLI (`--smoke`: tiny floors,
4 new tokens, one repetition), then the fields of the JSON and the table; the speed-up must be the ratio of
the two medians recorded in the same run."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parent.parent
CASE = "generate/tiny-gpt2/b1"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "result.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--case", CASE, "--json", str(out), "--no-chart"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_list_names_every_group():
    proc = subprocess.run([sys.executable, "-m", "bench", "--list"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    for prefix in ("generate/", "forward/", "train/", "load/", "import", "int8/"):
        assert any(n.startswith(prefix) for n in names), prefix
    assert CASE in names


def test_json_fields(smoke_run):
    _, data = smoke_run
    assert data["smoke"] and data["quick"]
    for key in ("cpu", "threads", "torch", "transformers", "triformers"):
        assert data["machine"][key], key
    assert data["machine"]["threads"] == 2
    for key in ("gemm_fp32_flops", "read_bandwidth", "copy_bandwidth"):
        assert data["floors"][key] > 0, key
    rows = [r for r in data["rows"] if r["case"] == CASE]
    assert rows, data["rows"]
    fp32 = rows[0]
    assert fp32["label"] == "tiny-gpt2 b1 fp32" and fp32["unit"] == "tok/s" and fp32["higher_is_better"]
    assert fp32["transformers"] > 0 and fp32["samples"]["transformers"]
    assert fp32["floors"]["read_bandwidth"] > 0 and 0 < fp32["share_transformers"]


def test_speedup_is_the_ratio_of_the_two_medians(smoke_run):
    _, data = smoke_run
    row = next(r for r in data["rows"] if r["case"] == CASE)
    if row["triformers"] is None:  # triformers could not run this case: the reason is recorded
        assert row["skipped"].startswith("triformers:") and row["speedup"] is None
        return
    hf, tri = statistics.median(row["samples"]["transformers"]), statistics.median(row["samples"]["triformers"])
    assert row["speedup"] == pytest.approx(hf / tri)
    assert row["triformers"] / row["transformers"] == pytest.approx(hf / tri)  # throughput, same ratio
    assert row["target"] == ">=3x" and row["met"] == (row["speedup"] >= 3.0)
    assert row["check"].startswith("greedy tokens equal")


def test_table_has_the_machine_and_the_row(smoke_run):
    stdout, _ = smoke_run
    assert "| case | baseline | transformers | triformers | speed-up (target) | share of floor | check |" in stdout
    assert "Machine: " in stdout and "threads" in stdout and "torch " in stdout
    assert "| tiny-gpt2 b1 fp32 |" in stdout


def test_linear_kernels_compares_every_shape_at_every_row_count():
    from triformers.layers import onednn

    if not onednn.AVAILABLE:
        pytest.skip("this torch build has no oneDNN")
    command = [sys.executable, "-m", "bench.linear_kernels", "--rows", "1,4", "--copies", "1", "--reps", "1"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    sys.path.insert(0, str(ROOT))  # the bench folder beside the package
    from bench.linear_kernels import SHAPES

    assert f"MKL up to {onednn.BLAS_ROWS if onednn.BLAS_FEW_ROWS else 0} rows" in lines[0]
    table = {line[:18].strip(): line[18:].split() for line in lines[2:]}
    assert set(table) == set(SHAPES)
    for cells in table.values():  # one dnn/packed ratio pair per row count, each a positive number
        assert len(cells) == 2
        assert all(float(v) > 0 for cell in cells for v in cell.removesuffix("pk").split("/"))
