//! Spend budgets (`[spend]`): what model runs have cost per UTC hour and day, globally and per
//! identity, and whether a new run may start. Time is passed in (Unix milliseconds), so every
//! window, warning and reset is deterministic under test; the figures come from the gateway's
//! own usage reports, which the surfaces read and charge here.

use crate::protocol::usage::UsageReport;
use clawguard_policies::{Budget, BudgetPeriod, Spend};
use std::collections::HashMap;

/// What one model run (or a report of several) cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// Money, in the gateway's currency (USD); 0 where the gateway reports no price.
    pub usd: f64,
    /// Model tokens (input + output, cache reads and writes included, as the gateway totals them).
    pub tokens: u64,
}

/// What shared spend counters (`[state] backend = "redis"`) hold for the current UTC hour and
/// day: per identity, and for the global budgets under the empty name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowTotals {
    /// The current hour's figures.
    pub hour: HashMap<String, Cost>,
    /// The current day's figures.
    pub day: HashMap<String, Cost>,
}

/// The unit a budget was exceeded or warned in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Money.
    Usd,
    /// Model tokens.
    Tokens,
}

impl Unit {
    /// The word for it in answers, metrics and records.
    pub fn label(self) -> &'static str {
        match self {
            Unit::Usd => "usd",
            Unit::Tokens => "tokens",
        }
    }
}

/// A budget at or past its limit (or, for a warning, past the threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// The budget's name.
    pub budget: String,
    /// Its window.
    pub period: BudgetPeriod,
    /// The identity it covers (`None`: global).
    pub identity: Option<String>,
    /// The unit that is over.
    pub unit: Unit,
    /// Spent in the current window.
    pub spent: f64,
    /// The budget's limit in that unit.
    pub limit: f64,
    /// When the window resets (Unix ms).
    pub resets_at_ms: u64,
    /// Counted, not enforced.
    pub shadow: bool,
}

impl Exceeded {
    /// The refusal's reason, naming the budget, the figures and the reset.
    pub fn reason(&self) -> String {
        let scope = self.identity.as_deref().map_or_else(|| "global".to_string(), |i| format!("identity {i:?}"));
        let (spent, limit) = match self.unit {
            Unit::Usd => (format!("${:.4}", self.spent), format!("${:.2}", self.limit)),
            Unit::Tokens => (format!("{} tokens", self.spent), format!("{} tokens", self.limit)),
        };
        format!("spend budget {:?} ({scope}, per {}) is exhausted: {spent} of {limit} spent; it resets at {}", self.budget, self.period.label(), reset_time(self.resets_at_ms))
    }
}

/// A Unix-ms instant as RFC 3339 in UTC, to the second.
pub fn reset_time(ms: u64) -> String {
    let full = crate::state::audit::record::rfc3339(u128::from(ms) * 1_000_000);
    // "…T00:00:00.000000000Z" → "…T00:00:00Z": windows start on whole seconds.
    match full.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => full,
    }
}

/// What a charge crossed, to be counted and recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum SpendEvent {
    /// The warning threshold (`spend.warn_at`) was crossed in this window.
    Warning(Exceeded),
    /// The limit was reached in this window: new runs are refused (or would be, in shadow).
    Tripped(Exceeded),
}

/// The verdict on a run-starting request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Check {
    /// Spend is not known (no usage report yet, or the last one is older than
    /// `spend.max_report_age_seconds`): the request is refused, with this reason.
    pub unmeasured: Option<String>,
    /// The first enforced budget that is exhausted: the request is refused.
    pub refused: Option<Exceeded>,
    /// Shadow budgets that are exhausted: the request would be refused by them.
    pub shadowed: Vec<Exceeded>,
}

/// One budget's current window.
#[derive(Debug, Clone)]
struct Window {
    budget: Budget,
    start_ms: u64,
    usd: f64,
    tokens: u64,
    warned: bool,
    tripped: bool,
}

impl Window {
    fn new(budget: Budget) -> Self {
        Window { budget, start_ms: 0, usd: 0.0, tokens: 0, warned: false, tripped: false }
    }

    fn covers(&self, identity: &str) -> bool {
        self.budget.identity.as_ref().is_none_or(|i| i.get_ref() == identity)
    }

