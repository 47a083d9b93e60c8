//! Operating a host: the admin endpoint and building guests for `run --build` and `dev`.

pub mod admin;
pub(crate) mod guest_build;
