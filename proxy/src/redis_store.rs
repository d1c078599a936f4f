//! The shared store over Redis (`[state] backend = "redis"`): the replay memory (`SET NX PX`),
//! the auth-failure lockout and the GCRA rate limits (Lua scripts using Redis's own clock, so
//! replicas' clocks do not matter), and the spend counters (a Lua script that charges each
//! session's growth once, whichever replica reads it first).
//!
//! Every call is bounded: connections are made and read with `state.timeout_ms`, a small pool
//! keeps them open, and after an I/O failure the store counts as down for a backoff (100 ms
//! doubling to 5 s) during which calls fail at once instead of waiting — so no request waits on
//! an unreachable Redis for longer than the timeout, and most not at all. What a failure means
//! is the core's decision (`clawguard_filters::state::shared`).

use clawguard_filters::protocol::usage::UsageReport;
use clawguard_filters::state::shared::{SharedStore, Unavailable};
use clawguard_filters::state::spend::{Cost, WindowTotals};
use redis::Script;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Connections kept open for reuse.
const MAX_IDLE: usize = 16;
/// The first and the longest backoff after a failure.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

/// `KEYS`: n failure lists then n lock keys; `ARGV`: limit, window ms, lockout ms. Each key
/// keeps the times of its last `limit` failures; `limit` within the window lock it.
const FAILURE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window, lockout = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = #KEYS / 2
local locked = 0
for i = 1, n do
  local f, l = KEYS[i], KEYS[n + i]
  redis.call('RPUSH', f, now)
  redis.call('LTRIM', f, -limit, -1)
  redis.call('PEXPIRE', f, window)
  local recent = 0
  for _, at in ipairs(redis.call('LRANGE', f, 0, -1)) do
    if now - tonumber(at) < window then recent = recent + 1 end
  end
  if recent >= limit then
    redis.call('SET', l, 1, 'PX', lockout)
    redis.call('DEL', f)
    locked = 1
  elseif redis.call('EXISTS', l) == 1 then
    locked = 1
  end
end
return locked
";

/// GCRA. `KEYS[1]`: the limit's theoretical arrival time; `ARGV`: emission interval ms, burst.
/// Returns -1 when allowed, else the milliseconds until the next event is.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat + interval - interval * burst
if now < allow_at then return allow_at - now end
local next_tat = tat + interval
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now + 1)
return -1
";

/// Spend. `KEYS`: what the gateway's sessions were seen at today, today's and yesterday's
/// runner notes, the hour's and the day's counters. `ARGV`: the report's total usd and tokens
/// (`-` and `-` for a client's partial report), then per session: key, usd, tokens, this
/// replica's runner. Growth of the total is charged to the global figure (name ""), each
/// session's growth to its runner; a partial report's session growth is charged globally too
/// and added to the total seen, so the next full report does not charge it again. Returns both
/// windows.
const SPEND: &str = r"
local seen, runners, runners_before, hour_w, day_w = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local function add(name, usd, tokens)
  for _, w in ipairs({hour_w, day_w}) do
    if usd > 0 then redis.call('HINCRBYFLOAT', w, 'usd|' .. name, usd) end
    if tokens > 0 then redis.call('HINCRBY', w, 'tok|' .. name, tokens) end
  end
end
local function grow(field, usd, tokens)
  local ou, ot = 0, 0
  local old = redis.call('HGET', seen, field)
  if old then
    local a, b = string.match(old, '^(%S+) (%S+)$')
    ou, ot = tonumber(a) or 0, tonumber(b) or 0
  end
  local du, dt = math.max(usd - ou, 0), math.max(tokens - ot, 0)
  if du > 0 or dt > 0 then
    redis.call('HSET', seen, field, string.format('%.17g %.0f', math.max(usd, ou), math.max(tokens, ot)))
  end
  return du, dt
end
local partial = ARGV[1] == '-'
if not partial then
  local du, dt = grow('*', tonumber(ARGV[1]), tonumber(ARGV[2]))
  add('', du, dt)
