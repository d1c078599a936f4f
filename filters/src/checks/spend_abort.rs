//! Runs in flight for `spend.abort_running`: the `chat.send` runs one connection started and
//! the gateway accepted (its answer carries the `runId` and a status that says the run goes on),
//! until a `chat` event ends them (`final`, `error`, `aborted`); and the `chat.abort` requests
//! clawguard sends for them in the connection's name when a budget trips, whose answers are
//! clawguard's own and are not delivered. `chat.abort` needs `operator.write`, which the
//! connection that sent `chat.send` holds, and the gateway lets the requester that started a
//! run abort it.

use serde_json::{json, Value};

/// The most runs (accepted or awaiting their answer) one connection keeps; past it the oldest
/// is forgotten (it is then not aborted). The gateway runs one `chat.send` per session at a
/// time, so a connection rarely has more than a few.
pub const MAX_RUNS: usize = 64;

/// A run clawguard saw start on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The gateway's run id (`chat.send`'s answer `runId`).
    pub run_id: String,
    /// The session key as the client gave it (the gateway resolves it the same way again).
    pub session_key: String,
}

/// What an answer from the gateway was to this tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// Not an answer this tracker waits for.
    Other,
    /// The answer to clawguard's own `chat.abort`: not for the client. Says whether the
    /// gateway reported the run stopped.
    OwnAbort {
        /// The run it asked to stop.
        run: Run,
        /// The gateway's answer: `ok` and `aborted`.
        aborted: bool,
    },
}

/// The runs of one connection.
#[derive(Debug, Default)]
pub struct RunTracker {
    /// `chat.send` requests forwarded, awaiting their answer: request id and session key.
    sent: Vec<(String, String)>,
    /// Runs accepted and not seen ending.
    running: Vec<Run>,
    /// clawguard's own `chat.abort` requests awaiting their answer.
    aborts: Vec<(String, Run)>,
    /// A run was accepted since the last [`RunTracker::abort_all`] (it may need stopping too).
    fresh: bool,
    sequence: u64,
}

/// Run statuses in a `chat.send` answer that say the run already ended (2026.9.6 also answers
/// `started`, a retried request's `in_flight`, a progress refresh's `accepted`). Any other
/// status, or none, is followed: stopping a run that had ended costs one `chat.abort` the
/// gateway answers with `aborted: false`, missing one that goes on costs the budget.
const ENDED: [&str; 4] = ["ok", "error", "failed", "killed"];

impl RunTracker {
    /// Whether gateway answers must be read (a `chat.send` or an own abort awaits its answer).
    pub fn awaits_answers(&self) -> bool {
        !self.sent.is_empty() || !self.aborts.is_empty()
    }

    /// Whether the answer to request `id` is awaited (a `chat.send` or clawguard's own abort).
    pub fn follows(&self, id: &str) -> bool {
        self.sent.iter().any(|(s, _)| s == id) || self.aborts.iter().any(|(a, _)| a == id)
    }

    /// Whether runs are in flight (their `chat` events must be read).
    pub fn has_runs(&self) -> bool {
        !self.running.is_empty()
    }

    /// Whether a run was accepted since this was last asked (or since the last abort): it may
    /// need stopping if its identity is already past a budget.
    pub fn take_fresh(&mut self) -> bool {
        std::mem::take(&mut self.fresh)
    }

    /// The runs in flight.
    pub fn runs(&self) -> &[Run] {
        &self.running
    }

    /// A `chat.send` request `id` on `session_key` went to the gateway.
    pub fn on_send(&mut self, id: &str, session_key: &str) {
        if self.sent.len() >= MAX_RUNS {
            self.sent.remove(0);
        }
        self.sent.push((id.to_string(), session_key.to_string()));
    }

    /// An answer from the gateway to request `id` (`payload` read, `Null` when it is not JSON:
    /// an unreadable `chat.send` answer names no run to follow, an unreadable answer to an own
    /// abort reports the run as not stopped).
    pub fn on_answer(&mut self, id: &str, ok: bool, payload: &Value) -> Answered {
        if let Some(i) = self.aborts.iter().position(|(a, _)| a == id) {
            let (_, run) = self.aborts.swap_remove(i);
            return Answered::OwnAbort { run, aborted: ok && payload["aborted"] == true };
        }
        let Some(i) = self.sent.iter().position(|(s, _)| s == id) else { return Answered::Other };
        let (_, session_key) = self.sent.remove(i);
        let ended = payload["status"].as_str().is_some_and(|status| ENDED.contains(&status));
        if let (true, Some(run_id)) = (ok && !ended, payload["runId"].as_str()) {
            if self.running.len() >= MAX_RUNS {
                self.running.remove(0);
            }
            self.running.retain(|r| r.run_id != run_id);
            self.running.push(Run { run_id: run_id.to_string(), session_key });
            self.fresh = true;
        }
        Answered::Other
    }

