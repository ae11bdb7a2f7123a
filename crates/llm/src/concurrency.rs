//! Adaptive concurrency (AIMD, after Vector's adaptive request concurrency): the number of
//! requests in flight grows by one when a request succeeds while the limit was in use, and
//! shrinks to 90 % when the provider pushes back (429, 503, timeout), at most once per
//! `decrease_cooldown`, within `[1, max]`.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct AdaptiveConcurrency {
    semaphore: Arc<Semaphore>,
    state: Mutex<State>,
    max: usize,
    decrease_cooldown: Duration,
}

struct State {
    /// The current limit (permits handed out + available + owed).
    limit: usize,
    /// Permits to swallow as they come back, after a decrease.
    owed: usize,
    last_decrease: Option<Instant>,
    in_flight: usize,
}

/// One request slot; return it with [`AdaptiveConcurrency::release`].
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    /// Whether the limit was fully in use when this slot was taken.
    saturated: bool,
}

/// How a request ended, for the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    Success,
    /// 429, 503 or a timeout.
    PushBack,
    /// Anything that says nothing about the provider's capacity.
    Neutral,
}

impl AdaptiveConcurrency {
    pub fn new(initial: usize, max: usize, decrease_cooldown: Duration) -> Self {
        let max = max.max(1);
        let initial = initial.clamp(1, max);
        Self {
            semaphore: Arc::new(Semaphore::new(initial)),
            state: Mutex::new(State {
                limit: initial,
                owed: 0,
                last_decrease: None,
                in_flight: 0,
            }),
            max,
            decrease_cooldown,
        }
    }

    pub fn limit(&self) -> usize {
        let state = self.state.lock().expect("concurrency lock");
        state.limit
    }

    pub async fn acquire(&self) -> Slot {
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closes");
        let mut state = self.state.lock().expect("concurrency lock");
        state.in_flight += 1;
        let saturated = state.in_flight >= state.limit;
        Slot {
            permit: Some(permit),
            saturated,
        }
    }

    pub fn release(&self, mut slot: Slot, feedback: Feedback) {
        let mut state = self.state.lock().expect("concurrency lock");
        state.in_flight = state.in_flight.saturating_sub(1);
        let permit = slot.permit.take();
        match feedback {
            Feedback::Success if slot.saturated && state.limit < self.max && state.owed == 0 => {
                state.limit += 1;
                self.semaphore.add_permits(1);
            }
            Feedback::PushBack => {
                let cooled = state
                    .last_decrease
                    .is_none_or(|at| at.elapsed() >= self.decrease_cooldown);
                if cooled && state.limit > 1 {
                    let target = ((state.limit as f64) * 0.9).floor().max(1.0) as usize;
                    state.owed += state.limit - target;
                    state.limit = target;
                    state.last_decrease = Some(Instant::now());
                }
            }
            _ => {}
        }
        if state.owed > 0
            && let Some(permit) = permit
        {
            state.owed -= 1;
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grows_when_saturated_and_shrinks_on_push_back() {
        let controller = AdaptiveConcurrency::new(2, 10, Duration::ZERO);
        for _ in 0..5 {
            let a = controller.acquire().await;
            let b = controller.acquire().await;
            controller.release(a, Feedback::Success);
            controller.release(b, Feedback::Success);
        }
        let grown = controller.limit();
        assert!(grown > 2 && grown <= 10, "{grown}");
        let slot = controller.acquire().await;
        controller.release(slot, Feedback::PushBack);
        assert_eq!(controller.limit(), ((grown as f64) * 0.9).floor() as usize);
    }

    #[tokio::test]
    async fn never_exceeds_the_limit_in_flight() {
        let controller = Arc::new(AdaptiveConcurrency::new(3, 3, Duration::ZERO));
        let mut slots = Vec::new();
        for _ in 0..3 {
            slots.push(controller.acquire().await);
        }
        let blocked = tokio::time::timeout(Duration::from_millis(50), controller.acquire()).await;
        assert!(blocked.is_err(), "a fourth slot was handed out");
        for slot in slots {
            controller.release(slot, Feedback::Neutral);
        }
        assert_eq!(controller.limit(), 3);
    }

    #[tokio::test]
    async fn a_decrease_takes_permits_out_of_circulation() {
        let controller = AdaptiveConcurrency::new(10, 10, Duration::ZERO);
        let slot = controller.acquire().await;
        controller.release(slot, Feedback::PushBack);
        assert_eq!(controller.limit(), 9);
        let mut slots = Vec::new();
        for _ in 0..9 {
            slots.push(controller.acquire().await);
        }
        let blocked = tokio::time::timeout(Duration::from_millis(50), controller.acquire()).await;
        assert!(blocked.is_err(), "more slots than the decreased limit");
    }
}
