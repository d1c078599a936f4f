//! `tracing` setup, with pingora's `log` records bridged in (and one expected fallback of
//! pingora's that it logs as an error lowered to debug).

use clawguard_policies::{LogFormat, Logging};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` overrides the policy's level.
pub fn init(cfg: &Logging) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(&v).map_err(|e| anyhow::anyhow!("RUST_LOG {v:?}: {e}"))?,
        _ => EnvFilter::try_new(&cfg.level).map_err(|e| anyhow::anyhow!("logging.level {:?}: {e}", cfg.level))?,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let installed = match cfg.format {
        LogFormat::Json => tracing::subscriber::set_global_default(builder.json().flatten_event(true).finish()),
        LogFormat::Human => tracing::subscriber::set_global_default(builder.finish()),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    log::set_boxed_logger(Box::new(PingoraLog(tracing_log::LogTracer::new()))).map_err(|e| anyhow::anyhow!("cannot bridge pingora's log records: {e}"))?;
    log::set_max_level(log::LevelFilter::Trace);
    Ok(())
}

/// pingora's `log` records into `tracing`, at the level clawguard gives them.
struct PingoraLog(tracing_log::LogTracer);

/// The level a `log` record is logged at: its own, except pingora's expected fallbacks.
fn level_for(target: &str, message: Option<&str>, level: log::Level) -> log::Level {
    // The connection pool lost a race for an idle upstream stream (another request took it)
    // and opens a new connection instead: routine under load, not an error.
    if level == log::Level::Error && target.starts_with("pingora_core::connectors") && message == Some("failed to acquire reusable stream") {
        return log::Level::Debug;
    }
    level
}

impl log::Log for PingoraLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = level_for(record.target(), record.args().as_str(), record.level());
        if level == record.level() {
            return self.0.log(record);
        }
        let lowered = log::Record::builder()
            .args(*record.args())
            .level(level)
            .target(record.target())
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build();
        self.0.log(&lowered);
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue17_pingoras_pool_fallback_is_not_an_error_and_nothing_else_changes() {
        let fallback = Some("failed to acquire reusable stream");
        assert_eq!(level_for("pingora_core::connectors", fallback, log::Level::Error), log::Level::Debug);
        assert_eq!(level_for("pingora_core::connectors::l4", fallback, log::Level::Error), log::Level::Debug);
        assert_eq!(level_for("pingora_core::connectors", Some("connect failed"), log::Level::Error), log::Level::Error);
        assert_eq!(level_for("pingora_proxy", fallback, log::Level::Error), log::Level::Error);
        assert_eq!(level_for("pingora_core::connectors", None, log::Level::Error), log::Level::Error);
    }
}
