//! The OpenClaw gateway's frames: `req`, `res` and `event` JSON objects, one per
//! text message (`openclaw-protocol.md` §1.2), and synthetic frames in the
//! gateway's own error shape.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A parsed gateway frame. Strings borrow from the message where they can.
#[derive(Debug)]
pub enum GatewayFrame<'a> {
    /// `{"type":"req","id","method","params"?}`.
    Req {
        /// Request id, echoed by the response.
        id: Cow<'a, str>,
        /// Method name.
        method: Cow<'a, str>,
        /// Raw params, when present.
        params: Option<&'a RawValue>,
    },
    /// `{"type":"res","id","ok","payload"?,"error"?}`.
    Res {
        /// The request id answered.
        id: Cow<'a, str>,
        /// Success flag.
        ok: bool,
        /// Raw payload, when present.
        payload: Option<&'a RawValue>,
    },
    /// `{"type":"event","event","payload"?,"seq"?}`.
    Event {
        /// Event name.
        event: Cow<'a, str>,
        /// Raw payload, when present.
        payload: Option<&'a RawValue>,
    },
}

/// Why a message is not a gateway frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a JSON object, or malformed JSON (duplicate keys included).
    #[error("not a JSON frame object: {0}")]
    Json(String),
    /// `type` is not one of `req`, `res`, `event`.
    #[error("unknown frame type {0:?}: expected \"req\", \"res\" or \"event\"")]
    UnknownType(String),
    /// A field the frame type requires is absent or empty.
    #[error("{frame} frame without a non-empty {field:?}")]
    Missing {
        /// The frame type.
        frame: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

/// A frame's envelope, its params read as `P`: raw (`&RawValue`, judged later) or a `Value`.
#[derive(Deserialize)]
#[serde(bound(deserialize = "P: Deserialize<'de>"))]
struct Envelope<'a, P> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    params: Option<P>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
}

fn required<'a>(v: Option<Cow<'a, str>>, frame: &'static str, field: &'static str) -> Result<Cow<'a, str>, FrameError> {
    v.filter(|s| !s.is_empty()).ok_or(FrameError::Missing { frame, field })
}

/// Parses one text message as a gateway frame.
pub fn parse_frame(text: &[u8]) -> Result<GatewayFrame<'_>, FrameError> {
    let env: Envelope<'_, &RawValue> = serde_json::from_slice(text).map_err(|e| FrameError::Json(e.to_string()))?;
    match env.ty.as_ref() {
        "req" => Ok(GatewayFrame::Req {
            id: required(env.id, "req", "id")?,
            method: required(env.method, "req", "method")?,
            params: env.params,
        }),
        "res" => Ok(GatewayFrame::Res {
            id: required(env.id, "res", "id")?,
            ok: env.ok.ok_or(FrameError::Missing { frame: "res", field: "ok" })?,
            payload: env.payload,
        }),
        "event" => Ok(GatewayFrame::Event { event: required(env.event, "event", "event")?, payload: env.payload }),
        other => Err(FrameError::UnknownType(other.to_string())),
    }
}

/// A client request read in one pass: the envelope and its params together, the params as
/// `JSON.parse` reads them (duplicate keys: the last one wins). `None` for anything else: a
/// frame that is not a `req`, malformed JSON, a duplicate envelope field, a lone surrogate in
/// the params. `None` is only "not read this way": [`parse_frame`] and
/// [`crate::codec::js::read_json`] then name what cannot be read, so this is never the
/// reason a request passes or fails, only the faster way to the same reading.
pub fn read_request(text: &[u8]) -> Option<(Cow<'_, str>, Cow<'_, str>, serde_json::Value)> {
    // The same envelope as `parse_frame`'s (a duplicate of any of its fields fails both). A
    // failure is not a verdict: the caller reads the frame the two-step way, which refuses what
    // it cannot read and says why.
    let env: Envelope<'_, serde_json::Value> = serde_json::from_slice(text).ok()?;
    if env.ty != "req" {
        return None;
    }
    // `params: null` and no params are both what the gateway sees as no params.
    Some((env.id.filter(|s| !s.is_empty())?, env.method.filter(|s| !s.is_empty())?, env.params.unwrap_or(serde_json::Value::Null)))
}

