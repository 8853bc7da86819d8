//! The sidecar's log: `FORGE_LOG` chooses what is written to stderr, except
//! the HTTP client's wire-level targets, which stay off at every level.
//!
//! The HTTP client traces each request it sends as a hex dump with a text
//! column, headers included, so at `trace` the forge token would reach the
//! log (split over lines, but whole once put back together). No filter a
//! user writes can turn those targets back on: they are dropped by a second
//! filter that `FORGE_LOG` does not reach. What the client has to say about
//! a failed call reaches the log through the forge error instead.

use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Crates whose log can carry request bytes (headers, bodies) as they go
/// over the wire.
const WIRE_TARGETS: [&str; 2] = ["ureq", "ureq_proto"];

/// Whether events of `target` can carry wire bytes, so never reach the log.
pub fn is_wire_target(target: &str) -> bool {
    WIRE_TARGETS.iter().any(|crate_name| {
        target
            .strip_prefix(crate_name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// Log to stderr with `filter` (a `FORGE_LOG` value); the wire-level
/// targets stay off whatever it says. Errors name the bad filter.
pub fn init(filter: &str) -> Result<(), String> {
    let env = EnvFilter::try_new(filter).map_err(|e| {
        format!("configuration error: FORGE_LOG: '{filter}' is not a valid filter ({e})")
    })?;
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(env.and(filter_fn(|meta| !is_wire_target(meta.target()))));
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|e| format!("cannot start logging: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_targets_and_only_they_are_held_back() {
        for t in [
            "ureq",
            "ureq::unversioned::transport",
            "ureq_proto",
            "ureq_proto::util",
        ] {
            assert!(is_wire_target(t), "{t}");
        }
        for t in [
            "forge_sidecar",
            "forge_sidecar::forge::gitea",
            "ureqx",
            "hyper",
            "log",
        ] {
            assert!(!is_wire_target(t), "{t}");
        }
    }
}
