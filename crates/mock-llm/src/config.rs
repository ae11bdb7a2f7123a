//! Settings of the mock server — where it listens, how slowly it answers, which rate limits it
//! enforces and which faults it injects — as command-line flags (clap) and as a config-file
//! table (serde), with the same defaults both ways.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// Everything `rubricmill mock-llm` can be told. Every field is a flag with a default; a config
/// file may give any subset of the fields.
#[derive(clap::Args, Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockConfig {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    #[command(flatten)]
    pub latency: Latency,

    /// Requests per minute (a bucket of RPM requests refilled over a minute, as OpenAI does).
    #[arg(long, value_name = "N")]
    pub rpm: Option<u32>,
    /// Tokens per minute: estimated prompt tokens plus completion tokens of the answer.
    #[arg(long, value_name = "N")]
    pub tpm: Option<u32>,
    /// Requests per second (GCRA), with `--burst` requests allowed at once.
    #[arg(long, value_name = "RATE")]
    pub rps: Option<f64>,
    /// Burst of `--rps`: how many requests may arrive at once (default: the rate, at least 1).
    #[arg(long, value_name = "N", requires = "rps")]
    pub burst: Option<u32>,

    /// Fraction of requests answered 500 (in [0, 1]).
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub fail_500: f64,
    /// Fraction of requests answered 503.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub fail_503: f64,
    /// Fraction of requests that hang for `--hang-ms` (then 504), i.e. until the client times out.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub hang: f64,
    /// How long a hanging request hangs.
    #[arg(long, value_name = "MS", default_value_t = 600_000)]
    pub hang_ms: u64,
    /// Fraction of answers whose content is not valid JSON (cut in the middle).
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub malformed_json: f64,
    /// Fraction of answers truncated with finish_reason "length".
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub truncate: f64,
    /// Fraction of requests answered 400 context_length_exceeded.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub context_length: f64,
    /// Fraction of judge answers that err (in [0, 1]): crg judge answers that prefer the wrong
    /// response, rubric-grade verdicts and nugget support checks that are flipped (per
    /// criterion or claim); drawn from a hash of the request, so the same request always gets
    /// the same answer.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub judge_error_rate: f64,
    /// Seed of the fault and latency random numbers (drawn in arrival order).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Require `Authorization: Bearer KEY` (never logged).
    #[arg(
        long,
        value_name = "KEY",
        env = "MOCK_LLM_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<ApiKey>,
    /// Models served (comma list); others get 404 model_not_found. Default: any model.
    #[arg(long, value_name = "MODELS", value_delimiter = ',')]
    pub models: Vec<String>,
    /// Answer 400 to `response_format` type json_schema, like servers without structured output.
    #[arg(long)]
    pub no_schema_support: bool,
    /// Answer `response_format` type json_schema with this status (400–599) and a validation
    /// error naming `response_format`, as llama-cpp-python's server answers a format type it
    /// does not know with a 500 (not a 400); JSON mode (json_object) is still served with valid
    /// JSON. Takes precedence over `no_schema_support`.
    #[arg(long, value_name = "STATUS")]
    pub refuse_json_schema: Option<u16>,
    /// Answer `response_format` type json_object with this status (400–599) and an error naming
    /// `response_format`, like servers without JSON mode; requests without a response format
    /// are still served.
    #[arg(long, value_name = "STATUS")]
    pub refuse_json_object: Option<u16>,
    /// Answer every chat request that would succeed with a 200 body of this many bytes: a
    /// completion whose content is padded with spaces, streamed in 64 KiB chunks with no
    /// Content-Length (chunked), like a runaway answer. The mock never holds the body in memory.
    #[arg(long, value_name = "BYTES")]
    pub oversized_body_bytes: Option<u64>,
    /// Declare the size of `oversized_body_bytes` answers in Content-Length instead of sending
    /// them chunked.
    #[arg(long, requires = "oversized_body_bytes")]
    pub oversized_body_content_length: bool,
    /// Batch APIs: how long a submitted batch (OpenAI, Azure or Anthropic) stays in progress
    /// before it ends. 0 ends it at the first look after it was created.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub batch_delay_ms: u64,
    /// Fraction of batch items (in [0, 1]) that fail with a server error in the batch's error
    /// file (Anthropic: an `errored` result), on top of the chat faults.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub batch_item_failure_rate: f64,
    /// Fraction of batches (in [0, 1]) that expire: the first half of their items is answered,
    /// the rest fails as `batch_expired` (Anthropic: `expired`).
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub batch_expire_rate: f64,
    /// Largest batch upload accepted (an OpenAI batch file, an Anthropic batch body); larger
    /// ones are answered 413. Uploads are kept in memory.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_BATCH_MAX_BYTES)]
    pub batch_max_bytes: u64,
    /// How many requests to keep for `requests()` and window statistics (counters go on).
    #[arg(long, value_name = "N", default_value_t = 2_000_000)]
    pub record_limit: usize,
    /// Total bytes of request bodies kept for `requests()`; past it, requests are still counted
    /// and kept for the window statistics, without their bodies.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RECORD_BODY_BYTES)]
    pub record_body_bytes: u64,
}

