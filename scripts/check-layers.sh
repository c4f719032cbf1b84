#!/usr/bin/env bash
# The one rule of our layers: `src/commands/` is the top. Nothing below it — every other file of
# the product (src/) and of the workspace's other crates (crates/*/src/) — imports `commands`
# or a clap type. `src/lib.rs` (which parses the command line and dispatches) and `src/main.rs`
# sit above the commands. Prints each offending line and exits 1; prints nothing otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

dirs=(src)
for d in crates/*/src; do [ -d "$d" ] && dirs+=("$d"); done
hits=$(grep -rnE --include='*.rs' \
  -e 'crate::(commands|cli)\b' -e '\bnewapi_ops::commands\b' \
  -e '\bclap(::|_complete|_mangen)' -e '^\s*use clap\b' -e '#\[(arg|command|clap)\(' \
  "${dirs[@]}" \
  | grep -vE '^src/(commands/|lib\.rs:|main\.rs:)' || true)
if [ -n "$hits" ]; then
  echo "check-layers: below src/commands/, these lines import commands/ or clap (the one rule of our layers):" >&2
  echo "$hits" >&2
  echo "check-layers: give the domain its own options type and convert the clap arguments in commands/" >&2
  exit 1
fi
