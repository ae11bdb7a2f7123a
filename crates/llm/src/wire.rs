//! The OpenAI `/v1/chat/completions` wire format, as far as rubricmill speaks it. Shared by the
//! HTTP client and the mock server so both sides agree on every field.

use serde::{Deserialize, Serialize};

use crate::{ChatRequest, ResponseFormat};

/// `response_format` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireResponseFormat {
    /// Structured output with a JSON Schema (OpenAI, vLLM, SGLang, llama.cpp, LiteLLM).
    JsonSchema {
        json_schema: WireJsonSchema,
    },
    /// JSON mode: any JSON object (older servers, Ollama).
    JsonObject,
    Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireJsonSchema {
    pub name: String,
    pub schema: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireMessage {
    pub role: String,
    pub content: String,
}

/// Request body of `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireRequest {
    pub model: String,
    pub messages: Vec<WireMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// OpenAI reasoning models take this instead of `max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<WireResponseFormat>,
}

impl WireRequest {
    /// The wire form of a request; `schema_support` false sends JSON mode instead of a schema.
    pub fn from_request(request: &ChatRequest, schema_support: bool) -> Self {
        let response_format = request.response_format.as_ref().map(|format| {
            if schema_support {
                WireResponseFormat::JsonSchema {
                    json_schema: WireJsonSchema {
                        name: format.name.clone(),
                        schema: format.schema.clone(),
                        strict: None,
                    },
                }
            } else {
                WireResponseFormat::JsonObject
            }
        });
        Self {
            model: request.model.clone(),
            messages: request
                .messages
                .iter()
                .map(|m| WireMessage {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect(),
            temperature: Some(request.temperature),
            max_tokens: Some(request.max_tokens),
            max_completion_tokens: None,
            seed: request.seed,
            response_format,
        }
    }

    /// The request as the rest of rubricmill sees it (the mock server answers from this).
    pub fn to_request(&self) -> ChatRequest {
        let response_format = match &self.response_format {
            Some(WireResponseFormat::JsonSchema { json_schema }) => Some(ResponseFormat {
                name: json_schema.name.clone(),
                schema: json_schema.schema.clone(),
            }),
            _ => None,
        };
        ChatRequest {
            model: self.model.clone(),
            messages: self
                .messages
                .iter()
                .map(|m| rubricmill_core::Message::new(m.role.clone(), m.content.clone()))
                .collect(),
            temperature: self.temperature.unwrap_or(1.0),
            max_tokens: self
                .max_tokens
                .or(self.max_completion_tokens)
                .unwrap_or(1024),
            seed: self.seed,
            response_format,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireChoice {
    #[serde(default)]
    pub index: u32,
    pub message: WireResponseMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The assistant message of a choice; `content` may be null (refusals, tool calls).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireResponseMessage {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    /// Set by OpenAI when the model refused (structured outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// Response body of a successful `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    pub choices: Vec<WireChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

/// Error body: `{"error": {"message", "type", "code"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireErrorBody {
    pub error: WireError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireError {
    pub message: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rubricmill_core::Message;

    #[test]
    fn request_round_trips_through_the_wire_form() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![Message::new("system", "s"), Message::new("user", "u")],
            temperature: 0.2,
            max_tokens: 300,
            seed: Some(7),
            response_format: Some(ResponseFormat {
                name: "task".into(),
                schema: serde_json::json!({"type": "object"}),
            }),
        };
        let wire = WireRequest::from_request(&request, true);
        let json = serde_json::to_value(&wire).unwrap();
        assert_eq!(json["response_format"]["type"], "json_schema");
        assert_eq!(json["response_format"]["json_schema"]["name"], "task");
        let back: WireRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back.to_request(), request);
        let json_mode = serde_json::to_value(WireRequest::from_request(&request, false)).unwrap();
        assert_eq!(
            json_mode["response_format"],
            serde_json::json!({"type": "json_object"})
        );
    }
}
