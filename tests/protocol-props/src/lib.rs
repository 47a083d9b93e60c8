//! The protocol blocks' parsing code, compiled natively so that `cargo test --workspace` (the
//! property tests here) and the fuzz targets (`fuzz/`) run it: the blocks themselves only build
//! for wasm32-wasip2, in a workspace of their own.
//!
//! These are the blocks' own source files, not copies (as the `syslog_v2` fixture and the
//! benchmark build them): each is pure, with no controller and no I/O, and depends only on
//! `bagpipe-guest`'s JSON types and the parsing crates the block uses.

#[path = "../../../guests/protocols/syslog/src/frame.rs"]
pub mod syslog_frame;

#[path = "../../../guests/protocols/syslog/src/parse.rs"]
pub mod syslog_parse;

#[path = "../../../guests/protocols/http/src/request.rs"]
pub mod http_request;

/// A property test's settings: `cases` cases, and a fast random generator (most of the time of
/// an unoptimised build goes into generating inputs otherwise).
#[cfg(test)]
fn bounded(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngAlgorithm};
    Config { cases, rng_algorithm: RngAlgorithm::XorShift, ..Config::default() }
}

#[cfg(test)]
mod http_props;
#[cfg(test)]
mod syslog_frame_props;
#[cfg(test)]
mod syslog_parse_props;
#[cfg(test)]
mod syslog_variants;
