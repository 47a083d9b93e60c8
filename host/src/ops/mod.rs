//! Operating a host: stats, the admin endpoint, and building guests for `run --build` and `dev`.

pub mod admin;
pub(crate) mod guest_build;
pub(crate) mod histogram;
pub mod stats;
