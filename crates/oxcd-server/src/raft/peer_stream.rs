//! A connection between members: plain TCP, or TLS over it (rustls' blocking stream) when the
//! listening member's peer URL is `https://`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};

use crate::config::{ConfigError, is_https, parse_url, url_host_port};
use crate::tls::{ClientTls, ServerTls};

/// Where a peer listens: its address and, for an `https://` URL, the name its certificate must
/// carry (the URL's host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    pub addr: SocketAddr,
    pub tls_name: Option<ServerName<'static>>,
}

impl PeerAddr {
    pub fn parse(url: &str) -> Result<PeerAddr, ConfigError> {
        let addr = parse_url(url)?;
        let tls_name = if is_https(url) {
            let (host, _) = url_host_port(url)?;
            let name = ServerName::try_from(host.to_string())
                .map_err(|e| ConfigError::BadUrl(url.to_string(), e.to_string()))?;
            Some(name)
        } else {
            None
        };
        Ok(PeerAddr { addr, tls_name })
    }
}

/// This member's TLS toward its peers.
#[derive(Default, Clone)]
pub struct PeerTls {
    /// Served on `https://` peer listeners.
    pub server: Option<Arc<ServerTls>>,
    /// Used to dial `https://` peers.
    pub client: Option<Arc<ClientTls>>,
    /// Whether a peer's certificate must name the address it connects from (etcd's check, unless
    /// `--experimental-peer-skip-client-san-verification`).
    pub check_san: bool,
}

pub enum PeerStream {
    Plain(TcpStream),
    Server(Box<StreamOwned<ServerConnection, TcpStream>>),
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl PeerStream {
    /// The TCP connection underneath (for timeouts and shutdown).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            PeerStream::Plain(s) => s,
            PeerStream::Server(s) => &s.sock,
            PeerStream::Client(s) => &s.sock,
        }
    }

    /// Dials `peer`, with TLS if its URL asks for it; the TLS handshake is done within `timeout`.
    pub fn dial(peer: &PeerAddr, tls: &PeerTls, connect_timeout: Duration, timeout: Duration) -> std::io::Result<Self> {
        let tcp = TcpStream::connect_timeout(&peer.addr, connect_timeout)?;
        tcp.set_nodelay(true)?;
        let Some(name) = &peer.tls_name else { return Ok(PeerStream::Plain(tcp)) };
        let client = tls.client.as_ref().ok_or_else(|| {
            std::io::Error::other(format!("peer {} is https but this member has no peer TLS configured", peer.addr))
        })?;
        let conn = ClientConnection::new(client.config(), name.clone()).map_err(std::io::Error::other)?;
        let mut s = StreamOwned::new(conn, tcp);
        handshake(&mut s.conn, &mut s.sock, timeout)?;
        Ok(PeerStream::Client(Box::new(s)))
    }

    /// Accepts a peer's connection, with TLS if `tls` is given; the TLS handshake (and the check
    /// of the peer's certificate) is done within `timeout`.
    pub fn accept(tcp: TcpStream, tls: Option<&PeerTls>, timeout: Duration) -> std::io::Result<Self> {
        tcp.set_nodelay(true)?;
        let Some(tls) = tls else { return Ok(PeerStream::Plain(tcp)) };
        let server = tls.server.as_ref().ok_or_else(|| std::io::Error::other("no peer TLS configured"))?;
        let remote = tcp.peer_addr()?;
        let conn = ServerConnection::new(server.config()).map_err(std::io::Error::other)?;
        let mut s = StreamOwned::new(conn, tcp);
        handshake(&mut s.conn, &mut s.sock, timeout)?;
        if tls.check_san
            && let Some(cert) = s.conn.peer_certificates().and_then(|c| c.first())
        {
            crate::tls::check_san(cert, remote.ip()).map_err(std::io::Error::other)?;
        }
        Ok(PeerStream::Server(Box::new(s)))
    }
}

/// Completes a TLS handshake, giving up after `timeout` without progress.
fn handshake<C, D>(conn: &mut C, sock: &mut TcpStream, timeout: Duration) -> std::io::Result<()>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
{
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    while conn.is_handshaking() {
        conn.complete_io(sock)?;
    }
    sock.set_read_timeout(None)?;
    sock.set_write_timeout(None)?;
    Ok(())
}

impl Read for PeerStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            PeerStream::Plain(s) => s.read(buf),
            PeerStream::Server(s) => s.read(buf),
            PeerStream::Client(s) => s.read(buf),
        }
    }
}

impl Write for PeerStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            PeerStream::Plain(s) => s.write(buf),
            PeerStream::Server(s) => s.write(buf),
            PeerStream::Client(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            PeerStream::Plain(s) => s.flush(),
            PeerStream::Server(s) => s.flush(),
            PeerStream::Client(s) => s.flush(),
        }
    }
}