end
for i = 3, #ARGV, 4 do
  local key = ARGV[i]
  local su, st = grow('s|' .. key, tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]))
  if su > 0 or st > 0 then
    local runner = redis.call('HGET', runners, key) or redis.call('HGET', runners_before, key) or ARGV[i + 3]
    if runner ~= '' then add(runner, su, st) end
    if partial then
      add('', su, st)
      local old = redis.call('HGET', seen, '*')
      local ou, ot = 0, 0
      if old then
        local a, b = string.match(old, '^(%S+) (%S+)$')
        ou, ot = tonumber(a) or 0, tonumber(b) or 0
      end
      redis.call('HSET', seen, '*', string.format('%.17g %.0f', ou + su, ot + st))
    end
  end
end
redis.call('PEXPIRE', seen, 172800000)
redis.call('PEXPIRE', hour_w, 7200000)
redis.call('PEXPIRE', day_w, 172800000)
return {redis.call('HGETALL', hour_w), redis.call('HGETALL', day_w)}
";

/// Whether the store answers, and how long to wait before trying again after it did not.
struct Health {
    down_until: Option<Instant>,
    backoff: Duration,
    last_error: String,
}

/// A Redis shared by every clawguard that uses it.
pub struct RedisStore {
    client: redis::Client,
    timeout: Duration,
    prefix: String,
    idle: Mutex<Vec<redis::Connection>>,
    health: Mutex<Health>,
    failure: Script,
    gcra: Script,
    spend: Script,
}

impl RedisStore {
    /// A store at `url` (`redis://` or `rediss://`), each call bounded by `timeout`, every key
    /// under `prefix`. Nothing is connected until the first call.
    pub fn new(url: &str, timeout: Duration, prefix: &str) -> Result<Self, String> {
        // rediss:// uses rustls with the process's crypto provider.
        pingora::tls::install_default_crypto_provider();
        let client = redis::Client::open(url).map_err(|e| format!("state.url is not a Redis URL: {e}"))?;
        Ok(RedisStore {
            client,
            timeout,
            prefix: prefix.to_string(),
            idle: Mutex::new(Vec::new()),
            health: Mutex::new(Health { down_until: None, backoff: BACKOFF.0, last_error: String::new() }),
            failure: Script::new(FAILURE),
            gcra: Script::new(GCRA),
            spend: Script::new(SPEND),
        })
    }

    /// Asks Redis once (`PING`), for startup and readiness.
    pub fn ping(&self) -> Result<(), Unavailable> {
        self.call("ping", |c| redis::cmd("PING").query::<String>(c).map(drop))
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let c = self.client.get_connection_with_timeout(self.timeout)?;
        c.set_read_timeout(Some(self.timeout))?;
        c.set_write_timeout(Some(self.timeout))?;
        Ok(c)
    }

    /// Runs `f` on a pooled connection, bounded by the timeout; `kind` names the call in
    /// metrics and errors.
    fn call<T>(&self, kind: &'static str, f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T, Unavailable> {
        {
            let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(until) = health.down_until.filter(|u| Instant::now() < *u) {
                crate::metrics::STATE_CALLS.with_label_values(&[kind, "skipped"]).inc();
                let left = until.saturating_duration_since(Instant::now()).as_millis();
                return Err(Unavailable(format!("Redis did not answer ({}); the next try is in {left} ms", health.last_error)));
            }
        }
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let result = match pooled {
            Some(mut c) => match f(&mut c) {
                Ok(v) => Ok((v, c)),
                // A pooled connection that Redis closed (a restart, an idle timeout) fails at
                // once: the others are as stale, so they go, and one fresh connection is tried.
                // A timeout is not retried: that would double the wait.
                Err(e) if !e.is_timeout() && (e.is_io_error() || e.is_connection_dropped()) => {
                    self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    self.connect().and_then(|mut c| f(&mut c).map(|v| (v, c)))
                }
                Err(e) => Err(e),
            },
            None => self.connect().and_then(|mut c| f(&mut c).map(|v| (v, c))),
        };
        match result {
            Ok((value, conn)) => {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                if idle.len() < MAX_IDLE {
                    idle.push(conn);
                }
                drop(idle);
                self.answered();
                crate::metrics::STATE_CALLS.with_label_values(&[kind, "ok"]).inc();
                Ok(value)
            }
            Err(e) => {
                crate::metrics::STATE_CALLS.with_label_values(&[kind, "error"]).inc();
                Err(self.failed(kind, &e))
            }
        }
    }

