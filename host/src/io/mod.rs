//! The outside world a block reaches through the host: sockets (`net`) and the message server
//! (`server`).

pub(crate) mod net;
pub(crate) mod server;
