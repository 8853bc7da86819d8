//! What the sidecar last learned of the forge: reachable, unreachable (and
//! why), refusing the token, or not asked yet.
//!
//! The start-up probe sets it first; every forge call's outcome updates it
//! after. `GET /health` reports it (the sidecar itself stays healthy while
//! the forge is away: reads say so to the agent, and the forge may return).

use std::sync::Mutex;
use std::time::Instant;

use crate::forge::ForgeError;

/// The forge's last known state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeState {
    /// Not asked yet (`--no-probe`, before the first call).
    Unknown,
    /// The forge answered (a refusal of one request is still an answer).
    Reachable,
    /// The forge answered 401/403: the token is not accepted.
    TokenRefused(String),
    /// The forge did not answer, or kept failing (timeout, DNS, TLS, 5xx).
    Unreachable(String),
}

impl ForgeState {
    /// The state an outcome of a forge call shows.
    pub fn of<T>(outcome: &Result<T, ForgeError>) -> ForgeState {
        match outcome {
            Ok(_) | Err(ForgeError::NotFound(_)) => ForgeState::Reachable,
            Err(ForgeError::Rejected {
                status: 401 | 403,
                message,
            }) => ForgeState::TokenRefused(message.clone()),
            Err(ForgeError::Rejected { .. }) => ForgeState::Reachable,
            Err(ForgeError::Unavailable(why)) => ForgeState::Unreachable(why.clone()),
        }
    }

    /// One line for `/health`, e.g. `forge: unreachable (cause)`.
    pub fn line(&self) -> String {
        match self {
            ForgeState::Unknown => "forge: not contacted yet".into(),
            ForgeState::Reachable => "forge: reachable".into(),
            ForgeState::TokenRefused(why) => format!("forge: refuses the token ({why})"),
            ForgeState::Unreachable(why) => format!("forge: unreachable ({why})"),
        }
    }
}

/// The forge's last known state and when it was learned; shared by the
/// calls that learn it and the `/health` answer.
#[derive(Debug)]
pub struct ForgeHealth {
    last: Mutex<(ForgeState, Option<Instant>)>,
}

impl Default for ForgeHealth {
    fn default() -> Self {
        ForgeHealth {
            last: Mutex::new((ForgeState::Unknown, None)),
        }
    }
}

impl ForgeHealth {
    /// Record what a forge call (or the probe) showed.
    pub fn record(&self, state: ForgeState) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = (state, Some(Instant::now()));
    }

    /// Record the state a forge call's outcome shows, and hand the outcome on.
    pub fn observe<T>(&self, outcome: Result<T, ForgeError>) -> Result<T, ForgeError> {
        self.record(ForgeState::of(&outcome));
        outcome
    }

    /// The last known state.
    pub fn state(&self) -> ForgeState {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// The `/health` line: the state and how long ago it was learned.
    pub fn line(&self) -> String {
        let (state, when) = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match when {
            Some(at) => format!("{}; learned {} s ago", state.line(), at.elapsed().as_secs()),
            None => state.line(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_states() {
        let ok: Result<(), ForgeError> = Ok(());
        assert_eq!(ForgeState::of(&ok), ForgeState::Reachable);
        let missing: Result<(), _> = Err(ForgeError::NotFound("x".into()));
        assert_eq!(ForgeState::of(&missing), ForgeState::Reachable);
        let token: Result<(), _> = Err(ForgeError::Rejected {
            status: 401,
            message: "bad token".into(),
        });
        assert_eq!(
            ForgeState::of(&token),
            ForgeState::TokenRefused("bad token".into())
        );
        let locked: Result<(), _> = Err(ForgeError::Rejected {
            status: 423,
            message: "archived".into(),
        });
        assert_eq!(ForgeState::of(&locked), ForgeState::Reachable);
        let down: Result<(), _> = Err(ForgeError::Unavailable("no route".into()));
        assert_eq!(
            ForgeState::of(&down),
            ForgeState::Unreachable("no route".into())
        );
    }

    #[test]
    fn the_last_outcome_wins() {
        let health = ForgeHealth::default();
        assert_eq!(health.line(), "forge: not contacted yet");
        let _ = health.observe::<()>(Err(ForgeError::Unavailable("refused".into())));
        assert!(
            health
                .line()
                .starts_with("forge: unreachable (refused); learned "),
            "{}",
            health.line()
        );
        let _ = health.observe(Ok(()));
        assert_eq!(health.state(), ForgeState::Reachable);
    }
}
