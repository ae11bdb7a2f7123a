//! rubricmill's Anthropic Messages and Azure OpenAI providers against mock-llm over real HTTP,
//! and the gateway keeping to the rate limits the answers announce.

use std::sync::Arc;
use std::time::Duration;

use rubricmill_llm::anthropic::{API_VERSION, request_params};
use rubricmill_llm::azure::AzureTarget;
use rubricmill_llm::{
    AnthropicProvider, ChatProvider, Gateway, GatewayConfig, Limits, LlmError, OpenAiProvider,
    ProviderLimits,
};
use rubricmill_mock_llm::{MockConfig, MockServer};
use serde_json::Value;

use crate::client::request;
use crate::{endpoint, fatal, keyed, names_key_env, origin, start};

fn anthropic(server: &MockServer, key: Option<&str>) -> AnthropicProvider {
    AnthropicProvider::new(endpoint(origin(server), key)).unwrap()
}

fn azure(server: &MockServer, key: Option<&str>, version: &str) -> OpenAiProvider {
    let target = AzureTarget {
        deployment: "rubric-writer".into(),
        api_version: version.into(),
    };
    OpenAiProvider::azure(endpoint(origin(server), key), &target).unwrap()
}

#[tokio::test]
async fn anthropic_answers_are_structured_and_the_system_prompt_is_cached() {
    let (server, http) = start(keyed("sk-ant-right", MockConfig::default())).await;
    let provider = anthropic(&server, Some("sk-ant-right"));
    assert_eq!(provider.kind(), "anthropic");
    let answer = provider.chat(&request(1)).await.unwrap();
    // The forced tool's input is the answer: the crg rubric, as JSON text.
    let rubric: Value = serde_json::from_str(&answer.content).unwrap();
    assert!(!rubric["items"].as_array().unwrap().is_empty(), "{rubric}");
    assert_eq!(answer.finish_reason, "stop");
    let recorded = &server.requests()[0];
    assert_eq!(recorded.status, 200);
    assert_eq!(
        recorded.body.to_request().response_format,
        request(1).response_format
    );
    assert_eq!(answer.usage.prompt_tokens, recorded.prompt_tokens);
    assert_eq!(answer.usage.completion_tokens, recorded.completion_tokens);
    assert!(answer.usage.completion_tokens > 0);

    // The provider sent its system prompt with cache_control: the same prefix is now read from
    // the cache, and cache reads still count as prompt tokens.
    let headers = [
        ("x-api-key", "sk-ant-right"),
        ("anthropic-version", API_VERSION),
    ];
    let reply = http
        .post_with("/v1/messages", &request_params(&request(2)), &headers)
        .await;
    let message = reply.ok_json();
    let usage = &message["usage"];
    assert!(
        usage["cache_read_input_tokens"].as_u64().unwrap() > 0,
        "{usage}"
    );
    assert_eq!(usage["cache_creation_input_tokens"], 0);
    assert_eq!(message["content"][0]["type"], "tool_use");
    let again = provider.chat(&request(2)).await.unwrap();
    assert_eq!(
        again.usage.prompt_tokens,
        usage["input_tokens"].as_u64().unwrap()
            + usage["cache_read_input_tokens"].as_u64().unwrap()
    );

    // Without anthropic-version the endpoint refuses the request.
    let reply = http
        .post_with("/v1/messages", &request_params(&request(3)), &headers[..1])
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["type"], "error");
    server.shutdown().await;
}

