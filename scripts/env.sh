#!/usr/bin/env bash
# Creates .venv (once) and installs triformers with its test dependencies into it.
# PyTorch is installed as the pinned CPU build when the environment has none.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
py=.venv/bin/python
stamp=.venv/.triformers-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  $py -m pip install -q --upgrade pip
  $py -c "import torch" 2>/dev/null || $py -m pip install -q "torch==2.13.0"
  $py -m pip install -q -e ".[test,dev]"
  touch "$stamp"
fi
