#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or a warm one:
#   installs what is missing (Debian packages, the 1.20.2 control plane; see scripts/setup.sh),
#   checks formatting and lints, then runs every test. The integration tests start one sandbox
#   (real kube-apiserver, etcd, controller-manager, scheduler, kubelet simulator, MariaDB, Redis)
#   for the run and stop it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
if ! command -v cargo >/dev/null 2>&1; then
  echo "test: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
KUBEBUILDER_ASSETS="$(scripts/setup.sh | tail -n 1)"
export KUBEBUILDER_ASSETS
echo "test: control plane binaries in $KUBEBUILDER_ASSETS ($(( $(date +%s) - start ))s)" >&2

scripts/check-layers.sh
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# The tool without the sandbox (crates/sandbox) must compile and lint clean too (clippy compiles
# it; a `cargo build` of it here would make the next step rebuild the binary with the sandbox).
cargo clippy --locked -p newapi-ops --no-default-features --all-targets -- -D warnings
# And without the dev-dependencies, which enable features of shared crates (nix's) that the
# product alone must ask for itself.
cargo clippy --locked -p newapi-ops --no-default-features -- -D warnings
# The tool without the sandbox is what the container image runs: its unit tests too (only its
# library: cargo keeps the two feature sets' artifacts apart, and no binary is overwritten).
cargo test --locked -p newapi-ops --no-default-features --lib
cargo test --locked --workspace -- "$@"
echo "test: whole suite took $(( $(date +%s) - start ))s" >&2