    fn answered(&self) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if health.down_until.take().is_some() || health.backoff != BACKOFF.0 {
            tracing::info!("Redis answers again: shared state is back");
        }
        health.backoff = BACKOFF.0;
        crate::metrics::STATE_UP.set(1);
    }

    /// Marks the store down after an I/O failure (a refused connection, a timeout, a dropped
    /// connection); an error reply leaves it up. The connection is dropped either way.
    fn failed(&self, kind: &str, e: &redis::RedisError) -> Unavailable {
        let text = format!("{kind}: {e}");
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
            let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
            if health.down_until.is_none() {
                tracing::warn!(error = %e, "Redis does not answer: replay and lockout checks refuse, rate limits fall back to this replica's own, spend goes stale");
            }
            health.down_until = Some(Instant::now() + health.backoff);
            health.backoff = (health.backoff * 2).min(BACKOFF.1);
            health.last_error.clone_from(&text);
            crate::metrics::STATE_UP.set(0);
        }
        Unavailable(format!("Redis {text}"))
    }
}

/// Today's UTC day and the one before, as `YYYY-MM-DD`.
fn days(now_ms: u64) -> (String, String) {
    let day = |ms: u64| clawguard_filters::state::spend::reset_time(ms)[..10].to_string();
    (day(now_ms), day(now_ms.saturating_sub(DAY_MS)))
}

/// `[usd|name, value, tok|name, value, …]` as figures per name; a figure that is not a number
/// is an error (reading it as 0 would forgive spend).
fn window(flat: &[String]) -> Result<std::collections::HashMap<String, Cost>, Unavailable> {
    let mut out: std::collections::HashMap<String, Cost> = std::collections::HashMap::new();
    let bad = |field: &str, value: &str| Unavailable(format!("Redis spend counter {field} holds {value:?}: expected a number"));
    for pair in flat.chunks_exact(2) {
        let (field, value) = (&pair[0], &pair[1]);
        if let Some(name) = field.strip_prefix("usd|") {
            out.entry(name.to_string()).or_default().usd = value.parse().map_err(|_| bad(field, value))?;
        } else if let Some(name) = field.strip_prefix("tok|") {
            out.entry(name.to_string()).or_default().tokens = value.parse().map_err(|_| bad(field, value))?;
        }
    }
    Ok(out)
}

impl SharedStore for RedisStore {
    fn claim_once(&self, key: &str, ttl_ms: u64) -> Result<bool, Unavailable> {
        let key = self.key(key);
        self.call("replay", |c| redis::cmd("SET").arg(&key).arg(1).arg("NX").arg("PX").arg(ttl_ms.max(1)).query::<Option<String>>(c).map(|set| set.is_some()))
    }