/// Default of [`MockConfig::batch_max_bytes`]: 200 MiB, OpenAI's limit for a batch file.
pub const DEFAULT_BATCH_MAX_BYTES: u64 = 200 * 1024 * 1024;

/// Default of [`MockConfig::record_body_bytes`]: 64 MiB.
pub const DEFAULT_RECORD_BODY_BYTES: u64 = 64 * 1024 * 1024;

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            latency: Latency::default(),
            rpm: None,
            tpm: None,
            rps: None,
            burst: None,
            fail_500: 0.0,
            fail_503: 0.0,
            hang: 0.0,
            hang_ms: 600_000,
            malformed_json: 0.0,
            truncate: 0.0,
            context_length: 0.0,
            judge_error_rate: 0.0,
            seed: 0,
            api_key: None,
            models: Vec::new(),
            no_schema_support: false,
            refuse_json_schema: None,
            refuse_json_object: None,
            oversized_body_bytes: None,
            oversized_body_content_length: false,
            batch_delay_ms: 0,
            batch_item_failure_rate: 0.0,
            batch_expire_rate: 0.0,
            batch_max_bytes: DEFAULT_BATCH_MAX_BYTES,
            record_limit: 2_000_000,
            record_body_bytes: DEFAULT_RECORD_BODY_BYTES,
        }
    }
}

impl MockConfig {
    /// Checks values clap and serde cannot: rates in [0, 1], positive limits, one latency shape.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("fail_500", self.fail_500),
            ("fail_503", self.fail_503),
            ("hang", self.hang),
            ("malformed_json", self.malformed_json),
            ("truncate", self.truncate),
            ("context_length", self.context_length),
            ("judge_error_rate", self.judge_error_rate),
            ("batch_item_failure_rate", self.batch_item_failure_rate),
            ("batch_expire_rate", self.batch_expire_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be a rate in [0, 1], got {rate}"));
            }
        }
        if let Some(rps) = self.rps
            && !(rps.is_finite() && rps > 0.0)
        {
            return Err(format!("rps must be positive, got {rps}"));
        }
        if self.burst == Some(0) {
            return Err("burst must be at least 1".into());
        }
        if self.burst.is_some() && self.rps.is_none() {
            return Err("burst needs rps".into());
        }
        if self.rpm == Some(0) || self.tpm == Some(0) {
            return Err("rpm and tpm must be at least 1".into());
        }
        for (name, status) in [
            ("refuse_json_schema", self.refuse_json_schema),
            ("refuse_json_object", self.refuse_json_object),
        ] {
            if let Some(status) = status
                && !(400..=599).contains(&status)
            {
                return Err(format!(
                    "{name} must be an error status in 400..=599, got {status}"
                ));
            }
        }
        if self.batch_max_bytes == 0 {
            return Err("batch_max_bytes must be at least 1".into());
        }
        if self.oversized_body_content_length && self.oversized_body_bytes.is_none() {
            return Err("oversized_body_content_length needs oversized_body_bytes".into());
        }
        self.latency.validate()
    }
}

/// How long the server waits before answering: one base shape (fixed, uniform or lognormal)
/// plus a cost per output token.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Latency {
    /// Fixed latency of every answer.
    #[arg(
        long = "latency-ms",
        value_name = "MS",
        conflicts_with_all = ["uniform_ms", "lognormal"]
    )]
    pub fixed_ms: Option<u64>,
    /// Latency drawn uniformly from [MIN, MAX] milliseconds.
    #[arg(
        long = "latency-uniform",
        value_name = "MIN_MS,MAX_MS",
        conflicts_with = "lognormal"
    )]
    pub uniform_ms: Option<UniformMs>,
    /// Lognormal latency with this median (ms) and sigma (of the underlying normal).
    #[arg(long = "latency-lognormal", value_name = "MEDIAN_MS,SIGMA")]
    pub lognormal: Option<LogNormalMs>,
    /// Extra milliseconds per completion token of the answer.
    #[arg(
        long = "latency-per-output-token-ms",
        value_name = "MS",
        default_value_t = 0.0
    )]
    pub per_output_token_ms: f64,
}

