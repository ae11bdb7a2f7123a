//! Token counts before a call: the real BPE tokenizer for OpenAI model families (its tables ship
//! inside the tiktoken-rs crate, nothing is downloaded), and for other models a characters-per-
//! token estimate that calibrates itself against the prompt tokens servers report.

use std::sync::atomic::{AtomicU64, Ordering};

use rubricmill_core::Message;
use tiktoken_rs::CoreBPE;

/// Tokens a chat format adds per message (role markers) and once per reply.
const PER_MESSAGE: u64 = 4;
const PER_REPLY: u64 = 3;
/// Starting guess for non-OpenAI tokenizers: about four characters a token for English.
const DEFAULT_CHARS_PER_TOKEN: f64 = 4.0;

pub struct TokenEstimator {
    bpe: Option<&'static CoreBPE>,
    /// Calibrated characters per token, as f64 bits (used when `bpe` is None).
    chars_per_token: AtomicU64,
}

impl TokenEstimator {
    /// The exact tokenizer when the model belongs to an OpenAI family tiktoken knows, otherwise
    /// the calibrated estimate.
    pub fn for_model(model: &str) -> Self {
        let bpe = tiktoken_rs::bpe_for_model(model).ok();
        Self {
            bpe,
            chars_per_token: AtomicU64::new(DEFAULT_CHARS_PER_TOKEN.to_bits()),
        }
    }

    pub fn is_exact(&self) -> bool {
        self.bpe.is_some()
    }

    fn ratio(&self) -> f64 {
        f64::from_bits(self.chars_per_token.load(Ordering::Relaxed))
    }

    /// Tokens of one text.
    pub fn text(&self, text: &str) -> u64 {
        match self.bpe {
            Some(bpe) => bpe.encode_ordinary(text).len() as u64,
            None => (text.chars().count() as f64 / self.ratio()).ceil() as u64,
        }
    }

    /// Prompt tokens of a chat request.
    pub fn messages(&self, messages: &[Message]) -> u64 {
        messages
            .iter()
            .map(|m| PER_MESSAGE + self.text(&m.content))
            .sum::<u64>()
            + PER_REPLY
    }

    /// Folds a server-reported prompt token count into the estimate (no-op for exact tokenizers).
    pub fn observe(&self, messages: &[Message], reported_prompt_tokens: u64) {
        if self.bpe.is_some() || reported_prompt_tokens == 0 {
            return;
        }
        let overhead = messages.len() as u64 * PER_MESSAGE + PER_REPLY;
        let content_tokens = reported_prompt_tokens.saturating_sub(overhead).max(1);
        let chars: usize = messages.iter().map(|m| m.content.chars().count()).sum();
        let observed = (chars as f64 / content_tokens as f64).clamp(1.0, 12.0);
        // Exponential moving average: recent answers count, one odd answer does not swing it.
        let updated = 0.9 * self.ratio() + 0.1 * observed;
        self.chars_per_token
            .store(updated.to_bits(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_models_use_the_real_tokenizer() {
        let estimator = TokenEstimator::for_model("gpt-4o-mini");
        assert!(estimator.is_exact());
        // "hello world" is two tokens in o200k_base.
        assert_eq!(estimator.text("hello world"), 2);
        assert_eq!(
            estimator.messages(&[Message::new("user", "hello world")]),
            2 + PER_MESSAGE + PER_REPLY
        );
    }

    #[test]
    fn other_models_calibrate_toward_reported_counts() {
        let estimator = TokenEstimator::for_model("llama-3.1-8b-instruct");
        assert!(!estimator.is_exact());
        let messages = [Message::new("user", "x".repeat(3000))];
        let before = estimator.messages(&messages);
        // The server says the text is 1,000 tokens (3 characters a token).
        for _ in 0..100 {
            estimator.observe(&messages, 1000 + PER_MESSAGE + PER_REPLY);
        }
        let after = estimator.messages(&messages);
        assert!(before < 800, "{before}");
        assert!((990..=1020).contains(&after), "{after}");
    }
}