    /// Starts a new window when `now_ms` is past the current one.
    fn roll(&mut self, now_ms: u64) {
        let len = self.budget.period.millis();
        let start = now_ms - now_ms % len;
        if start != self.start_ms {
            *self = Window { start_ms: start, ..Window::new(self.budget.clone()) };
        }
    }

    /// The unit most used, as a fraction of its limit, with the spent figure and limit.
    fn usage(&self) -> Option<(Unit, f64, f64, f64)> {
        let usd = self.budget.usd.map(|limit| (Unit::Usd, self.usd / limit, self.usd, limit));
        #[allow(clippy::cast_precision_loss)] // token counts far below 2^53
        let tokens = self.budget.tokens.map(|limit| (Unit::Tokens, self.tokens as f64 / limit as f64, self.tokens as f64, limit as f64));
        [usd, tokens].into_iter().flatten().max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The threshold the current figures crossed, once per window each: the limit (a trip),
    /// else `warn_at` (a warning).
    fn crossed(&mut self, warn_at: f64) -> Option<SpendEvent> {
        let (unit, used, spent, limit) = self.usage()?;
        if used >= 1.0 && !self.tripped {
            self.tripped = true;
            self.warned = true;
            Some(SpendEvent::Tripped(self.exceeded(unit, spent, limit)))
        } else if used >= warn_at && !self.warned {
            self.warned = true;
            Some(SpendEvent::Warning(self.exceeded(unit, spent, limit)))
        } else {
            None
        }
    }

    fn exceeded(&self, unit: Unit, spent: f64, limit: f64) -> Exceeded {
        Exceeded {
            budget: self.budget.name.get_ref().clone(),
            period: self.budget.period,
            identity: self.budget.identity.as_ref().map(|i| i.get_ref().clone()),
            unit,
            spent,
            limit,
            resets_at_ms: self.start_ms + self.budget.period.millis(),
            shadow: self.budget.shadow,
        }
    }
}

/// A budget's state, for metrics and `/policy`.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStatus {
    /// The budget's name.
    pub budget: String,
    /// Money spent in the current window.
    pub usd: f64,
    /// Tokens used in the current window.
    pub tokens: u64,
    /// The most used unit's fraction of its limit (1.0 and above: exhausted).
    pub used: f64,
}

/// What the last usage report said, so the next one charges only what is new.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// The report's UTC day; a report of a new day starts from zero.
    day: String,
    /// Each listed session's cost so far that day.
    sessions: HashMap<String, Cost>,
    /// The cost of sessions the report did not list (its totals less the listed sessions).
    unlisted: Cost,
}

/// The spend ledger: every budget's current window, and what the gateway last reported.
#[derive(Debug, Clone)]
pub struct Ledger {
    warn_at: f64,
    windows: Vec<Window>,
    seen: Seen,
    /// When the last usage report was read (Unix ms).
    measured_at_ms: Option<u64>,
    /// How old a report may be before spend counts as unknown (`None`: no poll).
    max_age_ms: Option<u64>,
}

fn less(now: Cost, before: Cost) -> Cost {
    Cost { usd: (now.usd - before.usd).max(0.0), tokens: now.tokens.saturating_sub(before.tokens) }
}

impl Ledger {
    /// A ledger for the policy's budgets, every window empty.
    pub fn new(spend: &Spend) -> Self {
        Ledger {
            warn_at: spend.warn_at,
            windows: spend.budgets.iter().cloned().map(Window::new).collect(),
            seen: Seen::default(),
            measured_at_ms: None,
            max_age_ms: spend.poll.then(|| spend.max_report_age_seconds.saturating_mul(1000)),
        }
    }

    /// Whether there are budgets to enforce.
    pub fn has_budgets(&self) -> bool {
        !self.windows.is_empty()
    }

