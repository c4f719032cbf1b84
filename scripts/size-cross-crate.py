#!/usr/bin/env python3
"""Measurement (not a test): how much of a release binary is generic code compiled twice because
both the product (newapi_ops) and the sandbox crate (newapi_ops_sandbox) instantiate it.

Release builds do not share generic instantiations between crates, so `Api<Pod>::list`, the
serde code of a k8s type or YAML into `serde_json::Value`, used by both crates, is compiled into
each. With v0 symbol mangling a symbol names the crate that instantiated it (its last path
segment), and two symbols with the same demangled name are two copies of one function.

    RUSTFLAGS="-C symbol-mangling-version=v0" CARGO_TARGET_DIR=/work/target-v0 \\
        cargo build --release --locked -p newapi-ops --bin newapi-ops
    scripts/size-cross-crate.py /work/target-v0/release/newapi-ops [ROWS]

Prints the bytes of such second copies (all but the largest copy of each function), grouped by
what they are, and the largest ROWS functions (default 20). Figures: BENCHMARKS.md, "Binary size".
"""
import collections
import re
import subprocess
import sys


def symbols(path, demangle):
    args = ["nm", "-S", "--size-sort"] + (["-C"] if demangle else []) + [path]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()


def instantiating_crate(mangled):
    # The crate root at the end of a v0 symbol: a decimal length and the crate's name.
    if mangled.endswith("18newapi_ops_sandbox"):
        return "sandbox"
    if mangled.endswith("10newapi_ops"):
        return "product"
    return "other"


def family(name):
    m = re.search(r"k8s_openapi::[\w:]+::(\w+)", name)
    key = "k8s " + m.group(1) if m else re.split(r"::|<| ", name.lstrip("<&"))[0]
    if "serde_saphyr" in name:
        return key + " (from YAML)"
    if "serde_json::value" in name:
        return key + " (from a serde_json::Value)"
    if "serde_json" in name:
        return key + " (from JSON)"
    return key


def main():
    path = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    raw, dem = symbols(path, False), symbols(path, True)
    if len(raw) != len(dem):
        sys.exit("nm gave a different number of lines with and without -C")
    copies = collections.defaultdict(list)
    text = 0
    for r, d in zip(raw, dem):
        rp, dp = r.split(" ", 3), d.split(" ", 3)
        if len(rp) < 4 or rp[2] not in "tTwW":
            continue
        size = int(rp[1], 16)
        text += size
        copies[dp[3]].append((size, instantiating_crate(rp[3])))
    cross = []
    for name, v in copies.items():
        crates = {c for _, c in v}
        if len(v) > 1 and {"product", "sandbox"} <= crates:
            cross.append((sum(s for s, _ in v) - max(s for s, _ in v), name))
    cross.sort(reverse=True)
    total = sum(s for s, _ in cross)
    print(f"functions in .text: {text:,} bytes")
    print(f"second copies of functions both crates instantiate: {total:,} bytes in {len(cross)} functions")
    by = collections.Counter()
    for s, name in cross:
        by[family(name)] += s
    for k, v in by.most_common(25):
        print(f"  {v:>9,}  {k}")
    print(f"largest {rows}:")
    for s, name in cross[:rows]:
        print(f"  {s:>9,}  {name[:200]}")


if __name__ == "__main__":
    main()
