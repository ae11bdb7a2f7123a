//! Fault injection: which fault, if any, a request gets. Random numbers come from a counter
//! hashed with the seed (SplitMix64), so the n-th request to arrive always draws the same
//! numbers for a given seed and no lock is taken.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::MockConfig;

/// A fault the server injects into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Fail500,
    Fail503,
    Hang,
    ContextLength,
    MalformedJson,
    Truncate,
}

/// The fault rates of a configuration, as cumulative bands of one uniform draw in this order:
/// 500, 503, hang, context length, malformed JSON, truncation. When the rates add up to more
/// than 1, the later faults get what is left.
#[derive(Debug, Clone)]
pub(crate) struct FaultPlan {
    bands: [(f64, Fault); 6],
}

impl FaultPlan {
    pub fn from_config(config: &MockConfig) -> Self {
        let rates = [
            (config.fail_500, Fault::Fail500),
            (config.fail_503, Fault::Fail503),
            (config.hang, Fault::Hang),
            (config.context_length, Fault::ContextLength),
            (config.malformed_json, Fault::MalformedJson),
            (config.truncate, Fault::Truncate),
        ];
        let mut upper = 0.0;
        let bands = rates.map(|(rate, fault)| {
            upper += rate;
            (upper, fault)
        });
        Self { bands }
    }

    /// The fault for a uniform draw in [0, 1).
    pub fn pick(&self, u: f64) -> Fault {
        self.bands
            .iter()
            .find(|(upper, _)| u < *upper)
            .map_or(Fault::None, |(_, fault)| *fault)
    }
}

/// Deterministic random numbers by arrival order.
#[derive(Debug)]
pub(crate) struct Draws {
    seed: u64,
    next: AtomicU64,
}

impl Draws {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            next: AtomicU64::new(0),
        }
    }

    /// `N` uniform numbers in [0, 1) for the next request.
    pub fn next_uniforms<const N: usize>(&self) -> [f64; N] {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let mut state = splitmix64(self.seed ^ index.wrapping_mul(0xA076_1D64_78BD_642F));
        std::array::from_fn(|_| {
            state = splitmix64(state);
            (state >> 11) as f64 / (1u64 << 53) as f64
        })
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_become_bands() {
        let plan = FaultPlan::from_config(&MockConfig {
            fail_500: 0.25,
            truncate: 0.5,
            ..MockConfig::default()
        });
        assert_eq!(plan.pick(0.0), Fault::Fail500);
        assert_eq!(plan.pick(0.3), Fault::Truncate);
        assert_eq!(plan.pick(0.8), Fault::None);
        let all = FaultPlan::from_config(&MockConfig {
            hang: 1.0,
            ..MockConfig::default()
        });
        assert_eq!(all.pick(0.999_999), Fault::Hang);
        assert_eq!(
            FaultPlan::from_config(&MockConfig::default()).pick(0.0),
            Fault::None
        );
    }

    #[test]
    fn draws_are_uniform_and_repeatable() {
        let a = Draws::new(7);
        let b = Draws::new(7);
        let xs: Vec<[f64; 2]> = (0..10_000).map(|_| a.next_uniforms()).collect();
        let ys: Vec<[f64; 2]> = (0..10_000).map(|_| b.next_uniforms()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().flatten().all(|u| (0.0..1.0).contains(u)));
        let mean = xs.iter().map(|x| x[0]).sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert_ne!(
            Draws::new(8).next_uniforms::<1>(),
            Draws::new(7).next_uniforms::<1>()
        );
    }
}
