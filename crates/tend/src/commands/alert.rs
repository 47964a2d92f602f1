//! `tend alert test`: one test alert to every configured webhook, sent
//! directly (not through the ledger's outbox), and what each answered.

use anyhow::Result;

use crate::config::Config;
use crate::output;

/// Sends the test alerts; exit 0 when every webhook answered 2xx, else 1.
/// No webhook configured is a usage error (exit 2).
pub fn test(json: bool) -> Result<i32> {
    let config = Config::load()?.alerts.resolve()?;
    if config.webhooks.is_empty() {
        return Err(crate::usage(
            "no webhook is configured: set TEND_ALERT_WEBHOOKS (comma-separated http or https URLs) or alert_webhooks in config.toml",
        ));
    }
    let answers = tend_server::alerts::send_test(&config);
    let ok = |a: &Result<u16, String>| matches!(a, Ok(200..=299));
    if json {
        let rows: Vec<serde_json::Value> = answers
            .iter()
            .map(|a| {
                serde_json::json!({
                    "webhook": a.webhook.shown(),
                    "ok": ok(&a.answer),
                    "status": a.answer.as_ref().ok(),
                    "error": a.answer.as_ref().err(),
                })
            })
            .collect();
        output::json(&rows)?;
    } else {
        for (i, a) in answers.iter().enumerate() {
            let said = match &a.answer {
                Ok(code) if ok(&a.answer) => format!("ok    answered {code}"),
                Ok(code) => format!("fail  answered {code}"),
                Err(why) => format!("fail  {why}"),
            };
            say!(
                "{said}  (webhook {} of {}: {})",
                i + 1,
                answers.len(),
                output::esc(&a.webhook.shown())
            )?;
        }
    }
    Ok(if answers.iter().all(|a| ok(&a.answer)) {
        0
    } else {
        1
    })
}
