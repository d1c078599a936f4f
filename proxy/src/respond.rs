//! clawguard's own answers to HTTP requests: JSON errors in the gateway's error shape, with the
//! security headers of an API answer, and the application of header plans to pingora's headers.

use crate::shared::Shared;
use bytes::Bytes;
use clawguard_filters::http::{HeaderOp, HttpRefusal, Known, NoHeaders, UpstreamHeaders};
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Answers a request with a JSON error in the gateway's HTTP error shape.
pub async fn respond_error(session: &mut Session, status: u16, kind: &str, message: &str) -> Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": { "message": message, "type": kind, "source": "clawguard" } }))
        .expect("a JSON value always serialises");
    respond_json(session, status, body, None, None).await
}

/// A 429 in the gateway's error shape (`rate_limited`) with `Retry-After` in whole seconds
/// (rounded up) from the limiter's own hint.
pub async fn respond_rate_limited(session: &mut Session, limited: &clawguard_filters::limits::Limited, message: &str) -> Result<()> {
    let seconds = u64::try_from(limited.retry_after.as_millis().div_ceil(1000)).unwrap_or(u64::MAX).max(1);
    let body = serde_json::to_vec(&serde_json::json!({ "error": { "message": message, "type": "rate_limited", "source": "clawguard" } }))
        .expect("a JSON value always serialises");
    respond_json(session, 429, body, Some(seconds), None).await
}

/// Answers with clawguard's refusal of a request.
pub async fn respond_refusal(session: &mut Session, shared: &Shared, refusal: &HttpRefusal) -> Result<()> {
    respond_json(session, refusal.status, refusal.body(), refusal.retry_after_seconds, Some(shared)).await
}

async fn respond_json(session: &mut Session, status: u16, body: Vec<u8>, retry_after: Option<u64>, shared: Option<&Shared>) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(8))?;
    if let Some(seconds) = retry_after {
        resp.insert_header(http::header::RETRY_AFTER, seconds.to_string())?;
    }
    resp.insert_header(http::header::CONTENT_TYPE, "application/json; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CONNECTION, "close")?;
    if let Some(shared) = shared {
        // clawguard's own answers get the API headers.
        let tls = session.digest().and_then(|d| d.ssl_digest.as_ref()).is_some();
        let path = session.req_header().uri.path().to_string();
        let ops = shared.live().guard.http.headers.plan(None, &path, tls, &NoHeaders);
        apply_header_ops(&mut resp, ops)?;
    }
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(Bytes::from(body)), true).await
}

/// The `HeaderName` of each known header, indexed by `Known as usize` (built at compile time,
/// so a lookup parses nothing).
static KNOWN_NAMES: [HeaderName; 11] = [
    header::SERVER,
    HeaderName::from_static("x-powered-by"),
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::X_CONTENT_TYPE_OPTIONS,
    header::REFERRER_POLICY,
    header::STRICT_TRANSPORT_SECURITY,
    HeaderName::from_static("cross-origin-resource-policy"),
    header::X_FRAME_OPTIONS,
    header::CONTENT_SECURITY_POLICY,
    HeaderName::from_static("cross-origin-opener-policy"),
];

fn known_name(header: Known) -> &'static HeaderName {
    &KNOWN_NAMES[header as usize]
}

/// A response head as a header plan reads it. A value that is not visible ASCII reads as absent,
/// so a built-in header replaces it.
pub struct ResponseView<'a>(pub &'a ResponseHeader);

