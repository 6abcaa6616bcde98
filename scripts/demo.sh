#!/usr/bin/env bash
# Loads, runs and benchmarks the bundled example extensions (`kflex demo`), then runs the quick
# data-structure benchmark (`kflex bench datastructures --quick`: every structure on native code,
# kflex's JIT and interpreter, and the Linux kernel when BPF is available), after installing
# whatever is missing to build them. Arguments are passed to `kflex demo`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
fi
cargo run --release -p kflex -- demo "$@"
echo
exec cargo run --release -p kflex -- bench datastructures --quick
