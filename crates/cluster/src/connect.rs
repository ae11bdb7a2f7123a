//! Connecting to NATS: one or several server URLs, user/password, token, a credentials file
//! (JWT and nkey), TLS with a private CA and client certificates, and reconnection with capped
//! exponential backoff that never gives up once connected. Secrets come in from the
//! environment (the CLI reads them) and are never printed: `Debug` redacts them and URLs are
//! logged without credentials.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, ServerAddr};
use tokio::time::Instant;

use crate::ClusterError;

/// How to reach and authenticate to the NATS servers.
#[derive(Clone, Default)]
pub struct NatsOptions {
    /// Server URLs; the client picks one and fails over to the others (and to servers the
    /// cluster announces).
    pub servers: Vec<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// A `.creds` file holding a user JWT and its nkey seed.
    pub credentials_file: Option<PathBuf>,
    /// CA certificate(s) that signed the servers' certificates.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse plain-text connections.
    pub tls_required: bool,
    /// Connection name the servers show in their monitoring.
    pub name: String,
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("servers", &self.redacted_servers())
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("credentials_file", &self.credentials_file)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_required", &self.tls_required)
            .finish()
    }
}

impl NatsOptions {
    /// Options for a comma-separated list of server URLs.
    pub fn for_servers(servers: &str) -> Self {
        Self {
            servers: servers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            name: "rubricmill".into(),
            ..Self::default()
        }
    }

    /// The server list with any `user:password@` removed, for messages and logs.
    pub fn redacted_servers(&self) -> String {
        self.servers
            .iter()
            .map(|server| redact(server))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Checks the options without connecting: URLs parse, files exist, pairs are complete.
    pub fn check(&self) -> Result<Vec<ServerAddr>, ClusterError> {
        if self.servers.is_empty() {
            return Err(ClusterError::Option {
                option: "nats",
                reason: "no server URL given".into(),
            });
        }
        let mut addrs = Vec::new();
        for server in &self.servers {
            let addr = server
                .parse::<ServerAddr>()
                .map_err(|e| ClusterError::Option {
                    option: "nats",
                    reason: format!("{}: {e}", redact(server)),
                })?;
            addrs.push(addr);
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(ClusterError::Option {
                option: "nats-user",
                reason: "a password is set (RUBRICMILL_NATS_PASSWORD) but no user".into(),
            });
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ClusterError::Option {
                option: "nats-cert",
                reason: "a client certificate needs both --nats-cert and --nats-key".into(),
            });
        }
        for (option, path) in [
            ("nats-creds", &self.credentials_file),
            ("nats-ca", &self.tls_ca),
            ("nats-cert", &self.tls_cert),
            ("nats-key", &self.tls_key),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(ClusterError::Option {
                    option,
                    reason: format!("{} is not a readable file", path.display()),
                });
            }
        }
        Ok(addrs)
    }
}

/// One server URL with any `user:password@` removed.
fn redact(server: &str) -> String {
    match server.split_once('@') {
        Some((head, host)) => match head.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://<redacted>@{host}"),
            None => format!("<redacted>@{host}"),
        },
        None => server.to_owned(),
    }
}

/// The last permissions violation the server reported to this process. The server reports a
/// denied publish asynchronously and the request itself only times out, so errors of
/// JetStream requests carry this to say why (see [`ClusterError::js`]).
static LAST_DENIAL: Mutex<Option<(Instant, String)>> = Mutex::new(None);

/// The server's last permissions violation, if it came within the last minute (a request
/// times out within that).
pub(crate) fn last_denial() -> Option<String> {
    let denial = LAST_DENIAL.lock().ok()?;
    let (at, message) = denial.as_ref()?;
    (at.elapsed() < Duration::from_secs(60)).then(|| message.clone())
}

fn record_denial(message: &str) {
    if let Ok(mut denial) = LAST_DENIAL.lock() {
        *denial = Some((Instant::now(), message.to_owned()));
    }
}