/// The `id` of a gateway answer, read from its first bytes without parsing the rest: the
/// gateway writes every answer with `JSON.stringify({ type: "res", id, ok, … })`, so it starts
/// `{"type":"res","id":"…"`. `None` for anything else, and for an id with an escape (the
/// whole frame must then be parsed). Only for the gateway's own frames, never a client's.
pub fn answer_id(text: &[u8]) -> Option<&str> {
    let rest = text.strip_prefix(br#"{"type":"res","id":""#)?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] != b'"' || rest.get(end + 1) != Some(&b',') {
        return None;
    }
    // Not UTF-8 or empty: `None`, and the whole frame is parsed as before.
    std::str::from_utf8(&rest[..end]).ok().filter(|id| !id.is_empty())
}

/// Whether a `res` payload is a `hello-ok` (the answer that completes the handshake).
pub fn is_hello_ok(payload: Option<&RawValue>) -> bool {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(rename = "type", borrow, default)]
        ty: Option<Cow<'a, str>>,
    }
    payload
        .and_then(|p| serde_json::from_str::<Probe<'_>>(p.get()).ok())
        .and_then(|p| p.ty)
        .is_some_and(|t| t == "hello-ok")
}

/// A refusal from clawguard, shaped like the gateway's own errors so that
/// existing clients handle it: `{"type":"res","id","ok":false,"error":{…}}`.
pub fn error_response(id: &str, code: &str, message: &str, details: serde_json::Value) -> Bytes {
    let frame = serde_json::json!({
        "type": "res",
        "id": id,
        "ok": false,
        "error": { "code": code, "message": message, "details": details },
    });
    encode_json(&frame)
}

/// A refusal the client may retry (`error.retryable: true`, as the gateway marks its own
/// transient `UNAVAILABLE` errors).
pub fn retryable_error_response(id: &str, code: &str, message: &str, details: serde_json::Value) -> Bytes {
    let frame = serde_json::json!({
        "type": "res",
        "id": id,
        "ok": false,
        "error": { "code": code, "message": message, "details": details, "retryable": true },
    });
    encode_json(&frame)
}

/// A rate-limited request: `UNAVAILABLE`, retryable, with the wait the limiter computed.
pub fn rate_limited_response(id: &str, limit: &str, retry_after_ms: u64, message: &str) -> Bytes {
    let frame = serde_json::json!({
        "type": "res",
        "id": id,
        "ok": false,
        "error": {
            "code": "UNAVAILABLE",
            "message": message,
            "retryable": true,
            "retryAfterMs": retry_after_ms,
            "details": { "code": "RATE_LIMITED", "limit": limit, "source": "clawguard", "rule": format!("rate-limit:{limit}") },
        },
    });
    encode_json(&frame)
}

/// The answer to a run-starting request past a spend budget: shaped as the gateway's own
/// `UNAVAILABLE` error (clients retry it after `retryAfterMs`, when the budget's window resets),
/// with `details.code = "BUDGET_EXCEEDED"` naming the budget.
pub fn budget_exceeded_response(id: &str, budget: &str, resets_at: &str, retry_after_ms: u64, message: &str) -> Bytes {
    let frame = serde_json::json!({
        "type": "res",
        "id": id,
        "ok": false,
        "error": {
            "code": "UNAVAILABLE",
            "message": message,
            "retryable": true,
            "retryAfterMs": retry_after_ms,
            "details": { "code": "BUDGET_EXCEEDED", "budget": budget, "resetsAt": resets_at, "source": "clawguard", "rule": format!("spend:{budget}") },
        },
    });
    encode_json(&frame)
}