    /// Charges what a usage report adds to the previous one: each listed session's new cost to
    /// the identity that last started a run on it (`runner_of`; none: global budgets only), and
    /// the growth of unlisted sessions to global budgets only (not for a partial report, whose
    /// totals are not the day's). A report of an earlier day than the last is ignored. Returns
    /// the thresholds crossed.
    pub fn observe(&mut self, report: &UsageReport, runner_of: &dyn Fn(&str) -> Option<String>, now_ms: u64) -> Vec<SpendEvent> {
        if report.day < self.seen.day {
            return Vec::new();
        }
        if report.day != self.seen.day {
            self.seen = Seen { day: report.day.clone(), ..Seen::default() };
        }
        let mut events = Vec::new();
        let mut listed = Cost::default();
        for session in &report.sessions {
            let cost = Cost { usd: session.usd, tokens: session.tokens };
            listed.usd += cost.usd;
            listed.tokens = listed.tokens.saturating_add(cost.tokens);
            let before = self.seen.sessions.insert(session.key.clone(), cost).unwrap_or_default();
            let new = less(cost, before);
            if new.usd > 0.0 || new.tokens > 0 {
                let identity = runner_of(&session.key).unwrap_or_default();
                events.extend(self.charge(&identity, new, now_ms));
            }
        }
        if report.partial {
            // Another client's view: it says nothing of sessions it does not list, nor is it the
            // poll's report (whose age decides whether spend is known).
            return events;
        }
        self.measured_at_ms = Some(now_ms);
        let unlisted = less(Cost { usd: report.usd, tokens: report.tokens }, listed);
        let new = less(unlisted, self.seen.unlisted);
        self.seen.unlisted = unlisted;
        if new.usd > 1e-12 || new.tokens > 0 {
            events.extend(self.charge("", new, now_ms));
        }
        events
    }

    /// Why spend is unknown now, if it is: spend is polled, and no report was read within
    /// `spend.max_report_age_seconds`.
    fn unmeasured(&self, now_ms: u64) -> Option<String> {
        let max_age = self.max_age_ms?;
        match self.measured_at_ms {
            None => Some("spend is not measured yet: no usage report has been read from the gateway since clawguard started".into()),
            Some(at) if now_ms.saturating_sub(at) > max_age => Some(format!("spend is unknown: the last usage report from the gateway was read {} s ago (spend.max_report_age_seconds = {})", now_ms.saturating_sub(at) / 1000, max_age / 1000)),
            Some(_) => None,
        }
    }

    /// Keeps what the previous policy's ledger counted for budgets that stay the same (name,
    /// period and identity): a reload neither forgives spend nor re-sends warnings.
    pub fn carry_from(&mut self, old: &Ledger) {
        for window in &mut self.windows {
            let same = |o: &&Window| o.budget.name.get_ref() == window.budget.name.get_ref() && o.budget.period == window.budget.period && o.budget.identity.as_ref().map(|i| i.get_ref()) == window.budget.identity.as_ref().map(|i| i.get_ref());
            if let Some(previous) = old.windows.iter().find(same) {
                let budget = window.budget.clone();
                *window = Window { budget, ..previous.clone() };
                // A raised limit clears a trip (and a warning) the new figures no longer reach.
                let used = window.usage().map_or(0.0, |u| u.1);
                window.tripped &= used >= 1.0;
                window.warned &= used >= self.warn_at;
            }
        }
        self.seen = old.seen.clone();
        self.measured_at_ms = old.measured_at_ms;
    }

    /// Takes the figures of the shared store (`[state] backend = "redis"`, every replica's
    /// reports counted once) as the current windows' spend: each budget reads its identity's
    /// figure (global budgets the empty name) for its period. After a report of every session
    /// (`fresh`: not a client's partial one) spend counts as measured now; returns the
    /// thresholds crossed.
    pub fn apply_shared(&mut self, totals: &WindowTotals, fresh: bool, now_ms: u64) -> Vec<SpendEvent> {
        if fresh {
            self.measured_at_ms = Some(now_ms);
        }
        let warn_at = self.warn_at;
        let mut events = Vec::new();
        for window in &mut self.windows {
            window.roll(now_ms);
            let figures = match window.budget.period {
                BudgetPeriod::Hour => &totals.hour,
                BudgetPeriod::Day => &totals.day,
            };
            let name = window.budget.identity.as_ref().map_or("", |i| i.get_ref().as_str());
            // A name the counters do not hold has spent nothing in this window yet.
            let cost = figures.get(name).copied().unwrap_or_default();
            // Shared counters only grow within a window; a smaller figure is a store that lost
            // its data, and what this replica counted stays.
            window.usd = window.usd.max(if cost.usd.is_finite() { cost.usd } else { 0.0 });
            window.tokens = window.tokens.max(cost.tokens);
            events.extend(window.crossed(warn_at));
        }
        events
    }

