//! Operating a host: the admin endpoint and building guests for `run --build` and `dev`.

pub mod admin;
#[cfg(test)]
mod admin_props;
pub(crate) mod guest_build;
