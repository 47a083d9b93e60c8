//! `listen` grants: `tcp://IP:PORT` and `udp://IP:PORT`.

/// A socket the host listens on for a block, from a `listen` grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The address to bind (port 0: any free port).
    pub addr: std::net::SocketAddr,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `tcp://`
    Tcp,
    /// `udp://`
    Udp,
}

impl Listen {
    /// Reads `tcp://ip:port` or `udp://ip:port`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (protocol, rest) = if let Some(rest) = text.strip_prefix("tcp://") {
            (Protocol::Tcp, rest)
        } else if let Some(rest) = text.strip_prefix("udp://") {
            (Protocol::Udp, rest)
        } else {
            return Err(format!("`{text}` is not tcp://IP:PORT or udp://IP:PORT"));
        };
        let addr = rest.parse().map_err(|_| format!("`{rest}` in `{text}` is not an IP:PORT address"))?;
        Ok(Self { protocol, addr })
    }

    /// The grant written as a URL, with `addr` as the address.
    pub fn url(protocol: Protocol, addr: std::net::SocketAddr) -> String {
        match protocol {
            Protocol::Tcp => format!("tcp://{addr}"),
            Protocol::Udp => format!("udp://{addr}"),
        }
    }
}