impl UpstreamHeaders for ResponseView<'_> {
    fn known(&self, header: Known) -> Option<&str> {
        self.0.headers.get(known_name(header)).and_then(|v| v.to_str().ok())
    }
    fn named(&self, name: &str) -> Option<&str> {
        self.0.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Applies a header plan (`filters::http::HeaderRules::plan`) to a response head.
///
/// A plan that adds headers is applied to the head's `http::HeaderMap` directly, with capacity
/// reserved once and the built-in names and values taken as they are (static, nothing parsed or
/// copied). pingora's own insert would parse each name again and write it to a second map that
/// keeps the upstream's spelling of header names; that map is given up, so names go out in
/// lowercase, which HTTP/1.1 and HTTP/2 read the same (RFC 9110 §5.1). The status and a custom
/// reason phrase are kept.
pub fn apply_header_ops(resp: &mut ResponseHeader, ops: Vec<HeaderOp>) -> Result<()> {
    let adds = ops.iter().filter(|op| matches!(op, HeaderOp::SetKnown(..) | HeaderOp::DefaultKnown(..) | HeaderOp::Set(..) | HeaderOp::Append(..))).count();
    if adds == 0 {
        for op in &ops {
            match op {
                HeaderOp::RemoveKnown(header) => {
                    resp.remove_header(known_name(*header));
                }
                HeaderOp::Remove(name) => {
                    resp.remove_header(name.as_ref());
                }
                _ => {}
            }
        }
        return Ok(());
    }
    let taken = std::mem::replace(resp, ResponseHeader::from(http::Response::new(()).into_parts().0));
    let reason = taken.get_reason_phrase().filter(|r| Some(*r) != taken.status.canonical_reason()).map(str::to_owned);
    let mut parts = http::response::Parts::from(taken);
    parts.headers.reserve(adds);
    let applied = apply_to_map(&mut parts.headers, ops);
    let mut rebuilt = ResponseHeader::from(parts);
    rebuilt.set_reason_phrase(reason.as_deref())?;
    *resp = rebuilt;
    applied
}

fn apply_to_map(headers: &mut http::HeaderMap, ops: Vec<HeaderOp>) -> Result<()> {
    use std::borrow::Cow;
    let value = |text: Cow<'static, str>| -> Result<HeaderValue> {
        match text {
            Cow::Borrowed(v) => HeaderValue::from_maybe_shared(Bytes::from_static(v.as_bytes())),
            Cow::Owned(v) => HeaderValue::from_maybe_shared(Bytes::from(v)),
        }
        .or_err(InvalidHTTPHeader, "invalid header value in a header rule")
    };
    let name = |text: &str| HeaderName::from_bytes(text.as_bytes()).or_err(InvalidHTTPHeader, "invalid header name in a header rule");
    for op in ops {
        match op {
            HeaderOp::SetKnown(header, v) => {
                headers.insert(known_name(header).clone(), value(v)?);
            }
            HeaderOp::DefaultKnown(header, v) => {
                if let http::header::Entry::Vacant(slot) = headers.entry(known_name(header)) {
                    slot.insert(value(v)?);
                }
            }
            HeaderOp::RemoveKnown(header) => {
                headers.remove(known_name(header));
            }
            HeaderOp::Set(n, v) => {
                headers.insert(name(&n)?, value(v)?);
            }
            HeaderOp::Append(n, v) => {
                headers.append(name(&n)?, value(v)?);
            }
            HeaderOp::Remove(n) => {
                headers.remove(n.as_ref());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_adds_and_removes_and_keeps_the_status_reason_and_upstream_headers() {
        let mut resp = ResponseHeader::build(299, Some(2)).unwrap();
        resp.set_reason_phrase(Some("Fine Indeed")).unwrap();
        resp.insert_header("X-Upstream", "kept").unwrap();
        resp.insert_header("Server", "gateway").unwrap();
        let ops = vec![
            HeaderOp::RemoveKnown(Known::Server),
            HeaderOp::SetKnown(Known::ContentTypeOptions, "nosniff".into()),
            HeaderOp::Set("x-rule".into(), String::from("set").into()),
            HeaderOp::Append("x-upstream".into(), "added".into()),
        ];
        apply_header_ops(&mut resp, ops).unwrap();
        assert_eq!(resp.status.as_u16(), 299);
        assert_eq!(resp.get_reason_phrase(), Some("Fine Indeed"));
        assert!(resp.headers.get("server").is_none());
        assert_eq!(resp.headers.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(resp.headers.get("x-rule").unwrap(), "set");
        let upstream: Vec<_> = resp.headers.get_all("x-upstream").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(upstream, ["kept", "added"]);
        let mut wire = Vec::new();
        resp.header_to_h1_wire(&mut wire);
        assert!(String::from_utf8(wire).unwrap().contains("x-content-type-options: nosniff\r\n"));
    }

    #[test]
    fn an_invalid_value_fails_and_leaves_the_head_whole() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("X-Upstream", "kept").unwrap();
        let ops = vec![HeaderOp::Set("x-bad".into(), String::from("a\nb").into())];
        assert!(apply_header_ops(&mut resp, ops).is_err());
        assert_eq!(resp.status.as_u16(), 200);
        assert_eq!(resp.headers.get("x-upstream").unwrap(), "kept");
    }

    #[test]
    fn every_known_header_has_its_own_name() {
        for header in Known::ALL {
            assert_eq!(known_name(header).as_str(), header.name());
        }
    }
}
