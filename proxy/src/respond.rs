//! clawguard's own answers to HTTP requests: JSON errors in the gateway's error shape, with the
//! security headers of an API answer, and the application of header plans to pingora's headers.

use crate::shared::Shared;
use bytes::Bytes;
use clawguard_filters::http::{HeaderOp, HttpRefusal};
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
        let ops = shared.guard.http.headers.plan(None, &path, tls, |_| None);
        apply_header_ops(&mut resp, ops)?;
    }
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(Bytes::from(body)), true).await
}

/// Applies a header plan (`filters::http::HeaderRules::plan`) to a response head.
pub fn apply_header_ops(resp: &mut ResponseHeader, ops: Vec<HeaderOp>) -> Result<()> {
    use std::borrow::Cow;
    for op in ops {
        match op {
            HeaderOp::Set(Cow::Borrowed(name), value) => {
                resp.insert_header(name, value.as_ref())?;
            }
            HeaderOp::Set(Cow::Owned(name), value) => {
                resp.insert_header(name, value.as_ref())?;
            }
            HeaderOp::Append(Cow::Borrowed(name), value) => {
                resp.append_header(name, value.as_ref())?;
            }
            HeaderOp::Append(Cow::Owned(name), value) => {
                resp.append_header(name, value.as_ref())?;
            }
            HeaderOp::Remove(name) => {
                resp.remove_header(name.as_ref());
            }
        }
    }
    Ok(())
}

