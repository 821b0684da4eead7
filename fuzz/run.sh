#!/usr/bin/env bash
# Runs the fuzz targets, one after another, each for SECONDS (default 60): `fuzz/run.sh 300`, or
# `fuzz/run.sh 300 path fhir` for some of them. Not part of CI or `cargo test`.
#
# cargo-fuzz wants a nightly compiler for libFuzzer's instrumentation flags; RUSTC_BOOTSTRAP=1
# lets stable rustc accept them, so no nightly toolchain is needed. `-s none`: no sanitizer —
# phigate forbids unsafe code, so the findings are panics (overflow checks are on), hangs and
# assertion failures, and two shared cores do twice the executions without AddressSanitizer.
#
# A run reads the committed seeds in corpus/<target>/ and, for targets with a
# resumed/<target>.tar.gz (the merged corpus of an earlier long run), starts grown/<target>/
# from it; it writes what it finds to
# grown/<target>/ (ignored by git); crashes land in artifacts/<target>/. Each target's log is
# grown/<target>.log (appended to, so resumed runs keep their history), and the last lines
# printed are the figures the README quotes. dicts/<target>.dict, where present, is the
# target's dictionary.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cargo fuzz build -s none

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "grown/$target"
  # An empty grown/ starts from the last long run's corpus, where one is kept (merged,
  # minimised: resumed/<target>.tar.gz), so runs add up across checkouts.
  if [ -z "$(ls -A "grown/$target")" ] && [ -f "resumed/$target.tar.gz" ]; then
    tar -xzf "resumed/$target.tar.gz" -C "grown/$target"
  fi
  echo "== $target: ${seconds}s"
  # A dictionary of the target's keywords (YAML keys, FHIR names), where there is one.
  dict=()
  if [ -f "dicts/$target.dict" ]; then dict=("-dict=dicts/$target.dict"); fi
  # -timeout: an input that takes 10 s is a finding (a hang), not something to wait out.
  if ! cargo fuzz run -s none "$target" "grown/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${dict[@]}" \
      >>"grown/$target.log" 2>&1; then
    failed+=("$target")
  fi
  last=$(grep -E '^#[0-9]+' "grown/$target.log" | tail -n 1 || true)
  summary+=("$(printf '%-11s %5ss  %s' "$target" "$seconds" "$last")")
done

printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed (see grown/<target>.log and artifacts/<target>/): ${failed[*]}" >&2
  exit 1
fi
