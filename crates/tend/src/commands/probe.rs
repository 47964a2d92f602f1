//! Asking the daemon named in `daemon.json` whether it answers. A file
//! naming a live process proves neither that the process is a daemon nor
//! that it serves (issue 8), so `tend health` and `tend doctor` send it
//! one `GET /api/v1/health`. A plain request over a `TcpStream`, with short
//! timeouts, so that the CLI needs no HTTP client for it.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use tend_supervisor::Home;

/// How long the daemon has to accept and then to answer.
const PATIENCE: Duration = Duration::from_secs(5);

/// The HTTP status the daemon at `listen` answers `GET /api/v1/health`
/// with, or why it gave none. The token (from `TEND_TOKEN` or the home's
/// token file) is sent when there is one; a 401 still proves the daemon
/// answers.
pub fn health(listen: &str, home: &Home) -> Result<u16, String> {
    let mut addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("'{listen}' is not an address"))?;
    // A daemon on every address is reached through loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let failed = |e: std::io::Error| e.to_string();
    let mut s = TcpStream::connect_timeout(&addr, PATIENCE).map_err(failed)?;
    s.set_read_timeout(Some(PATIENCE)).map_err(failed)?;
    s.set_write_timeout(Some(PATIENCE)).map_err(failed)?;
    let auth = token(home)
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET /api/v1/health HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(failed)?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < head.len() && !head[..got].contains(&b'\n') {
        match s.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(failed(e)),
        }
    }
    let line = String::from_utf8_lossy(&head[..got]);
    line.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "it did not answer in HTTP".to_string())
}

/// The token a client of this home would send, if any.
fn token(home: &Home) -> Option<String> {
    std::env::var(tend_server::TOKEN_VAR)
        .ok()
        .or_else(|| {
            tend_supervisor::read_small(&home.root().join("token"))
                .ok()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
        })
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
}
