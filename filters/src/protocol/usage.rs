//! The gateway's usage reports: the request clawguard's spend poll sends (`sessions.usage` for
//! one UTC day, every agent) and the reading of its answer, as 2026.9.6's handler builds it
//! (`usage-*.mjs`: `startDate`, `totals.{totalCost,totalTokens}`, `sessions[].{key,usage}`,
//! `usage` null for a session with no usage yet). A report that is not in that shape is an
//! error naming the field: spend that cannot be read is not counted as zero.
//!
//! A client's own `sessions.usage` answer passing through clawguard is read too when its
//! request asked for the same figures per session ([`passive_report_day`]): its totals may
//! cover only the sessions that client can see, so only its per-session figures count.

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
    /// The report answers another client's request: its totals need not be the day's (the
    /// gateway limits them to what that client may see), so only its sessions count.
    pub partial: bool,
}

/// The UTC day whose per-session figures a client's `sessions.usage` request asks for, when
/// they are the figures the poll reads (`None`: the answer is not read). As 2026.9.6's handler
/// reads params: `mode: "utc"` (UTC day buckets), `startDate` = `endDate` = `today`, and
/// sessions counted one by one (`groupBy` not `"family"`, `includeHistorical` not `true`,
/// which would fold other sessions' usage into one row). Filters (`key`, `agentId`,
/// `creatorKey`, `limit`, `agentScope`) only choose which sessions are listed.
pub fn passive_report_day<'a>(params: &Value, today: &'a str) -> Option<&'a str> {
    let day = |field: &str| params.get(field).and_then(Value::as_str) == Some(today);
    let one_by_one = params.get("groupBy").and_then(Value::as_str) != Some("family") && params.get("includeHistorical") != Some(&Value::Bool(true));
    (params.get("mode").and_then(Value::as_str) == Some("utc") && day("startDate") && day("endDate") && one_by_one).then_some(today)
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
        Ok(UsageReport { day: day.to_string(), usd: figure(totals, "totals", "totalCost")?, tokens: tokens(totals, "totals")?, sessions, partial: false })
    }

    /// Reads a client's `sessions.usage` answer to a request that asked for UTC day `day`'s
    /// per-session figures: only its sessions count ([`UsageReport::partial`]).
    pub fn from_client_answer(payload: &Value, day: &str) -> Result<UsageReport, String> {
        let report = UsageReport { partial: true, ..UsageReport::from_payload(payload)? };
        if report.day != day {
            return Err(format!("sessions.usage answer covers {}: its request asked for {day}", report.day));
        }
        Ok(report)
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
        assert!(!report.partial);
        let passive = UsageReport::from_client_answer(&payload, "2026-12-03").unwrap();
        assert!(passive.partial && passive.sessions == report.sessions);
        assert!(UsageReport::from_client_answer(&payload, "2026-12-04").unwrap_err().contains("asked for 2026-12-04"));
    }

    #[test]
    fn issue19_a_client_request_is_read_only_when_it_asks_for_todays_figures_per_session() {
        let today = "2026-12-03";
        let base = json!({"startDate": today, "endDate": today, "mode": "utc"});
        assert_eq!(passive_report_day(&base, today), Some(today));
        assert_eq!(passive_report_day(&report_params(today), today), Some(today), "what the poll asks");
        let with = |field: &str, v: Value| {
            let mut p = base.clone();
            p[field] = v;
            passive_report_day(&p, today)
        };
        assert_eq!(with("key", json!("agent:main:x")), Some(today), "a filter only chooses sessions");
        assert_eq!(with("mode", json!("gateway")), None, "days in the gateway's time zone are other buckets");
        assert_eq!(with("mode", json!(" utc")), None);
        assert_eq!(with("startDate", json!("2026-12-02")), None, "more than today");
        assert_eq!(with("endDate", json!("2026-12-02")), None);
        assert_eq!(with("groupBy", json!("family")), None, "family rows fold sessions together");
        assert_eq!(with("includeHistorical", json!(true)), None);
        assert_eq!(with("includeHistorical", json!(false)), Some(today));
        assert_eq!(passive_report_day(&json!({"days": 1, "mode": "utc"}), today), None, "a range of days is not read");
        assert_eq!(passive_report_day(&Value::Null, today), None);
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