impl Latency {
    fn validate(&self) -> Result<(), String> {
        let shapes = usize::from(self.fixed_ms.is_some())
            + usize::from(self.uniform_ms.is_some())
            + usize::from(self.lognormal.is_some());
        if shapes > 1 {
            return Err(
                "give at most one of latency-ms, latency-uniform, latency-lognormal".into(),
            );
        }
        if !(self.per_output_token_ms.is_finite() && self.per_output_token_ms >= 0.0) {
            return Err(format!(
                "latency-per-output-token-ms must be >= 0, got {}",
                self.per_output_token_ms
            ));
        }
        Ok(())
    }

    /// True when no answer is ever delayed.
    pub fn is_zero(&self) -> bool {
        self.fixed_ms.unwrap_or(0) == 0
            && self.uniform_ms.is_none()
            && self.lognormal.is_none()
            && self.per_output_token_ms == 0.0
    }

    /// The delay of one answer; `u1` and `u2` are independent uniform numbers in [0, 1).
    pub fn sample(&self, u1: f64, u2: f64, completion_tokens: u64) -> Duration {
        let base_ms = if let Some(ms) = self.fixed_ms {
            ms as f64
        } else if let Some(UniformMs { min_ms, max_ms }) = self.uniform_ms {
            min_ms as f64 + (max_ms - min_ms) as f64 * u1
        } else if let Some(LogNormalMs { median_ms, sigma }) = self.lognormal {
            // Box–Muller: a standard normal from two uniforms.
            let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            median_ms * (sigma * z).exp()
        } else {
            0.0
        };
        let total_ms = base_ms + self.per_output_token_ms * completion_tokens as f64;
        Duration::from_secs_f64((total_ms / 1000.0).clamp(0.0, 86_400.0))
    }
}

/// `MIN,MAX` milliseconds of a uniform latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniformMs {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl FromStr for UniformMs {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (min, max) = text
            .split_once(',')
            .ok_or_else(|| format!("expected MIN_MS,MAX_MS, got {text:?}"))?;
        let min_ms: u64 = min
            .trim()
            .parse()
            .map_err(|e| format!("bad minimum {min:?}: {e}"))?;
        let max_ms: u64 = max
            .trim()
            .parse()
            .map_err(|e| format!("bad maximum {max:?}: {e}"))?;
        if min_ms > max_ms {
            return Err(format!("minimum {min_ms} is above maximum {max_ms}"));
        }
        Ok(Self { min_ms, max_ms })
    }
}

/// `MEDIAN_MS,SIGMA` of a lognormal latency.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogNormalMs {
    pub median_ms: f64,
    pub sigma: f64,
}

impl FromStr for LogNormalMs {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (median, sigma) = text
            .split_once(',')
            .ok_or_else(|| format!("expected MEDIAN_MS,SIGMA, got {text:?}"))?;
        let median_ms: f64 = median
            .trim()
            .parse()
            .map_err(|e| format!("bad median {median:?}: {e}"))?;
        let sigma: f64 = sigma
            .trim()
            .parse()
            .map_err(|e| format!("bad sigma {sigma:?}: {e}"))?;
        if !(median_ms.is_finite() && median_ms >= 0.0 && sigma.is_finite() && sigma >= 0.0) {
            return Err(format!("median and sigma must be >= 0, got {text:?}"));
        }
        Ok(Self { median_ms, sigma })
    }
}