/// A JSON value as message text.
pub fn encode_json(value: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("a JSON value always serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_frame_types() {
        let req = br#"{"type":"req","id":"1:a","method":"connect","params":{"x":1}}"#;
        match parse_frame(req).unwrap() {
            GatewayFrame::Req { id, method, params } => {
                assert_eq!((id.as_ref(), method.as_ref()), ("1:a", "connect"));
                assert_eq!(params.unwrap().get(), r#"{"x":1}"#);
            }
            other => panic!("{other:?}"),
        }
        let res = br#"{"type":"res","id":"1:a","ok":true,"payload":{"type":"hello-ok","protocol":4}}"#;
        match parse_frame(res).unwrap() {
            GatewayFrame::Res { ok: true, payload, .. } => assert!(is_hello_ok(payload)),
            other => panic!("{other:?}"),
        }
        let ev = br#"{"type":"event","event":"tick","payload":{"ts":1},"seq":1}"#;
        assert!(matches!(parse_frame(ev).unwrap(), GatewayFrame::Event { event, .. } if event == "tick"));
    }

    #[test]
    fn escaped_names_are_decoded() {
        let req = br#"{"type":"req","id":"1","method":"conf\u0069g.get"}"#;
        assert!(matches!(parse_frame(req).unwrap(), GatewayFrame::Req { method, .. } if method == "config.get"));
    }

    #[test]
    fn malformed_frames_are_explained() {
        assert!(matches!(parse_frame(b"not json"), Err(FrameError::Json(_))));
        assert!(matches!(parse_frame(br#"{"id":"1"}"#), Err(FrameError::Json(_))));
        assert_eq!(parse_frame(br#"{"type":"rpc"}"#).unwrap_err(), FrameError::UnknownType("rpc".into()));
        assert_eq!(parse_frame(br#"{"type":"req","id":"1"}"#).unwrap_err(), FrameError::Missing { frame: "req", field: "method" });
        assert_eq!(parse_frame(br#"{"type":"req","id":"","method":"m"}"#).unwrap_err(), FrameError::Missing { frame: "req", field: "id" });
        // Duplicate keys would let the gateway and clawguard read different methods.
        assert!(matches!(parse_frame(br#"{"type":"req","id":"1","method":"health","method":"config.apply"}"#), Err(FrameError::Json(_))));
    }

    #[test]
    fn a_request_read_in_one_pass_reads_as_the_two_step_reading() {
        let cases: &[&[u8]] = &[
            br#"{"type":"req","id":"1","method":"chat.history","params":{"sessionKey":"a","limit":5,"sessionKey":"b"}}"#,
            br#"{"type":"req","id":"2","method":"health"}"#,
            br#"{"type":"req","id":"3","method":"health","params":null}"#,
            br#"{"type":"req","id":"4","method":"conf\u0069g.get","params":[1,{"a":"\ud83d\ude00"}]}"#,
        ];
        for text in cases {
            let (id, method, params) = read_request(text).unwrap();
            let GatewayFrame::Req { id: id2, method: method2, params: raw } = parse_frame(text).unwrap() else { panic!() };
            let params2 = raw.map(|p| crate::codec::js::read_json("params", p.get()).unwrap()).unwrap_or(serde_json::Value::Null);
            assert_eq!((id, method, params), (id2, method2, params2), "{}", String::from_utf8_lossy(text));
        }
        // Each of these is not read in one pass; the two-step reading then says what it is.
        for text in [
            &br#"{"type":"res","id":"1","ok":true}"#[..],
            br#"{"type":"req","id":"1","method":"health","method":"config.apply"}"#,
            br#"{"type":"req","id":"1","method":"x","params":{"a":"\ud800"}}"#,
            br#"{"type":"req","id":"","method":"x"}"#,
            br#"{"type":"req","id":"1","method":"x","payload":1,"payload":2}"#,
            b"not json",
        ] {
            assert_eq!(read_request(text), None, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn an_answer_id_is_read_from_the_gateway_s_own_prefix_only() {
        assert_eq!(answer_id(br#"{"type":"res","id":"7:a","ok":true,"payload":{}}"#), Some("7:a"));
        for text in [
            &br#"{"type":"res","id":"a\"b","ok":true}"#[..],
            br#"{"type":"res","id":"","ok":true}"#,
            br#"{"type":"res","ok":true,"id":"1"}"#,
            br#"{"id":"1","type":"res","ok":true}"#,
            br#"{"type":"event","event":"tick"}"#,
            br#"{"type":"res","id":"1"}"#,
            br#" {"type":"res","id":"1","ok":true}"#,
        ] {
            assert_eq!(answer_id(text), None, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn error_response_has_the_gateway_shape() {
        let b = error_response("7", "FORBIDDEN", "no", serde_json::json!({"source":"clawguard"}));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "res");
        assert_eq!(v["id"], "7");
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["code"], "FORBIDDEN");
        assert_eq!(v["error"]["details"]["source"], "clawguard");
    }
}
