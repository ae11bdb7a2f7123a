//! Rate limits a provider announced in its answers' headers, beside the ones the spec
//! configured: what the run summary and `status` show once a gateway has seen them.

use serde::{Deserialize, Serialize};

/// One endpoint's announced and configured limits (per minute; `None`: not announced, or not
/// configured).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_tpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_tpm: Option<u32>,
    /// The stages calling the endpoint, when reported per endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
}

impl DiscoveredLimits {
    /// Whether the provider announced anything.
    pub fn is_known(&self) -> bool {
        self.provider_rpm.is_some() || self.provider_tpm.is_some()
    }

    /// `500 rpm, 200000 tpm (configured 1000 rpm)`.
    pub fn describe(&self) -> String {
        let figures = |rpm: Option<u32>, tpm: Option<u32>| {
            let mut parts = Vec::new();
            if let Some(rpm) = rpm {
                parts.push(format!("{rpm} rpm"));
            }
            if let Some(tpm) = tpm {
                parts.push(format!("{tpm} tpm"));
            }
            parts.join(", ")
        };
        let provider = figures(self.provider_rpm, self.provider_tpm);
        let configured = figures(self.configured_rpm, self.configured_tpm);
        if configured.is_empty() {
            format!("{provider} (none configured)")
        } else {
            format!("{provider} (configured {configured})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_as_status_shows_them() {
        let limits = DiscoveredLimits {
            provider_rpm: Some(500),
            provider_tpm: Some(200_000),
            configured_rpm: Some(1000),
            ..DiscoveredLimits::default()
        };
        assert_eq!(
            limits.describe(),
            "500 rpm, 200000 tpm (configured 1000 rpm)"
        );
        let adopted = DiscoveredLimits {
            provider_rpm: Some(60),
            ..DiscoveredLimits::default()
        };
        assert_eq!(adopted.describe(), "60 rpm (none configured)");
        let old: DiscoveredLimits = serde_json::from_str("{}").unwrap();
        assert!(!old.is_known());
    }
}
