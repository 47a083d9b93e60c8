//! Operating a host: the admin endpoint, the feed of what happens (events, and log lines for the
//! server), and building guests for `run --build` and `dev`.

pub mod admin;
pub mod feed;
#[cfg(test)]
mod feed_tests;
pub(crate) mod guest_build;
pub(crate) mod log_publisher;
