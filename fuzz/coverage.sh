#!/usr/bin/env bash
# How much of phigate's own source a corpus reaches, apart from its dependencies:
# `fuzz/coverage.sh config DIR...` runs every input of the corpus DIRs through a
# coverage-instrumented build of the target (`cargo fuzz coverage`) and prints the regions and
# lines of src/ covered, and those of the YAML parser (serde-saphyr) for comparison. libFuzzer's
# own `cov` counts edges in everything linked, dependencies included; comparing this report for
# an earlier corpus and a later one shows whether the later run still reached new phigate code.
# Needs the llvm-tools component (`rustup component add llvm-tools-preview`, installed when
# missing). Not part of CI or `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"
target="$1"
shift
export RUSTC_BOOTSTRAP=1
llvm="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
if [ ! -x "$llvm/llvm-cov" ]; then
  rustup component add llvm-tools-preview
fi
# A snapshot: a fuzzer still running renames and removes inputs under the original.
snapshot="$(mktemp -d)"
trap 'rm -rf "$snapshot"' EXIT
for dir in "$@"; do cp -r "$dir"/. "$snapshot"/ 2>/dev/null || true; done
cargo fuzz coverage -s none "$target" "$snapshot" >/dev/null 2>&1
binary="target/$(rustc -vV | sed -n 's/^host: //p')/coverage/$(rustc -vV | sed -n 's/^host: //p')/release/$target"
"$llvm/llvm-cov" report "$binary" -instr-profile="coverage/$target/coverage.profdata" 2>/dev/null |
  awk -v inputs="$(ls "$snapshot" | wc -l)" -v src="$(cd .. && pwd)/src/" '
    # llvm-cov drops the prefix all paths share, here the leading slash.
    index("/" $1, src) == 1 { r += $2; rm += $3; l += $8; lm += $9 }
    $1 ~ /serde-saphyr/ { yr += $2; yrm += $3; yl += $8; ylm += $9 }
    END {
      printf "%d inputs\n", inputs
      printf "phigate src/:  regions %d of %d, lines %d of %d\n", r - rm, r, l - lm, l
      printf "serde-saphyr:  regions %d of %d, lines %d of %d\n", yr - yrm, yr, yl - ylm, yl
    }'