/// An API key; its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for comparison with a request's bearer token.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl FromStr for ApiKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err("the api key is empty".into());
        }
        Ok(Self(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        config: MockConfig,
    }

    fn parse(args: &[&str]) -> Result<MockConfig, clap::Error> {
        let mut all = vec!["mock-llm"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|cli| cli.config)
    }

    #[test]
    fn flag_defaults_equal_the_serde_defaults() {
        // MOCK_LLM_API_KEY in the environment would fill --api-key.
        if std::env::var_os("MOCK_LLM_API_KEY").is_some() {
            return;
        }
        assert_eq!(parse(&[]).unwrap(), MockConfig::default());
        let from_json: MockConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(from_json, MockConfig::default());
    }

    #[test]
    fn every_flag_parses() {
        let config = parse(&[
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
            "--latency-uniform",
            "10,20",
            "--latency-per-output-token-ms",
            "0.5",
            "--rpm",
            "600",
            "--tpm",
            "90000",
            "--rps",
            "20",
            "--burst",
            "20",
            "--fail-500",
            "0.1",
            "--fail-503",
            "0.2",
            "--hang",
            "0.01",
            "--hang-ms",
            "5000",
            "--malformed-json",
            "0.05",
            "--truncate",
            "0.05",
            "--context-length",
            "0.01",
            "--seed",
            "7",
            "--api-key",
            "sk-test",
            "--models",
            "a,b",
            "--no-schema-support",
            "--refuse-json-schema",
            "500",
            "--refuse-json-object",
            "422",
            "--oversized-body-bytes",
            "1048576",
            "--oversized-body-content-length",
            "--batch-delay-ms",
            "250",
            "--batch-item-failure-rate",
            "0.1",
            "--batch-expire-rate",
            "0.5",
            "--batch-max-bytes",
            "4096",
        ])
        .unwrap();
        assert_eq!(
            config.latency.uniform_ms,
            Some(UniformMs {
                min_ms: 10,
                max_ms: 20
            })
        );
        assert_eq!(config.latency.per_output_token_ms, 0.5);
        assert_eq!(
            (config.rpm, config.tpm, config.rps, config.burst),
            (Some(600), Some(90000), Some(20.0), Some(20))
        );
        assert_eq!(config.models, vec!["a", "b"]);
        assert_eq!(config.api_key.as_ref().map(ApiKey::expose), Some("sk-test"));
        assert!(config.no_schema_support);
        assert_eq!(
            (config.refuse_json_schema, config.refuse_json_object),
            (Some(500), Some(422))
        );
        assert_eq!(config.oversized_body_bytes, Some(1 << 20));
        assert!(config.oversized_body_content_length);
        assert_eq!(config.hang_ms, 5000);
        assert_eq!(
            (
                config.batch_delay_ms,
                config.batch_item_failure_rate,
                config.batch_expire_rate,
                config.batch_max_bytes
            ),
            (250, 0.1, 0.5, 4096)
        );
        assert!(config.validate().is_ok());
        assert!(
            !format!("{config:?}").contains("sk-test"),
            "the key must not show in Debug"
        );
    }

    #[test]
    fn conflicting_or_bad_values_are_refused() {
        assert!(parse(&["--latency-ms", "5", "--latency-lognormal", "5,1"]).is_err());
        assert!(parse(&["--latency-uniform", "20,10"]).is_err());
        assert!(parse(&["--burst", "3"]).is_err());
        let config = parse(&["--fail-500", "1.5"]).unwrap();
        assert!(config.validate().unwrap_err().contains("fail_500"));
        let config: MockConfig = serde_json::from_str(
            r#"{"latency": {"fixed_ms": 5, "lognormal": {"median_ms": 5, "sigma": 1}}}"#,
        )
        .unwrap();
        assert!(config.validate().is_err());
        assert!(serde_json::from_str::<MockConfig>(r#"{"rpn": 5}"#).is_err());
        let config = parse(&["--refuse-json-schema", "200"]).unwrap();
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("refuse_json_schema")
        );
        assert!(parse(&["--oversized-body-content-length"]).is_err());
        let config = parse(&["--batch-expire-rate", "2"]).unwrap();
        assert!(config.validate().unwrap_err().contains("batch_expire_rate"));
        let config: MockConfig = serde_json::from_str(r#"{"batch_max_bytes": 0}"#).unwrap();
        assert!(config.validate().unwrap_err().contains("batch_max_bytes"));
        let config: MockConfig =
            serde_json::from_str(r#"{"oversized_body_content_length": true}"#).unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn latency_shapes() {
        let fixed = Latency {
            fixed_ms: Some(40),
            per_output_token_ms: 2.0,
            ..Latency::default()
        };
        assert_eq!(fixed.sample(0.3, 0.9, 10), Duration::from_millis(60));
        let uniform = Latency {
            uniform_ms: Some(UniformMs {
                min_ms: 10,
                max_ms: 30,
            }),
            ..Latency::default()
        };
        assert_eq!(uniform.sample(0.5, 0.0, 0), Duration::from_millis(20));
        let lognormal = Latency {
            lognormal: Some(LogNormalMs {
                median_ms: 100.0,
                sigma: 0.0,
            }),
            ..Latency::default()
        };
        assert_eq!(lognormal.sample(0.123, 0.456, 0).as_millis(), 100);
        assert!(Latency::default().is_zero());
        assert!(!fixed.is_zero());
    }
}
