//! The gateway's usage reports: the request clawguard's spend poll sends (`sessions.usage` for
//! one UTC day, every agent) and the reading of its answer, as 2026.9.6's handler builds it
//! (`usage-*.mjs`: `startDate`, `totals.{totalCost,totalTokens}`, `sessions[].{key,usage}`,
//! `usage` null for a session with no usage yet). A report that is not in that shape is an
//! error naming the field: spend that cannot be read is not counted as zero.

use serde_json::{json, Value};

/// The most sessions one report lists (the handler caps `limit` nowhere; its totals cover
/// every session whether listed or not).
pub const REPORT_SESSION_LIMIT: u64 = 1000;

/// What one session cost so far on the report's day.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionUsage {
    /// The canonical session key (`agent:<agent>:<rest>`).
    pub key: String,
    /// Money, USD.
    pub usd: f64,
    /// Tokens.
    pub tokens: u64,
}

/// One usage report: every session's cost so far on one UTC day, and the day's totals.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageReport {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The day's total money over every session (listed or not).
    pub usd: f64,
    /// The day's total tokens.
    pub tokens: u64,
    /// The sessions listed, with their cost.
    pub sessions: Vec<SessionUsage>,
}

/// The params of the poll's `sessions.usage` request for UTC day `day` (`YYYY-MM-DD`).
pub fn report_params(day: &str) -> Value {
    json!({ "startDate": day, "endDate": day, "mode": "utc", "agentScope": "all", "limit": REPORT_SESSION_LIMIT })
}

fn figure(v: &Value, at: &str, field: &str) -> Result<f64, String> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(0.0),
        Some(n) => n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).ok_or_else(|| format!("{at}.{field} is {n}: expected a number of at least 0")),
    }
}

fn tokens(v: &Value, at: &str) -> Result<u64, String> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked finite and >= 0
    figure(v, at, "totalTokens").map(|t| t.round() as u64)
}

impl UsageReport {
    /// Reads a `sessions.usage` answer's payload.
    pub fn from_payload(payload: &Value) -> Result<UsageReport, String> {
        let day = payload.get("startDate").and_then(Value::as_str).ok_or("sessions.usage answer has no startDate string")?;
        if payload.get("endDate").and_then(Value::as_str) != Some(day) {
            return Err(format!("sessions.usage answer covers {day} to {}: expected one day", payload.get("endDate").unwrap_or(&Value::Null)));
        }
        let totals = payload.get("totals").filter(|t| t.is_object()).ok_or("sessions.usage answer has no totals object")?;
        let rows = payload.get("sessions").and_then(Value::as_array).ok_or("sessions.usage answer has no sessions array")?;
        let mut sessions = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let at = format!("sessions[{i}]");
            let key = row.get("key").and_then(Value::as_str).ok_or_else(|| format!("{at}.key is not a string"))?;
            let usage = match row.get("usage") {
                None | Some(Value::Null) => continue,
                Some(u) if u.is_object() => u,
                Some(other) => return Err(format!("{at}.usage is {other}: expected an object or null")),
            };
            let at = format!("{at}.usage");
            sessions.push(SessionUsage { key: key.to_string(), usd: figure(usage, &at, "totalCost")?, tokens: tokens(usage, &at)? });
        }
        Ok(UsageReport { day: day.to_string(), usd: figure(totals, "totals", "totalCost")?, tokens: tokens(totals, "totals")?, sessions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue19_a_report_in_the_gateway_shape_is_read() {
        // Shape of a real 2026.9.6 answer (trimmed): one session with usage, one without.
        let payload = json!({
            "startDate": "2026-12-03", "endDate": "2026-12-03",
            "sessions": [
                {"key": "agent:main:main", "usage": {"input": 1000, "output": 500, "totalTokens": 1500, "totalCost": 0.02}},
                {"key": "agent:main:idle", "usage": null}
            ],
            "totals": {"totalTokens": 1700, "totalCost": 0.025}
        });
        let report = UsageReport::from_payload(&payload).unwrap();
        assert_eq!(report.day, "2026-12-03");
        assert_eq!((report.usd, report.tokens), (0.025, 1700));
        assert_eq!(report.sessions, vec![SessionUsage { key: "agent:main:main".into(), usd: 0.02, tokens: 1500 }]);
    }

    #[test]
    fn issue19_a_report_that_cannot_be_read_is_an_error_naming_the_field() {
        let base = json!({"startDate": "2026-12-03", "endDate": "2026-12-03", "sessions": [], "totals": {}});
        assert!(UsageReport::from_payload(&base).is_ok());
        for (bad, needle) in [
            (json!({"endDate": "2026-12-03", "sessions": [], "totals": {}}), "no startDate"),
            (json!({"startDate": "2026-12-03", "endDate": "2026-12-04", "sessions": [], "totals": {}}), "expected one day"),
            (json!({"startDate": "2026-12-03", "endDate": "2026-12-03", "totals": {}}), "no sessions array"),
            (json!({"startDate": "2026-12-03", "endDate": "2026-12-03", "sessions": [], "totals": {"totalCost": "1"}}), "totals.totalCost"),
            (json!({"startDate": "2026-12-03", "endDate": "2026-12-03", "sessions": [{"key": 1, "usage": null}], "totals": {}}), "sessions[0].key"),
            (json!({"startDate": "2026-12-03", "endDate": "2026-12-03", "sessions": [{"key": "a", "usage": {"totalCost": -1}}], "totals": {}}), "sessions[0].usage.totalCost"),
            (json!({"startDate": "2026-12-03", "endDate": "2026-12-03", "sessions": [{"key": "a", "usage": 3}], "totals": {}}), "sessions[0].usage is 3"),
        ] {
            let err = UsageReport::from_payload(&bad).unwrap_err();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
    }
}
