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
        let ops = shared.guard.http.headers.plan(None, &path, tls, &NoHeaders);
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

/// Applies a header plan (`filters::http::HeaderRules::plan`) to a response head. Built-in
/// values are static text, turned into a `HeaderValue` without a copy.
pub fn apply_header_ops(resp: &mut ResponseHeader, ops: Vec<HeaderOp>) -> Result<()> {
    use std::borrow::Cow;
    let value = |text: Cow<'static, str>| -> Result<HeaderValue> {
        match text {
            Cow::Borrowed(v) => HeaderValue::try_from(v),
            Cow::Owned(v) => HeaderValue::try_from(v),
        }
        .or_err(InvalidHTTPHeader, "invalid header value in a header rule")
    };
    for op in ops {
        match op {
            HeaderOp::SetKnown(header, v) => resp.insert_header(header.name(), value(v)?)?,
            HeaderOp::RemoveKnown(header) => {
                if resp.headers.contains_key(known_name(header)) {
                    resp.remove_header(known_name(header));
                }
            }
            HeaderOp::Set(Cow::Borrowed(name), v) => resp.insert_header(name, value(v)?)?,
            HeaderOp::Set(Cow::Owned(name), v) => resp.insert_header(name, value(v)?)?,
            HeaderOp::Append(Cow::Borrowed(name), v) => {
                resp.append_header(name, value(v)?)?;
            }
            HeaderOp::Append(Cow::Owned(name), v) => {
                resp.append_header(name, value(v)?)?;
            }
            HeaderOp::Remove(name) => {
                resp.remove_header(name.as_ref());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_header_has_its_own_name() {
        for header in Known::ALL {
            assert_eq!(known_name(header).as_str(), header.name());
        }
    }
}
