//! Readiness state shared between the process and the `/readyz` endpoint.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The reason a new [`Health`] gives until the process says it is ready.
const STARTING: &str = "starting";

/// Whether the process is ready for work, and if not, why. Liveness needs no state: a process
/// that answers `/healthz` is alive.
#[derive(Debug)]
pub struct Health {
    /// `None` when ready, else the reason it is not.
    not_ready: Mutex<Option<String>>,
}

impl Health {
    /// A health state that is not ready, with the reason `"starting"`.
    pub fn new() -> Arc<Health> {
        Arc::new(Health {
            not_ready: Mutex::new(Some(STARTING.to_owned())),
        })
    }

    /// Marks the process ready: `/readyz` answers 200.
    pub fn set_ready(&self) {
        let was = self.state().take();
        if let Some(reason) = was {
            tracing::info!(previous_reason = %reason, "telemetry readiness: ready");
        }
    }

    /// Marks the process not ready: `/readyz` answers 503 with `reason` as the body.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        let reason = reason.into();
        let mut state = self.state();
        if state.as_deref() == Some(reason.as_str()) {
            return;
        }
        tracing::info!(reason = %reason, "telemetry readiness: not ready");
        *state = Some(reason);
    }

    /// `Ok` when ready, else the reason it is not.
    pub fn readiness(&self) -> Result<(), String> {
        match self.state().as_ref() {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }

    fn state(&self) -> MutexGuard<'_, Option<String>> {
        self.not_ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_not_ready_then_follows_the_calls() {
        let health = Health::new();
        assert_eq!(health.readiness(), Err("starting".to_owned()));
        health.set_ready();
        assert_eq!(health.readiness(), Ok(()));
        health.set_not_ready("draining");
        assert_eq!(health.readiness(), Err("draining".to_owned()));
        health.set_not_ready(String::from("queue unreachable"));
        assert_eq!(health.readiness(), Err("queue unreachable".to_owned()));
        health.set_ready();
        assert_eq!(health.readiness(), Ok(()));
    }
}
