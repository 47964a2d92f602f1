//! What a request must be before the daemon looks at it, so that no web
//! page can drive the API (issue 8). A page in the operator's browser can
//! send "simple" cross-origin requests without asking first (a `text/plain`
//! or form POST), and through DNS rebinding it can even make them
//! same-origin under a name of its own. So, in this order:
//!
//! 1. `Host` must name this daemon: its listen address (`localhost` too
//!    when that is loopback) or a configured name ([`AllowedHosts`]). A
//!    rebound name is answered 421 Misdirected Request.
//! 2. `Origin`, when sent, must be the daemon's own (`http://` or
//!    `https://` and an allowed host): the dashboard is served by the daemon
//!    itself, so any other page is refused with 403.
//! 3. `OPTIONS` is refused (405) without any CORS header: no preflight is
//!    ever granted, so a browser never sends a page's non-simple request.
//! 4. A body, and the type a bodiless POST names, must be
//!    `application/json` (415 otherwise), which no simple request can
//!    declare; a declared length above the limit is refused at once with
//!    413, before a byte of it is read.
//!
//! Then the token is checked ([`crate::auth`]), and only then is the body
//! read ([`read_body`]): within the body timeout (408) and the size limit
//! (413), so an unauthenticated client never makes the daemon buffer one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::{ApiError, AppState, Error};

/// Largest request body accepted.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// The names the daemon answers to, as `Host` values (and, after `http://`
/// or `https://`, as `Origin` values): its listen address with its port,
/// `localhost` with that port when it listens on loopback (any IP literal
/// when it listens on every address: no DNS answer can rebind one), and
/// each configured name. A configured `name` matches with the listen port
/// or without a port (behind a proxy); `name:port` matches only that port.
/// Names compare case-insensitively.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    listen: SocketAddr,
    extra: Vec<(String, Option<u16>)>,
}

impl AllowedHosts {
    /// The names of a daemon listening on `listen`, plus `extra`; an extra
    /// entry that is not a host name is an error naming it.
    pub fn new(listen: SocketAddr, extra: &[String]) -> Result<AllowedHosts, Error> {
        let mut names = Vec::new();
        for entry in extra {
            let bad = || {
                Error::Setting(format!(
                    "TEND_ALLOWED_HOSTS: '{entry}' is not a host name: write it like tend.example or tend.example:7757"
                ))
            };
            let (name, port) = split_host(entry.trim()).ok_or_else(bad)?;
            let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
            if name.is_empty() || !name.chars().all(plain) {
                return Err(bad());
            }
            names.push((name.to_ascii_lowercase(), port));
        }
        Ok(AllowedHosts {
            listen,
            extra: names,
        })
    }

    /// Whether `host` (a `Host` header value) names this daemon.
    pub fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        let name = name.to_ascii_lowercase();
        let own_port = self.listen.port();
        // Browsers leave out only the scheme's default port.
        if port == Some(own_port) || (port.is_none() && own_port == 80) {
            let ip = self.listen.ip();
            if let Ok(given) = name.parse::<IpAddr>() {
                if given == ip || ip.is_unspecified() {
                    return true;
                }
            }
            if name == "localhost" && (ip.is_loopback() || ip.is_unspecified()) {
                return true;
            }
        }
        self.extra.iter().any(|(n, p)| {
            *n == name
                && match p {
                    Some(p) => port == Some(*p),
                    None => port.is_none() || port == Some(own_port),
                }
        })
    }

    /// Whether `origin` (an `Origin` header value) is a page of this daemon.
    pub fn allows_origin(&self, origin: &str) -> bool {
        let rest = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        rest.is_some_and(|h| !h.contains('/') && self.allows(h))
    }

    /// The names, for error messages.
    fn describe(&self) -> String {
        let mut names = vec![self.listen.to_string()];
        if self.listen.ip().is_loopback() {
            names.push(format!("localhost:{}", self.listen.port()));
        }
        for (n, p) in &self.extra {
            names.push(p.map_or_else(|| n.clone(), |p| format!("{n}:{p}")));
        }
        names.join(", ")
    }
}

/// `name[:port]` or `[v6][:port]` → (name without brackets, port).
fn split_host(h: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = h.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return match after {
            "" => Some((ip, None)),
            p => Some((ip, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match h.rsplit_once(':') {
        Some((n, p)) => Some((n, Some(p.parse().ok()?))),
        None => Some((h, None)),
    }
}

/// Steps 1–4 of the module doc: refuses with a JSON 4xx, or passes the
/// request on untouched (its body still unread).
pub async fn guard(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let allowed = state.allowed_hosts();
    check_host(allowed, &req)?;
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("?");
        if !allowed.allows_origin(origin) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "requests from the page at '{}' are refused: the API serves only its own origin",
                    shorten(origin)
                ),
            ));
        }
    }
    if req.method() == Method::OPTIONS {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "OPTIONS is not served: the API grants no cross-origin access",
        ));
    }
    check_content_type(&req)?;
    if req.body().size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    Ok(next.run(req).await)
}

