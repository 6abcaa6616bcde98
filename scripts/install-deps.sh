#!/usr/bin/env bash
# Installs what building and testing kflex needs, and nothing that is already there.
#
# On Debian 12 (bookworm) it installs any of clang-19, llvm-19, libelf-dev, zlib1g-dev, pkg-config,
# make, gcc and libc6-dev that is missing (running `apt-get update` first only in that case, and
# using sudo only when not root): libbpf-sys builds its bundled libbpf with make, pkg-config and a C
# compiler against libelf and zlib, and gcc also builds the native data-structure baseline.
# It then checks that a Rust toolchain (`cargo`) is available. Safe to run again.
set -euo pipefail

PACKAGES=(clang-19 llvm-19 libelf-dev zlib1g-dev pkg-config make gcc libc6-dev)

log() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

# Prints the packages of PACKAGES that dpkg does not report as installed.
missing_packages() {
    local pkg status
    for pkg in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        if [[ "$status" != "install ok installed" ]]; then
            printf '%s\n' "$pkg"
        fi
    done
}

install_system_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        # Not Debian: accept any system that already has the tools, otherwise say what is needed.
        if command -v clang-19 >/dev/null 2>&1 && command -v llvm-objdump-19 >/dev/null 2>&1; then
            log "not a Debian system; clang-19 and llvm-19 found, skipping package installation"
            return
        fi
        die "not a Debian system: install ${PACKAGES[*]} (or equivalents) with your package manager"
    fi

    local missing
    mapfile -t missing < <(missing_packages)
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "system packages present: ${PACKAGES[*]}"
        return
    fi

    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "not root and sudo not found: install ${missing[*]} as root"
        sudo=(sudo)
    fi
    log "installing ${missing[*]}"
    "${sudo[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
}

check_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
        # shellcheck disable=SC1091
        source "$HOME/.cargo/env"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        die "cargo not found: kflex expects stable Rust (>= 1.95) to be preinstalled; install it from https://rustup.rs and run this script again"
    fi
    log "rust: $(cargo --version)"
}

install_system_packages
check_rust