    /// Adds what runs of `identity` cost to every budget that covers it (`""`: runs of no
    /// known identity, covered by global budgets only); returns the
    /// thresholds this charge crossed (each once per window).
    pub fn charge(&mut self, identity: &str, cost: Cost, now_ms: u64) -> Vec<SpendEvent> {
        let usd = if cost.usd.is_finite() && cost.usd > 0.0 { cost.usd } else { 0.0 };
        let mut events = Vec::new();
        for window in self.windows.iter_mut().filter(|w| w.covers(identity)) {
            window.roll(now_ms);
            window.usd += usd;
            window.tokens = window.tokens.saturating_add(cost.tokens);
            events.extend(window.crossed(self.warn_at));
        }
        events
    }

    /// Whether `identity` may start a run now: refused while spend is unknown, or by the first
    /// enforced budget covering it that is exhausted in its current window.
    pub fn check(&mut self, identity: &str, now_ms: u64) -> Check {
        // Unknown spend refuses only where an enforced budget would be judged.
        let enforced = self.windows.iter().any(|w| w.covers(identity) && !w.budget.shadow);
        let mut check = Check { unmeasured: self.unmeasured(now_ms).filter(|_| enforced), ..Check::default() };
        for window in self.windows.iter_mut().filter(|w| w.covers(identity)) {
            window.roll(now_ms);
            let Some((unit, used, spent, limit)) = window.usage() else { continue };
            if used < 1.0 {
                continue;
            }
            let exceeded = window.exceeded(unit, spent, limit);
            if exceeded.shadow {
                check.shadowed.push(exceeded);
            } else if check.refused.is_none() {
                check.refused = Some(exceeded);
            }
        }
        check
    }

