//! The gateway pipelines call: it forwards to a provider, accounts usage and cost, and enforces
//! the job's hard budget (no new call once the budget is spent).

use std::sync::{Arc, Mutex};

use rubricmill_core::Usage;
use rubricmill_core::spec::Price;

use crate::{ChatProvider, ChatRequest, ChatResponse, LlmError};

#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayConfig {
    pub price_per_million: Option<Price>,
    pub max_cost_usd: Option<f64>,
    /// What earlier runs of the job already spent (from commit markers), counted against the
    /// budget.
    pub spent_before_usd: f64,
}

pub struct Gateway {
    provider: Arc<dyn ChatProvider>,
    config: GatewayConfig,
    totals: Mutex<Usage>,
}

impl Gateway {
    pub fn new(provider: Arc<dyn ChatProvider>, config: GatewayConfig) -> Self {
        Self {
            provider,
            config,
            totals: Mutex::new(Usage::default()),
        }
    }

    pub fn provider_kind(&self) -> &'static str {
        self.provider.kind()
    }

    /// Usage of every call made through this gateway so far.
    pub fn totals(&self) -> Usage {
        *self.totals.lock().expect("usage lock")
    }

    fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.config.price_per_million.map_or(0.0, |price| {
            (prompt_tokens as f64 * price.input + completion_tokens as f64 * price.output)
                / 1_000_000.0
        })
    }

    /// Sends one request; returns the answer and the usage of this call alone.
    pub async fn chat(&self, request: &ChatRequest) -> Result<(ChatResponse, Usage), LlmError> {
        if let Some(budget) = self.config.max_cost_usd {
            let spent = self.config.spent_before_usd + self.totals().cost_usd;
            if spent >= budget {
                return Err(LlmError::BudgetExhausted { budget, spent });
            }
        }
        let response = self.provider.chat(request).await?;
        let usage = Usage {
            calls: 1,
            tokens_in: response.usage.prompt_tokens,
            tokens_out: response.usage.completion_tokens,
            cost_usd: self.cost(
                response.usage.prompt_tokens,
                response.usage.completion_tokens,
            ),
            ..Usage::default()
        };
        self.totals.lock().expect("usage lock").add(&usage);
        Ok((response, usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimulatedProvider, TokenUsage};
    use rubricmill_core::Message;

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message::new("user", "hello there, general question")],
            temperature: 0.0,
            max_tokens: 100,
            seed: None,
            response_format: None,
        }
    }

    #[tokio::test]
    async fn budget_stops_new_calls_once_spent() {
        let config = GatewayConfig {
            price_per_million: Some(Price {
                input: 1_000_000.0,
                output: 0.0,
            }),
            max_cost_usd: Some(10.0),
            spent_before_usd: 0.0,
        };
        let gateway = Gateway::new(Arc::new(SimulatedProvider::new(0)), config);
        let (_, first) = gateway.chat(&request()).await.unwrap();
        assert!(first.cost_usd > 0.0);
        let mut calls = 1;
        let error = loop {
            match gateway.chat(&request()).await {
                Ok(_) => calls += 1,
                Err(error) => break error,
            }
            assert!(calls < 100, "budget never stopped the calls");
        };
        assert!(matches!(error, LlmError::BudgetExhausted { .. }), "{error}");
        let spent = gateway.totals().cost_usd;
        assert!(
            spent >= 10.0 && spent < 10.0 + first.cost_usd + 1e-9,
            "spent {spent}"
        );
        assert_eq!(gateway.totals().calls, calls);
    }

    #[test]
    fn cost_uses_both_prices() {
        let config = GatewayConfig {
            price_per_million: Some(Price {
                input: 2.0,
                output: 8.0,
            }),
            ..GatewayConfig::default()
        };
        let gateway = Gateway::new(Arc::new(SimulatedProvider::new(0)), config);
        let usage = TokenUsage {
            prompt_tokens: 500_000,
            completion_tokens: 250_000,
        };
        assert!((gateway.cost(usage.prompt_tokens, usage.completion_tokens) - 3.0).abs() < 1e-9);
    }
}