    fn lockout_left_ms(&self, keys: &[String]) -> Result<Option<u64>, Unavailable> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("PTTL").arg(self.key(&format!("lock:{k}")));
        }
        let left: Vec<i64> = self.call("lockout", |c| pipe.query(c))?;
        // PTTL answers -2 for a key that does not exist (not locked) and -1 for one without an
        // expiry, which clawguard never writes; only a positive time left is a lockout.
        Ok(left.into_iter().filter_map(|ms| u64::try_from(ms).ok()).filter(|ms| *ms > 0).max())
    }

    fn auth_failure(&self, keys: &[String], limit: u32, window_ms: u64, lockout_ms: u64) -> Result<bool, Unavailable> {
        let mut invocation = self.failure.prepare_invoke();
        for k in keys {
            invocation.key(self.key(&format!("fail:{k}")));
        }
        for k in keys {
            invocation.key(self.key(&format!("lock:{k}")));
        }
        invocation.arg(limit).arg(window_ms.max(1)).arg(lockout_ms.max(1));
        self.call("lockout", |c| invocation.invoke::<i64>(c)).map(|locked| locked == 1)
    }

    fn rate(&self, key: &str, interval_ms: u64, burst: u32) -> Result<Option<u64>, Unavailable> {
        let key = self.key(key);
        let wait: i64 = self.call("rate", |c| self.gcra.key(&key).arg(interval_ms.max(1)).arg(burst.max(1)).invoke(c))?;
        // The script answers -1 for allowed, else the milliseconds to wait (never negative).
        Ok(u64::try_from(wait).ok())
    }

    fn note_runner(&self, key: &str, identity: &str) -> Result<(), Unavailable> {
        let runners = self.key(&format!("spend:runners:{}", days(crate::shared::now_ms()).0));
        self.call("spend", |c| redis::pipe().hset(&runners, key, identity).ignore().pexpire(&runners, 2 * DAY_MS as i64).ignore().query::<()>(c))
    }

    fn spend(&self, gateway: &str, report: &UsageReport, runner_of: &dyn Fn(&str) -> Option<String>, now_ms: u64) -> Result<WindowTotals, Unavailable> {
        let (today, yesterday) = days(now_ms);
        let mut invocation = self.spend.prepare_invoke();
        invocation
            .key(self.key(&format!("spend:seen:{}:{gateway}", report.day)))
            .key(self.key(&format!("spend:runners:{today}")))
            .key(self.key(&format!("spend:runners:{yesterday}")))
            .key(self.key(&format!("spend:w:hour:{}", now_ms - now_ms % HOUR_MS)))
            .key(self.key(&format!("spend:w:day:{}", now_ms - now_ms % DAY_MS)));
        if report.partial {
            invocation.arg("-").arg("-");
        } else {
            invocation.arg(format!("{:.17}", report.usd)).arg(report.tokens);
        }
        for s in &report.sessions {
            let key = s.key.to_lowercase();
            // No runner known here: "" lets the script use a runner another replica noted, else
            // charge the session's growth to global budgets only (as the local ledger does).
            let runner = runner_of(&key).unwrap_or_default();
            invocation.arg(key).arg(format!("{:.17}", s.usd)).arg(s.tokens).arg(runner);
        }
        let (hour, day): (Vec<String>, Vec<String>) = self.call("spend", |c| invocation.invoke(c))?;
        Ok(WindowTotals { hour: window(&hour)?, day: window(&day)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawguard_filters::protocol::usage::SessionUsage;

    /// Debian's redis-server on a free loopback port, without persistence, for one test.
    struct Server(std::process::Child, u16);

    impl Server {
        fn start() -> Server {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is installed (.ci/run installs Debian's redis-server)");
            // Dropped (killed and waited for) on every path.
            let server = Server(child, port);
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("redis-server did not listen on {port}");
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn report(usd: f64, sessions: &[(&str, f64)], partial: bool) -> UsageReport {
        let sessions = sessions.iter().map(|(k, c)| SessionUsage { key: (*k).into(), usd: *c, tokens: 0 }).collect();
        UsageReport { day: "2026-12-03".into(), usd, tokens: 0, sessions, partial }
    }

    #[test]
    fn issue19_a_clients_partial_report_is_charged_once_with_the_polls_reports() {
        let server = Server::start();
        let store = RedisStore::new(&format!("redis://127.0.0.1:{}/0", server.1), Duration::from_millis(500), "t").unwrap();
        let now = 1_796_299_200_000; // 2026-12-03T12:00:00Z
        let runner = |key: &str| (key == "agent:main:alice").then(|| "alice".to_string());
        let usd = |t: &WindowTotals, name: &str| (t.day.get(name).map_or(0.0, |c| c.usd) * 1000.0).round() / 1000.0;
        let t = store.spend("gw", &report(0.5, &[("agent:main:alice", 0.3)], false), &runner, now).unwrap();
        assert_eq!((usd(&t, ""), usd(&t, "alice")), (0.5, 0.3));
        // A client that sees alice's session only: its totals (0.7) are not the day's.
        let t = store.spend("gw", &report(0.7, &[("agent:main:alice", 0.7)], true), &runner, now + 1).unwrap();
        assert_eq!((usd(&t, ""), usd(&t, "alice")), (0.9, 0.7), "alice's growth counts for her and globally");
        let t = store.spend("gw", &report(0.95, &[("agent:main:alice", 0.7)], false), &runner, now + 2).unwrap();
        assert_eq!((usd(&t, ""), usd(&t, "alice")), (0.95, 0.7), "the poll's next report charges only what neither charged");
        let t = store.spend("gw", &report(0.0, &[("agent:main:alice", 0.7)], true), &runner, now + 3).unwrap();
        assert_eq!(usd(&t, ""), 0.95, "a partial report showing nothing new charges nothing");
    }
}