#[tokio::test]
async fn anthropic_wrong_key_is_fatal_and_a_rate_limit_is_retryable_with_its_hint() {
    let (server, _) = start(keyed(
        "sk-ant-right",
        MockConfig {
            rpm: Some(1),
            ..MockConfig::default()
        },
    ))
    .await;
    let wrong = anthropic(&server, Some("sk-ant-wrong"));
    let message = fatal(wrong.chat(&request(1)).await);
    assert!(names_key_env(&message), "{message}");
    assert!(!message.contains("sk-ant-wrong"), "{message}");
    let provider = anthropic(&server, Some("sk-ant-right"));
    provider.chat(&request(1)).await.unwrap();
    assert_eq!(
        provider.provider_limits().requests_per_minute,
        Some(1),
        "read from anthropic-ratelimit-requests-limit"
    );
    match provider.chat(&request(2)).await {
        Err(LlmError::Retryable {
            throttled: true,
            retry_after: Some(wait),
            ..
        }) => assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60)),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn azure_calls_go_to_the_deployment_with_the_key_in_api_key() {
    let (server, http) = start(keyed("sk-ant-right", MockConfig::default())).await;
    let provider = azure(&server, Some("sk-ant-right"), "2024-10-21");
    assert_eq!(provider.kind(), "azure");
    let answer = provider.chat(&request(1)).await.unwrap();
    let rubric: Value = serde_json::from_str(&answer.content).unwrap();
    assert!(rubric["items"].is_array());
    // The key in api-key, not as a bearer token; a wrong one is fatal, naming its variable.
    let wrong = azure(&server, Some("wrong"), "2024-10-21");
    let message = fatal(wrong.chat(&request(1)).await);
    assert!(names_key_env(&message), "{message}");
    let body = serde_json::to_value(rubricmill_llm::wire::WireRequest::from_request(
        &request(1),
        true,
    ))
    .unwrap();
    let path = "/openai/deployments/rubric-writer/chat/completions";
    let bearer = http
        .post_with(
            &format!("{path}?api-version=2024-10-21"),
            &body,
            &[("authorization", "Bearer sk-ant-right")],
        )
        .await;
    assert_eq!(bearer.status, 401);
    // api-version is required.
    let unversioned = http
        .post_with(path, &body, &[("api-key", "sk-ant-right")])
        .await;
    assert_eq!(unversioned.status, 400);
    assert!(String::from_utf8_lossy(&unversioned.body).contains("api-version"));
    let versioned = http
        .post_with(
            &format!("{path}?api-version=2024-10-21"),
            &body,
            &[("api-key", "sk-ant-right")],
        )
        .await;
    assert_eq!(versioned.status, 200);
    server.shutdown().await;
}

fn gateway(provider: Arc<dyn ChatProvider>, rpm: Option<u32>) -> Gateway {
    Gateway::new(
        provider,
        GatewayConfig {
            model: "mock-model".into(),
            limits: Limits {
                requests_per_minute: rpm,
                tokens_per_minute: None,
            },
            ..GatewayConfig::default()
        },
    )
}

#[tokio::test]
async fn the_gateway_lowers_its_limits_to_the_providers_and_never_raises_them() {
    let (server, _) = start(MockConfig {
        rpm: Some(60),
        tpm: Some(1_000_000),
        ..MockConfig::default()
    })
    .await;
    let announced = ProviderLimits {
        requests_per_minute: Some(60),
        tokens_per_minute: Some(1_000_000),
    };
    let openai = || {
        Arc::new(OpenAiProvider::new(endpoint(server.base_url(), None)).unwrap())
            as Arc<dyn ChatProvider>
    };
    // The spec says 600 a minute, the provider 60: the gateway keeps to 60.
    let lowered = gateway(openai(), Some(600));
    assert_eq!(lowered.discovered_limits(), ProviderLimits::default());
    lowered.chat(&request(1)).await.unwrap();
    assert_eq!(lowered.discovered_limits(), announced);
    assert_eq!(
        lowered.effective_limits(),
        Limits {
            requests_per_minute: Some(60),
            tokens_per_minute: Some(1_000_000),
        }
    );
    // The spec says 30: the provider's 60 never raises it.
    let kept = gateway(openai(), Some(30));
    kept.chat(&request(2)).await.unwrap();
    assert_eq!(kept.discovered_limits(), announced);
    assert_eq!(kept.effective_limits().requests_per_minute, Some(30));
    // Anthropic's headers are read the same way.
    let messages = gateway(Arc::new(anthropic(&server, None)), Some(600));
    messages.chat(&request(3)).await.unwrap();
    assert_eq!(messages.discovered_limits(), announced);
    assert_eq!(messages.effective_limits().requests_per_minute, Some(60));
    server.shutdown().await;
}
