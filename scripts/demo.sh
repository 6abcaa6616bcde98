#!/usr/bin/env bash
# Loads, runs and benchmarks the bundled example extensions (`kflex demo`), after installing
# whatever is missing to build them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
fi
exec cargo run --release -p kflex -- demo "$@"