    /// Every budget's current figures.
    pub fn status(&mut self, now_ms: u64) -> Vec<BudgetStatus> {
        self.windows
            .iter_mut()
            .map(|w| {
                w.roll(now_ms);
                BudgetStatus { budget: w.budget.name.get_ref().clone(), usd: w.usd, tokens: w.tokens, used: w.usage().map_or(0.0, |u| u.1) }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 86_400_000;
    /// 2026-12-02T10:00:00Z.
    const T0: u64 = 1_796_205_600_000;

    fn ledger(toml_text: &str) -> Ledger {
        let policy: clawguard_policies::Policy = toml::from_str(toml_text).expect("test policy parses");
        Ledger::new(&policy.spend)
    }

    fn usd(usd: f64) -> Cost {
        Cost { usd, tokens: 0 }
    }

    #[test]
    fn issue19_a_budget_warns_at_the_threshold_then_trips_at_the_limit_once_each() {
        let mut l = ledger("[[spend.budget]]\nname = \"day\"\nperiod = \"day\"\nusd = 10.0\n");
        assert_eq!(l.charge("alice", usd(5.0), T0), vec![]);
        assert!(l.check("alice", T0).refused.is_none());
        let warned = l.charge("alice", usd(3.5), T0 + 1);
        assert!(matches!(&warned[..], [SpendEvent::Warning(e)] if e.budget == "day" && (e.spent - 8.5).abs() < 1e-9), "{warned:?}");
        assert_eq!(l.charge("alice", usd(0.5), T0 + 2), vec![], "a warning is sent once per window");
        let tripped = l.charge("bob", usd(1.0), T0 + 3);
        assert!(matches!(&tripped[..], [SpendEvent::Tripped(e)] if e.limit == 10.0 && e.unit == Unit::Usd), "a global budget counts every identity: {tripped:?}");
        assert_eq!(l.charge("bob", usd(1.0), T0 + 4), vec![], "a trip is sent once per window");
        let refused = l.check("carol", T0 + 5).refused.expect("past the limit, new runs are refused");
        assert_eq!(refused.resets_at_ms, T0 - T0 % DAY + DAY);
        assert!(refused.reason().contains("spend budget \"day\" (global, per day) is exhausted: $11.0000 of $10.00 spent; it resets at 2026-12-03T00:00:00Z"), "{}", refused.reason());
    }

    #[test]
    fn issue19_the_window_resets_at_the_next_utc_hour_or_day() {
        let mut l = ledger("[[spend.budget]]\nname = \"hourly\"\nperiod = \"hour\"\nusd = 1.0\n[[spend.budget]]\nname = \"daily\"\nperiod = \"day\"\nusd = 5.0\n");
        l.charge("a", usd(1.0), T0 + 10);
        assert_eq!(l.check("a", T0 + HOUR - 1).refused.map(|e| e.budget), Some("hourly".into()));
        assert!(l.check("a", T0 + HOUR).refused.is_none(), "a new hour starts empty");
        for h in 1..5 {
            l.charge("a", usd(1.0), T0 + h * HOUR);
        }
        let daily = l.check("a", T0 + 5 * HOUR).refused.expect("five dollars today");
        assert_eq!((daily.budget.as_str(), daily.resets_at_ms), ("daily", T0 - T0 % DAY + DAY));
        assert!(l.check("a", T0 - T0 % DAY + DAY).refused.is_none(), "a new UTC day starts empty");
        let tripped = l.charge("a", usd(1.0), T0 - T0 % DAY + DAY + 1);
        assert!(matches!(&tripped[..], [SpendEvent::Tripped(e)] if e.budget == "hourly"), "a new window trips again: {tripped:?}");
    }

    #[test]
    fn issue19_an_identity_budget_covers_only_that_identity_and_tokens_count_where_no_price_is() {
        let mut l = ledger(
            "[[identity]]\nname = \"alice\"\nscopes = []\n[[identity]]\nname = \"default\"\nscopes = []\n\
             [[spend.budget]]\nname = \"alice-tokens\"\nperiod = \"hour\"\nidentity = \"alice\"\ntokens = 1000\n",
        );
        l.charge("default", Cost { usd: 0.0, tokens: 5000 }, T0);
        assert!(l.check("alice", T0).refused.is_none(), "another identity's tokens do not count");
        let events = l.charge("alice", Cost { usd: 0.0, tokens: 1000 }, T0);
        assert!(matches!(&events[..], [SpendEvent::Tripped(e)] if e.unit == Unit::Tokens && e.identity.as_deref() == Some("alice")), "{events:?}");
        let refused = l.check("alice", T0).refused.expect("alice is out of tokens");
        assert!(refused.reason().contains("identity \"alice\", per hour) is exhausted: 1000 tokens of 1000 tokens"), "{}", refused.reason());
        assert!(l.check("default", T0).refused.is_none());
    }

    #[test]
    fn issue19_a_shadow_budget_records_what_it_would_refuse_and_refuses_nothing() {
        let mut l = ledger("[[spend.budget]]\nname = \"trial\"\nperiod = \"day\"\nusd = 1.0\nshadow = true\n");
        let events = l.charge("a", usd(2.0), T0);
        assert!(matches!(&events[..], [SpendEvent::Tripped(e)] if e.shadow), "{events:?}");
        let check = l.check("a", T0);
        assert!(check.refused.is_none());
        assert_eq!(check.shadowed.iter().map(|e| e.budget.as_str()).collect::<Vec<_>>(), ["trial"]);
    }

    #[test]
    fn issue19_a_reload_keeps_the_window_and_a_raised_limit_lifts_the_trip() {
        let mut old = ledger("[[spend.budget]]\nname = \"day\"\nperiod = \"day\"\nusd = 10.0\n");
        old.charge("a", usd(10.0), T0);
        let mut same = ledger("[[spend.budget]]\nname = \"day\"\nperiod = \"day\"\nusd = 10.0\n");
        same.carry_from(&old);
        assert!(same.check("a", T0).refused.is_some(), "a reload does not forgive spend");
        assert_eq!(same.charge("a", usd(0.1), T0), vec![], "nor sends the trip again");
        let mut raised = ledger("[[spend.budget]]\nname = \"day\"\nperiod = \"day\"\nusd = 20.0\n");
        raised.carry_from(&old);
        assert!(raised.check("a", T0).refused.is_none(), "the raised limit is not reached");
        assert!(matches!(&raised.charge("a", usd(6.0), T0)[..], [SpendEvent::Warning(_)]), "16 of 20 is past 80 %");
        let mut renamed = ledger("[[spend.budget]]\nname = \"other\"\nperiod = \"day\"\nusd = 10.0\n");
        renamed.carry_from(&old);
        assert!(renamed.check("a", T0).refused.is_none(), "a different budget starts empty");
    }

    #[test]
    fn issue19_bad_figures_charge_nothing_and_no_budgets_refuse_nothing() {
        let mut l = ledger("[[spend.budget]]\nname = \"day\"\nperiod = \"day\"\nusd = 1.0\n");
        for bad in [f64::NAN, f64::INFINITY, -5.0] {
            assert_eq!(l.charge("a", usd(bad), T0), vec![]);
        }
        assert_eq!(l.status(T0)[0].usd, 0.0);
        let mut none = ledger("");
        assert_eq!(none.charge("a", usd(1e9), T0), vec![]);
        assert_eq!(none.check("a", T0), Check::default());
    }

    fn report(day: &str, usd: f64, sessions: &[(&str, f64)]) -> UsageReport {
        let sessions = sessions.iter().map(|(k, c)| crate::protocol::usage::SessionUsage { key: (*k).into(), usd: *c, tokens: 0 }).collect();
        UsageReport { day: day.into(), usd, tokens: 0, sessions, partial: false }
    }

    #[test]
    fn issue19_usage_reports_charge_what_is_new_to_the_identity_that_ran_the_session() {
        let mut l = ledger(
            "[[identity]]\nname = \"alice\"\nscopes = []\n[[identity]]\nname = \"bob\"\nscopes = []\n\
             [[spend.budget]]\nname = \"all\"\nperiod = \"day\"\nusd = 100.0\n\
             [[spend.budget]]\nname = \"alice\"\nperiod = \"day\"\nidentity = \"alice\"\nusd = 1.0\n",
        );
        let runner = |key: &str| match key {
            "agent:main:alice" => Some("alice".to_string()),
            "agent:main:bob" => Some("bob".to_string()),
            _ => None,
        };
        let day = "2026-12-02";
        l.observe(&report(day, 0.5, &[("agent:main:alice", 0.3), ("agent:main:bob", 0.2)]), &runner, T0);
        let figures = |l: &mut Ledger, at: u64| l.status(at).iter().map(|b| (b.budget.clone(), (b.usd * 1000.0).round() / 1000.0)).collect::<Vec<_>>();
        assert_eq!(figures(&mut l, T0 + 5), [("all".to_string(), 0.5), ("alice".to_string(), 0.3)]);
        l.observe(&report(day, 0.5, &[("agent:main:alice", 0.3), ("agent:main:bob", 0.2)]), &runner, T0 + 1);
        assert_eq!(figures(&mut l, T0 + 5), [("all".to_string(), 0.5), ("alice".to_string(), 0.3)], "the same report charges nothing again");
        let events = l.observe(&report(day, 1.6, &[("agent:main:alice", 1.1), ("agent:main:bob", 0.2)]), &runner, T0 + 2);
        assert!(matches!(&events[..], [SpendEvent::Tripped(e)] if e.budget == "alice"), "{events:?}");
        assert_eq!(figures(&mut l, T0 + 5), [("all".to_string(), 1.6), ("alice".to_string(), 1.1)], "0.3 unlisted (channel, cron) runs count globally");
        assert!(l.check("alice", T0 + 3).refused.is_some() && l.check("bob", T0 + 3).refused.is_none());
        l.observe(&report("2026-12-01", 9.0, &[]), &runner, T0 + 4);
        assert_eq!(figures(&mut l, T0 + 5), [("all".to_string(), 1.6), ("alice".to_string(), 1.1)], "a report of an earlier day is ignored");
        let next_day = T0 - T0 % DAY + DAY;
        l.observe(&report("2026-12-03", 0.4, &[("agent:main:alice", 0.4)]), &runner, next_day);
        assert_eq!(figures(&mut l, next_day), [("all".to_string(), 0.4), ("alice".to_string(), 0.4)], "a new day's report counts from zero");
    }

    #[test]
    fn issue19_without_a_fresh_report_spend_is_unknown_and_enforced_budgets_refuse() {
        let mut l = ledger(
            "[[identity]]\nname = \"alice\"\nscopes = []\n[[identity]]\nname = \"bob\"\nscopes = []\n\
             [spend]\npoll = true\npoll_token = \"env:T\"\nmax_report_age_seconds = 60\n\
             [[spend.budget]]\nname = \"alice\"\nperiod = \"day\"\nidentity = \"alice\"\nusd = 1.0\n",
        );
        let none = |_: &str| None;
        assert!(l.check("alice", T0).unmeasured.expect("no report yet").contains("no usage report has been read"));
        assert_eq!(l.check("bob", T0).unmeasured, None, "no enforced budget covers bob");
        l.observe(&report("2026-12-02", 0.0, &[]), &none, T0);
        assert_eq!(l.check("alice", T0 + 60_000).unmeasured, None);
        let stale = l.check("alice", T0 + 61_000).unmeasured.expect("the report is too old");
        assert!(stale.contains("read 61 s ago (spend.max_report_age_seconds = 60)"), "{stale}");
    }

    #[test]
    fn issue19_a_clients_partial_report_charges_its_sessions_once_and_leaves_spend_unmeasured() {
        let mut l = ledger(
            "[[identity]]\nname = \"alice\"\nscopes = []\n\
             [spend]\npoll = true\npoll_token = \"env:T\"\n\
             [[spend.budget]]\nname = \"all\"\nperiod = \"day\"\nusd = 100.0\n\
             [[spend.budget]]\nname = \"alice\"\nperiod = \"day\"\nidentity = \"alice\"\nusd = 1.0\n",
        );
        let runner = |key: &str| (key == "agent:main:alice").then(|| "alice".to_string());
        let day = "2026-12-02";
        let figures = |l: &mut Ledger| l.status(T0 + 9).iter().map(|b| (b.usd * 1000.0).round() / 1000.0).collect::<Vec<_>>();
        l.observe(&report(day, 0.5, &[("agent:main:alice", 0.3)]), &runner, T0);
        assert_eq!(figures(&mut l), [0.5, 0.3]);
        // A client that sees only alice's session: its totals (0.7) are not the day's.
        let partial = UsageReport { partial: true, ..report(day, 0.7, &[("agent:main:alice", 0.7)]) };
        let events = l.observe(&partial, &runner, T0 + 1);
        assert_eq!(figures(&mut l), [0.9, 0.7], "alice's growth counts for her and globally; the partial totals do not");
        assert_eq!(events, vec![]);
        assert!(l.check("alice", T0 + 120_001).unmeasured.is_some(), "a partial report does not make spend measured");
        l.observe(&report(day, 0.95, &[("agent:main:alice", 0.7)]), &runner, T0 + 3);
        assert_eq!(figures(&mut l), [0.95, 0.7], "the poll's next report charges only what neither charged");
    }

    #[test]
    fn issue19_shared_figures_replace_the_windows_and_cross_thresholds_once() {
        let mut l = ledger(
            "[[identity]]\nname = \"alice\"\nscopes = []\n\
             [spend]\npoll = true\npoll_token = \"env:T\"\n\
             [[spend.budget]]\nname = \"all\"\nperiod = \"day\"\nusd = 1.0\n\
             [[spend.budget]]\nname = \"alice-hour\"\nperiod = \"hour\"\nidentity = \"alice\"\ntokens = 1000\n",
        );
        let totals = |global: f64, alice_tokens: u64| WindowTotals {
            hour: [("alice".to_string(), Cost { usd: 0.0, tokens: alice_tokens })].into(),
            day: [(String::new(), Cost { usd: global, tokens: 0 })].into(),
        };
        assert!(l.check("alice", T0).unmeasured.is_some(), "nothing read yet");
        assert_eq!(l.apply_shared(&totals(0.5, 100), true, T0), vec![]);
        assert_eq!(l.check("alice", T0).unmeasured, None, "shared figures count as a fresh report");
        let events = l.apply_shared(&totals(0.9, 1000), true, T0 + 1);
        assert!(matches!(&events[..], [SpendEvent::Warning(w), SpendEvent::Tripped(t)] if w.budget == "all" && t.budget == "alice-hour" && t.unit == Unit::Tokens), "{events:?}");
        assert_eq!(l.apply_shared(&totals(0.9, 1000), true, T0 + 2), vec![], "each threshold once per window");
        assert!(l.check("alice", T0 + 3).refused.is_some_and(|e| e.budget == "alice-hour"));
        assert_eq!(l.apply_shared(&totals(0.2, 10), true, T0 + 4), vec![], "a store that lost its counters does not forgive what was counted");
        assert!(l.check("alice", T0 + 5).refused.is_some());
        assert!(l.check("alice", T0 - T0 % HOUR + HOUR).refused.is_none(), "the hour resets");
    }
}