/// Every `Host` the request names (the header, and the authority of an
/// absolute-form target) must be allowed, and it must name one.
fn check_host(allowed: &AllowedHosts, req: &Request) -> Result<(), ApiError> {
    let headers = req.headers().get_all(header::HOST);
    let mut named: Vec<&str> = headers
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .collect();
    if let Some(a) = req.uri().authority() {
        named.push(a.as_str());
    }
    if named.is_empty() {
        return Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!("the request names no Host: send Host: {}", allowed.listen),
        ));
    }
    match named.iter().find(|h| !allowed.allows(h)) {
        None => Ok(()),
        Some(h) => Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host '{}' is not a name of this daemon (it answers to {}); add the name to TEND_ALLOWED_HOSTS if it is one",
                shorten(h),
                allowed.describe()
            ),
        )),
    }
}

/// A request that has a body, or a bodiless one other than GET and HEAD
/// that names a type (a simple POST may be empty), says JSON.
fn check_content_type(req: &Request) -> Result<(), ApiError> {
    let declared = req.headers().get(header::CONTENT_TYPE);
    let has_body = !req.body().is_end_stream();
    let reads_nothing = matches!(*req.method(), Method::GET | Method::HEAD);
    match declared {
        None if !has_body => Ok(()),
        Some(_) if !has_body && reads_nothing => Ok(()),
        Some(v) if is_json(v) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body has no Content-Type: send it as JSON with Content-Type: application/json",
        )),
        Some(v) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type '{}' is refused: send the body as JSON with Content-Type: application/json",
                shorten(v.to_str().unwrap_or("?"))
            ),
        )),
    }
}

/// `application/json`, with parameters or not (`; charset=utf-8`).
fn is_json(v: &HeaderValue) -> bool {
    let v = v.to_str().unwrap_or("");
    let essence = v.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {MAX_BODY} bytes"),
    )
}

/// Header text quoted back in an error, cut so that a refusal stays short.
fn shorten(s: &str) -> String {
    s.chars().take(100).collect()
}

/// Reads the whole body (at most [`MAX_BODY`] bytes) within the body
/// timeout, after the token was checked, so that no handler ever waits on
/// a slow client: 408 when it does not arrive in time, 413 when it is too
/// large.
pub async fn read_body(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if req.body().is_end_stream() {
        return Ok(next.run(req).await);
    }
    let timeout = state.config().limits.body_timeout;
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Ok(Err(_)) => return Err(ApiError::bad_request("the body could not be read")),
        Err(_) => return Err(slow_body(timeout)),
    };
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

fn slow_body(timeout: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the body did not arrive within {}",
            tend_model::format_duration(timeout)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, extra: &[&str]) -> AllowedHosts {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        AllowedHosts::new(listen.parse().unwrap(), &extra).unwrap()
    }

    #[test]
    fn a_loopback_daemon_answers_to_its_address_and_localhost_only() {
        let h = hosts("127.0.0.1:7757", &[]);
        for ok in ["127.0.0.1:7757", "localhost:7757", "LOCALHOST:7757"] {
            assert!(h.allows(ok), "{ok}");
        }
        for no in [
            "evil.example:7757",
            "evil.example",
            "127.0.0.1",
            "localhost",
            "127.0.0.1:7758",
            "127.0.0.2:7757",
            "localhost.:7757",
            "",
            "[::1]:7757",
        ] {
            assert!(!h.allows(no), "{no}");
        }
        assert!(h.allows_origin("http://localhost:7757"));
        for no in [
            "null",
            "http://evil.example",
            "http://localhost:7757/x",
            "localhost:7757",
        ] {
            assert!(!h.allows_origin(no), "{no}");
        }
    }

    #[test]
    fn configured_names_match_with_the_listen_port_or_their_own() {
        let h = hosts("[::1]:7757", &["Tend.Example", "proxy.example:443"]);
        for ok in [
            "[::1]:7757",
            "localhost:7757",
            "tend.example:7757",
            "tend.example",
            "proxy.example:443",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for no in ["tend.example:1", "proxy.example", "proxy.example:7757"] {
            assert!(!h.allows(no), "{no}");
        }
        assert!(h.allows_origin("https://proxy.example:443"));
        for bad in ["http://x", "a b", "", "x/y", "x:port"] {
            assert!(
                AllowedHosts::new("127.0.0.1:1".parse().unwrap(), &[bad.into()]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_daemon_on_every_address_answers_to_any_ip_literal_but_no_other_name() {
        let h = hosts("0.0.0.0:7757", &[]);
        assert!(h.allows("10.1.2.3:7757"));
        assert!(h.allows("localhost:7757"));
        assert!(!h.allows("10.1.2.3:80"));
        assert!(!h.allows("rebound.example:7757"));
    }
}
