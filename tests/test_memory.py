"""Resource bounds: loading a GPT-2-size checkpoint (random weights, ~500 MB of safetensors) costs at
most about its own size in memory. Measured in a fresh process from /proc/self/status:
- private (anonymous) memory grows by about 1.0x the file: every tensor is read into the process' own
  memory (never a view of a mapped file, which a rewrite of the file would change), once; a transformed
  copy (fused, cast) replaces its source rather than joining it (5% allowed for the interpreter's own);
- peak resident memory (VmHWM) grows by about as much: no file pages are mapped, so nothing sits
  beside the private copy (10% allowed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

MEASURE = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    from triformers import AutoModelForCausalLM

    def status():
        fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM", "RssAnon")}

    before = status()
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
    after = status()
    print(json.dumps({"peak": after["VmHWM"] - before["VmRSS"], "anon": after["RssAnon"] - before["RssAnon"],
                      "parameters": model.num_parameters()}))
""")
MAKE = textwrap.dedent("""
    import sys, torch
    from triformers import AutoConfig
    from triformers.models import DecoderModel
    torch.manual_seed(0)
    model = DecoderModel(AutoConfig.for_model("gpt2"), head="lm")  # 124M parameters, GPT-2 small's shapes
    for p in model.parameters():
        p.data.normal_(0, 0.02)
    model.save_pretrained(sys.argv[1])
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status (Linux)")
def test_loading_costs_about_the_file_size_in_memory(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", MAKE, str(tmp_path)], check=True, env=env, timeout=300)
    size = (tmp_path / "model.safetensors").stat().st_size
    done = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nfile {size / 2**20:.0f} MiB; private memory +{measured['anon'] / size:.2f}x, "
          f"peak resident +{measured['peak'] / size:.2f}x the file size")
    assert measured["parameters"] * 4 <= size  # the file holds every parameter in fp32
    assert measured["anon"] <= 1.05 * size
    assert measured["peak"] <= 1.1 * size
