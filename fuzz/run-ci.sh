#!/usr/bin/env bash
# Fuzzes every target for a short while from the committed seeds; exits non-zero if any target
# finds a crash, a timeout or an out-of-memory (its input is then under fuzz/artifacts/<target>/).
#
#   fuzz/run-ci.sh                 # every target, 60 s each
#   FUZZ_SECONDS=600 fuzz/run-ci.sh http
#
# Needs a nightly toolchain (sanitizers); installs cargo-fuzz if it is missing. One libFuzzer
# process at a time, so it uses one core.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-60}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(decode reassembly http record proxy h2)
fi

if ! cargo +"$toolchain" --version >/dev/null 2>&1; then
    rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# libfuzzer-sys compiles libFuzzer (C++); a machine with gcc alone may only have clang++.
if [ -z "${CXX:-}" ] && ! command -v c++ >/dev/null 2>&1; then
    for cxx in clang++ clang++-19; do
        if command -v "$cxx" >/dev/null 2>&1; then
            export CXX="$cxx"
            break
        fi
    done
fi

# Seeds first, without libFuzzer: they must decode to what they mean and pass every check.
cargo +"$toolchain" test --locked --quiet

failed=()
for t in "${targets[@]}"; do
    # Found inputs accumulate in the (ignored) corpus directory; the seeds are only read. A
    # corpus kept from a long run (corpora/, minimized) starts it where that run got to.
    mkdir -p "corpus/$t"
    if [ -f "corpora/$t.tar.gz" ] && [ -z "$(ls -A "corpus/$t")" ]; then
        tar -C corpus -xzf "corpora/$t.tar.gz"
    fi
    echo "== fuzz $t for ${seconds}s"
    if ! cargo +"$toolchain" fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$t")
        ls -1 "artifacts/$t" 2>/dev/null || true
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: findings in: ${failed[*]} (inputs under fuzz/artifacts/; reproduce with" \
        "cargo +$toolchain fuzz run <target> <input>)" >&2
    exit 1
fi
echo "fuzz: no findings in ${targets[*]}"
