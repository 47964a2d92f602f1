//! One webhook POST: the URL checked once (http or https with a host), the
//! body signed with Standard Webhooks headers when a secret is set, sent
//! with `ureq` under one bounded timeout. Blocking: callers run it on a
//! thread of their own (the daemon's blocking pool, or the CLI).

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How long one POST may take in all (connect, send, answer): a webhook
/// that hangs costs this much, then counts as a failed attempt.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A webhook URL that is http or https and names a host.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    url: String,
    name: String,
}

impl Webhook {
    /// Checks `text` as a webhook URL; the error is one sentence saying
    /// what is wrong with it.
    pub fn parse(text: &str) -> Result<Webhook, String> {
        let text = text.trim();
        let bad = |why: &str| format!("the webhook '{text}' {why}");
        let uri: ureq::http::Uri = text
            .parse()
            .map_err(|_| bad("is not a URL; write it like https://hooks.example.com/tend"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => {
                return Err(bad(&format!("is {other}: only http and https are sent to")))
            }
            None => {
                return Err(bad(
                    "has no scheme: write it like https://hooks.example.com/tend",
                ))
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("names no host"));
        }
        let digest = Sha256::digest(text.as_bytes());
        let name = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Webhook {
            url: text.to_string(),
            name,
        })
    }

    /// The URL, to send to and to show its owner (`tend alert test`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A short hash of the URL: what the ledger records as having taken an
    /// alert, since a webhook URL often is a secret itself.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL with its path, query and user part cut, for logs.
    pub fn shown(&self) -> String {
        match self.url.parse::<ureq::http::Uri>() {
            Ok(u) => format!(
                "{}://{}/…",
                u.scheme_str().unwrap_or("http"),
                u.authority()
                    .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or(""))
            ),
            Err(_) => "a webhook".into(),
        }
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

/// The signing key (`TEND_ALERT_SECRET`): `whsec_` and base64, as
/// Standard Webhooks writes secrets, is the decoded bytes; any other text
/// is its own bytes.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Reads a secret; the error is one sentence.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let key = match text.strip_prefix("whsec_") {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| {
                    "the alert secret starts with whsec_ but the rest is not base64".to_string()
                })?,
            None => text.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err("the alert secret is empty".into());
        }
        Ok(Secret(key))
    }

    /// `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`: the
    /// `webhook-signature` header.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        format!("v1,{sig}")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// One POST of `body` (JSON) to `hook`, with `webhook-id: id`, a
/// timestamp and, with a secret, its signature. `Ok` with the status when
/// the webhook answered (any status), `Err` with why when it did not.
/// Redirects are not followed: the URL configured is the one trusted.
pub fn post(
    hook: &Webhook,
    id: &str,
    body: &str,
    secret: Option<&Secret>,
    timeout: Duration,
) -> Result<u16, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("tend/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let timestamp = tend_ledger::now_ms() / 1000;
    let mut request = agent
        .post(hook.url())
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(s) = secret {
        request = request.header("webhook-signature", s.sign(id, timestamp, body));
    }
    match request.send(body) {
        Ok(answer) => Ok(answer.status().as_u16()),
        Err(ureq::Error::Timeout(_)) => Err(format!(
            "no answer within {}",
            tend_model::format_duration(timeout)
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks reference libraries.
    #[test]
    fn signs_as_the_standard_webhooks_example() {
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            s.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let raw = Secret::parse("plain text").unwrap();
        assert_ne!(raw.sign("a", 1, "{}"), s.sign("a", 1, "{}"));
        assert!(Secret::parse("whsec_***").is_err());
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_are_webhooks() {
        for ok in ["http://127.0.0.1:9/x", "https://hooks.example.com/a?b=c"] {
            assert!(Webhook::parse(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("ftp://example.com/x", "only http and https"),
            ("example.com/x", "write it like https://"),
            ("/relative", "no scheme"),
            ("not a url", "not a URL"),
        ] {
            let e = Webhook::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let w = Webhook::parse("https://user:pw@hooks.example.com/secret-path").unwrap();
        assert_eq!(w.shown(), "https://hooks.example.com/…");
        assert_eq!(w.name().len(), 16);
    }
}
