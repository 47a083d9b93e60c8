# Contributor recipes. `just` is optional: every recipe is a plain command you can run yourself.

# List the recipes.
default:
    @just --list

# Build the example blocks and run the example pipeline (the README's first command).
example:
    rustup target add wasm32-wasip2 && cargo run -p bagpipe -- run examples/pipeline --build guests

# Run every test (the README's second command; CI runs it too).
test:
    rustup target add wasm32-wasip2 && cargo test --workspace

# Build every guest block for wasm32-wasip2.
guests:
    cargo build --manifest-path guests/Cargo.toml --target wasm32-wasip2 --release

# Check the example's manifest and components without running them.
check-example: guests
    cargo run -p bagpipe -- check examples/pipeline

# Format host and guests.
fmt:
    cargo fmt --all
    cd guests && cargo fmt --all

# Lint host and guests as CI does.
lint:
    cargo clippy --workspace --all-targets -- -D warnings
    cd guests && cargo clippy --target wasm32-wasip2 --all-targets -- -D warnings

# The pipeline benchmark: bagpipe blocks against native tokio tasks (release build).
bench:
    cargo bench -p bagpipe --bench pipeline

# libFuzzer leaves what crashed or hung in fuzz/artifacts/<target>/. Not part of CI.
# Run every `cargo fuzz` target in fuzz/ for `seconds` each (`just fuzz 300`); fails on a crash or hang.
fuzz seconds="30":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd fuzz
    # cargo fuzz passes nightly flags to rustc; the pinned toolchain is stable.
    export RUSTC_BOOTSTRAP=1
    for target in $(cargo fuzz list); do
        # New inputs go to target/corpus/, not to the corpus kept in the repo (read as seeds).
        mkdir -p "target/corpus/$target"
        cargo fuzz run "$target" "target/corpus/$target" "corpus/$target" -- -max_total_time={{seconds}} -timeout=10
    done

# Everything CI does.
ci:
    bash .ci/run
