//! Spend reports on the surfaces: a usage report that clawguard read, from its own poll or from
//! a client's `sessions.usage` answer on the way through, charged to the budgets of the policy
//! in force. One path for both sources: with shared state (`[state] backend = "redis"`) every
//! replica's reports are counted once in the store and the ledger takes the store's figures;
//! otherwise the ledger counts what is new itself.

use crate::checks::context::Env;
use crate::protocol::usage::UsageReport;
use crate::state::shared::Unavailable;
use crate::state::spend::SpendEvent;

/// Charges what `report` adds to what was counted before; returns the thresholds crossed.
/// A shared store that does not answer is an error (nothing is charged; the figures go stale).
pub fn charge_report(env: &Env<'_>, report: &UsageReport) -> Result<Vec<SpendEvent>, Unavailable> {
    let runner_of = |key: &str| env.ledger.runner_of(key);
    match env.shared {
        Some(store) => {
            let totals = store.spend(&env.guard.spend_gateway, report, &runner_of, env.now_ms)?;
            Ok(env.guard.spend().apply_shared(&totals, !report.partial, env.now_ms))
        }
        None => Ok(env.guard.spend().observe(report, &runner_of, env.now_ms)),
    }
}