    /// A `chat` event: one that ends a run (`state` `final`, `error` or `aborted`) takes it off.
    pub fn on_chat_event(&mut self, payload: &Value) {
        if matches!(payload["state"].as_str(), Some("final" | "error" | "aborted")) {
            if let Some(run_id) = payload["runId"].as_str() {
                self.running.retain(|r| r.run_id != run_id);
            }
        }
    }

    /// `chat.abort` requests for every run in flight (their frames' text, and the run each
    /// stops); their answers are expected and not delivered. `tag` makes the request ids
    /// this connection's own (a client cannot guess them).
    pub fn abort_all(&mut self, tag: u32) -> Vec<(Vec<u8>, Run)> {
        self.fresh = false;
        let runs = std::mem::take(&mut self.running);
        let mut out = Vec::with_capacity(runs.len());
        for run in runs {
            self.sequence += 1;
            let id = format!("clawguard-abort-{tag:08x}-{}", self.sequence);
            let frame = json!({ "type": "req", "id": id, "method": "chat.abort", "params": { "sessionKey": run.session_key, "runId": run.run_id } });
            out.push((frame.to_string().into_bytes(), run.clone()));
            if self.aborts.len() >= MAX_RUNS {
                self.aborts.remove(0);
            }
            self.aborts.push((id, run));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue19_a_run_is_in_flight_from_its_accepted_answer_until_a_chat_event_ends_it() {
        let mut t = RunTracker::default();
        t.on_send("1", "main");
        t.on_send("2", "agent:main:other");
        t.on_send("3", "main");
        assert!(t.awaits_answers() && !t.has_runs());
        assert_eq!(t.on_answer("1", true, &json!({"runId": "r1", "status": "started"})), Answered::Other);
        assert_eq!(t.on_answer("2", true, &json!({"runId": "r2", "status": "ok"})), Answered::Other, "a run that already ended");
        t.on_answer("3", false, &json!({"runId": "r3", "status": "started"}));
        assert_eq!(t.on_answer("9", true, &json!({"runId": "r9", "status": "started"})), Answered::Other, "not a chat.send of this connection");
        assert_eq!(t.runs(), [Run { run_id: "r1".into(), session_key: "main".into() }]);
        assert!(t.take_fresh() && !t.take_fresh() && !t.awaits_answers());
        t.on_chat_event(&json!({"runId": "r1", "state": "delta"}));
        assert!(t.has_runs(), "a delta does not end the run");
        t.on_chat_event(&json!({"runId": "r1", "state": "final"}));
        assert!(!t.has_runs());
        t.on_send("4", "main");
        t.on_answer("4", true, &json!({"runId": "r4"}));
        assert_eq!(t.runs().iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), ["r4"], "a run with no status is followed");
    }

    #[test]
    fn issue19_abort_all_asks_the_gateway_to_stop_each_run_and_takes_its_answer() {
        let mut t = RunTracker::default();
        for (id, run) in [("a", "r1"), ("b", "r2")] {
            t.on_send(id, "agent:main:alice");
            t.on_answer(id, true, &json!({"runId": run, "status": "started"}));
        }
        let frames = t.abort_all(0xfeed);
        assert!(!t.has_runs() && !t.take_fresh());
        let sent: Vec<Value> = frames.iter().map(|(f, _)| serde_json::from_slice(f).unwrap()).collect();
        assert_eq!(sent[0], json!({"type": "req", "id": "clawguard-abort-0000feed-1", "method": "chat.abort", "params": {"sessionKey": "agent:main:alice", "runId": "r1"}}));
        assert_eq!(sent[1]["params"]["runId"], "r2");
        let first = t.on_answer("clawguard-abort-0000feed-1", true, &json!({"ok": true, "aborted": true, "runIds": ["r1"]}));
        assert_eq!(first, Answered::OwnAbort { run: Run { run_id: "r1".into(), session_key: "agent:main:alice".into() }, aborted: true });
        let second = t.on_answer("clawguard-abort-0000feed-2", true, &json!({"ok": true, "aborted": false, "runIds": []}));
        assert!(matches!(second, Answered::OwnAbort { aborted: false, .. }), "the run had ended: {second:?}");
        assert_eq!(t.on_answer("clawguard-abort-0000feed-2", true, &json!({})), Answered::Other, "each answer is taken once");
        assert!(t.abort_all(1).is_empty());
    }

    #[test]
    fn issue19_a_connection_keeps_a_bounded_number_of_runs() {
        let mut t = RunTracker::default();
        for i in 0..(MAX_RUNS + 10) {
            let id = i.to_string();
            t.on_send(&id, "main");
            t.on_answer(&id, true, &json!({"runId": format!("r{i}"), "status": "started"}));
        }
        assert_eq!(t.runs().len(), MAX_RUNS);
        assert_eq!(t.runs()[0].run_id, "r10", "the oldest are forgotten");
    }
}
