//! URL ingestion in inference bodies (SSRF): the gateway fetches `input_image` / `input_file`
//! parts of `/v1/responses` whose `source.type` is `"url"` (on by default), and `image_url`
//! parts of `/v1/chat/completions` when `images.allowUrl` is set. Such a URL is refused unless
//! its host is one the identity may fetch from (`allow_hosts`); `data:` URLs are capped in size.
//!
//! The body is walked whole, so a part nested where clawguard does not expect it is judged too.
//! URLs are read with the WHATWG parser (the `url` crate), as the gateway's `new URL` reads them,
//! the string trimmed first, as the handlers trim it.

use serde_json::Value;

/// One URL a body asks the gateway to fetch, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// The JSON path of the URL.
    pub path: String,
    /// The URL as sent.
    pub url: String,
}

/// Every URL in `body` that the gateway would fetch or decode, with its JSON path.
pub fn urls(body: &Value) -> Vec<Fetch> {
    let mut out = Vec::new();
    walk(body, &mut String::from("body"), &mut out);
    out
}

fn walk(v: &Value, path: &mut String, out: &mut Vec<Fetch>) {
    match v {
        Value::Object(map) => {
            // An object without a string `type` is no fetched part (its children are still walked).
            let kind = map.get("type").and_then(Value::as_str).unwrap_or("");
            match kind {
                "image_url" => match map.get("image_url") {
                    Some(Value::String(u)) => out.push(Fetch { path: format!("{path}.image_url"), url: u.clone() }),
                    Some(Value::Object(o)) => {
                        if let Some(Value::String(u)) = o.get("url") {
                            out.push(Fetch { path: format!("{path}.image_url.url"), url: u.clone() });
                        }
                    }
                    _ => {}
                },
                "input_image" | "input_file" => {
                    if let Some(source) = map.get("source").filter(|s| s["type"] == "url") {
                        if let Some(Value::String(u)) = source.get("url") {
                            out.push(Fetch { path: format!("{path}.source.url"), url: u.clone() });
                        }
                    }
                }
                _ => {}
            }
            for (k, child) in map {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                walk(child, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(child, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Why the gateway may not fetch `fetch` for an identity that may fetch from hosts matching
/// `may_fetch`, if it may not.
pub fn refusal(fetch: &Fetch, max_data_url_bytes: usize, may_fetch: impl Fn(&str) -> bool) -> Option<String> {
    let text = crate::codec::js::trim(&fetch.url);
    if text.get(..5).is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:")) {
        return (text.len() > max_data_url_bytes).then(|| format!("{}: a data: URL of {} bytes is over http.max_data_url_bytes ({max_data_url_bytes})", fetch.path, text.len()));
    }
    let parsed = match url::Url::parse(text) {
        Ok(u) => u,
        Err(e) => return Some(format!("{}: {:?} is not a URL clawguard can read ({e}), so it cannot be shown to be safe to fetch", fetch.path, shorten(text))),
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return Some(format!("{}: the {} scheme is not fetched through clawguard", fetch.path, parsed.scheme()));
    }
    // An http(s) URL always has a host; "" would match no allow_hosts entry but `*`.
    let host = parsed.host_str().unwrap_or("");
    if may_fetch(host) {
        return None;
    }
    Some(format!("{}: the gateway would fetch {:?} from host {host:?}, which is not in the identity's allow_hosts", fetch.path, shorten(text)))
}

fn shorten(s: &str) -> &str {
    match s.char_indices().nth(120) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_every_fetched_url_wherever_it_is() {
        let body = json!({
            "input": [{"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "hi"},
                {"type": "input_image", "source": {"type": "url", "url": "http://169.254.169.254/latest/meta-data"}},
                {"type": "input_file", "source": {"type": "base64", "media_type": "text/plain", "data": "aGk="}},
                {"type": "input_file", "source": {"type": "url", "url": "https://files.example.com/a.pdf"}}
            ]}],
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://10.0.0.1/"}}, {"type": "image_url", "image_url": "http://x/"}]}]
        });
        let found: Vec<String> = urls(&body).into_iter().map(|f| f.path).collect();
        assert_eq!(found, [
            "body.input[0].content[1].source.url",
            "body.input[0].content[3].source.url",
            "body.messages[0].content[0].image_url.url",
            "body.messages[0].content[1].image_url",
        ]);
    }

    #[test]
    fn hosts_schemes_and_data_urls() {
        let allow = |h: &str| h == "files.example.com";
        let f = |u: &str| Fetch { path: "p".into(), url: u.into() };
        assert_eq!(refusal(&f("https://files.example.com/a.pdf"), 100, allow), None);
        assert_eq!(refusal(&f("  HTTPS://FILES.example.com:443/a  "), 100, allow), None, "trimmed and read as the WHATWG parser reads it");
        for bad in ["http://169.254.169.254/", "http://files.example.com.evil/", "http://files.example.com@evil.example/", "file:///etc/passwd", "gopher://x/", "not a url", "http://0x7f000001/"] {
            assert!(refusal(&f(bad), 100, allow).is_some(), "{bad}");
        }
        assert_eq!(refusal(&f("data:image/png;base64,aGk="), 100, allow), None);
        assert!(refusal(&f(&format!("data:image/png;base64,{}", "A".repeat(200))), 100, allow).unwrap().contains("max_data_url_bytes"));
        // Found by the http fuzz target: a multi-byte character across the scheme's first 5 bytes.
        assert!(refusal(&f("hto\u{c5793}nfiles.example"), 100, allow).is_some());
    }
}