/// Connects, retrying the first connection for up to 30 s with backoff (servers may still be
/// starting), except when the servers refuse the credentials or TLS, which no retry mends.
/// Once connected, the client reconnects by itself with backoff (100 ms doubling to 5 s) for as
/// long as the process lives.
pub async fn connect(options: &NatsOptions) -> Result<Client, ClusterError> {
    let addrs = options.check()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0u32;
    loop {
        let connect = connect_options(options).await?;
        let error = match connect.connect(addrs.clone()).await {
            Ok(client) => {
                tracing::debug!(servers = %options.redacted_servers(), "connected to nats");
                return Ok(client);
            }
            Err(error) => error,
        };
        let hopeless = matches!(
            error.kind(),
            ConnectErrorKind::Authentication
                | ConnectErrorKind::AuthorizationViolation
                | ConnectErrorKind::Tls
                | ConnectErrorKind::ServerParse
        );
        if hopeless || Instant::now() >= deadline {
            return Err(ClusterError::Connect {
                servers: options.redacted_servers(),
                reason: error.to_string(),
            });
        }
        attempt += 1;
        tracing::warn!(servers = %options.redacted_servers(), attempt, error = %error, "nats not reachable yet, retrying");
        tokio::time::sleep(backoff(attempt)).await;
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(attempt.min(6))).min(Duration::from_secs(5))
}

async fn connect_options(options: &NatsOptions) -> Result<ConnectOptions, ClusterError> {
    let disconnected = Arc::new(AtomicBool::new(false));
    let mut connect = ConnectOptions::new()
        .name(&options.name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| backoff(attempts as u32))
        .event_callback(move |event| {
            let disconnected = disconnected.clone();
            async move {
                match event {
                    async_nats::Event::Connected if disconnected.swap(false, Ordering::SeqCst) => {
                        tracing::info!("nats reconnected")
                    }
                    async_nats::Event::Disconnected => {
                        disconnected.store(true, Ordering::SeqCst);
                        tracing::warn!("nats disconnected, reconnecting")
                    }
                    async_nats::Event::ServerError(error)
                        if error.to_string().to_ascii_lowercase().contains("permissions violation") =>
                    {
                        let message = error.to_string();
                        tracing::warn!(error = %message, "nats denied a request: this user lacks the permission");
                        record_denial(&message);
                    }
                    other => tracing::debug!(event = %other, "nats event"),
                }
            }
        });
    if let (Some(user), Some(password)) = (&options.user, &options.password) {
        connect = connect.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &options.token {
        connect = connect.token(token.clone());
    }
    if let Some(path) = &options.credentials_file {
        connect = connect
            .credentials_file(path)
            .await
            .map_err(|e| ClusterError::Option {
                option: "nats-creds",
                reason: format!("{}: {e}", path.display()),
            })?;
    }
    if let Some(ca) = &options.tls_ca {
        connect = connect.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
        connect = connect.add_client_certificate(cert.clone(), key.clone());
    }
    if options.tls_required {
        connect = connect.require_tls(true);
    }
    Ok(connect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_appear_in_messages() {
        let mut options = NatsOptions::for_servers("nats://alice:s3cret@a:4222, nats://b:4222");
        options.password = Some("hunter2".into());
        options.token = Some("tok-123".into());
        options.user = Some("alice".into());
        let shown = format!("{options:?} {}", options.redacted_servers());
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2") && !shown.contains("tok-123")
        );
        assert!(shown.contains("nats://<redacted>@a:4222,nats://b:4222"));
    }

    #[test]
    fn incomplete_options_name_the_flag() {
        let mut options = NatsOptions::for_servers("nats://a:4222");
        options.tls_cert = Some("/nonexistent/cert.pem".into());
        let error = options.check().unwrap_err().to_string();
        assert!(error.contains("nats-cert"), "{error}");
        let mut options = NatsOptions::for_servers("nats://a:4222");
        options.password = Some("x".into());
        assert!(
            options
                .check()
                .unwrap_err()
                .to_string()
                .contains("nats-user")
        );
        assert!(NatsOptions::for_servers(" ,").check().is_err());
        let mut options = NatsOptions::for_servers("nats://a:4222");
        options.credentials_file = Some("/nonexistent.creds".into());
        assert!(
            options
                .check()
                .unwrap_err()
                .to_string()
                .contains("nats-creds")
        );
    }
}
