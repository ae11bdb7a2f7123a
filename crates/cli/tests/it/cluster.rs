//! The distributed mode end to end: a real nats-server with JetStream, mock-llm over HTTP, and
//! the coordinator and workers as separate `rubricmill` processes, killed and restarted the way
//! a cluster kills them.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rubricmill_mock_llm::MockConfig;
use rubricmill_testkit::{NatsCluster, NatsServer, free_port};

use crate::{Committed, Mock, crg_job, pairs_job, rubricmill, succeeded, write_pairs};

/// The fleets of these tests run one at a time: each is several processes, and two at once on a
/// small machine starve each other's timers (the shared-limit test measures pacing).
static ONE_FLEET_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A NATS server, a coordinator and workers, all stopped when dropped.
struct Fleet {
    _turn: std::sync::MutexGuard<'static, ()>,
    /// One server, or the members of a NATS cluster.
    nats: Vec<NatsServer>,
    dir: tempfile::TempDir,
    coordinator: Option<Child>,
    workers: Vec<(String, Child)>,
    spawned: usize,
    /// Extra queue arguments for submit and the coordinator.
    queue_args: Vec<String>,
    /// With per-role NATS users: each command runs as its role's user.
    roles: bool,
}

impl Fleet {
    fn start(queue_args: &[&str]) -> Option<Self> {
        let turn = ONE_FLEET_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let nats = vec![NatsServer::start()?];
        Some(Self::with_nats(turn, nats, queue_args))
    }

    /// A fleet on a three-server NATS cluster with everything replicated three times.
    fn start_clustered(queue_args: &[&str]) -> Option<Self> {
        let turn = ONE_FLEET_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cluster = NatsCluster::start(3)?;
        let mut args = vec!["--replicas", "3"];
        args.extend_from_slice(queue_args);
        Some(Self::with_nats(turn, cluster.servers, &args))
    }

    /// A fleet on a server with the shipped per-role users (deploy/nats/auth.conf): every
    /// command connects as the user of its role.
    fn start_with_roles() -> Option<Self> {
        let turn = ONE_FLEET_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let config = std::fs::read_to_string(crate::repo_root().join("deploy/nats/auth.conf"))
            .expect("deploy/nats/auth.conf");
        let passwords: Vec<(String, String)> = ROLES
            .iter()
            .map(|role| (password_env(role), role_password(role)))
            .collect();
        let env: Vec<(&str, &str)> = passwords
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let nats = vec![NatsServer::start_with_config(&config, &env)?];
        let mut fleet = Self::prepare(turn, nats, &[]);
        fleet.roles = true;
        fleet.start_coordinator();
        Some(fleet)
    }

    fn with_nats(
        turn: std::sync::MutexGuard<'static, ()>,
        nats: Vec<NatsServer>,
        queue_args: &[&str],
    ) -> Self {
        let mut fleet = Self::prepare(turn, nats, queue_args);
        fleet.start_coordinator();
        fleet
    }

    fn prepare(
        turn: std::sync::MutexGuard<'static, ()>,
        nats: Vec<NatsServer>,
        queue_args: &[&str],
    ) -> Self {
        Self {
            _turn: turn,
            nats,
            dir: tempfile::tempdir().unwrap(),
            coordinator: None,
            workers: Vec::new(),
            spawned: 0,
            // Short heartbeats: a killed worker leaves the membership within seconds.
            queue_args: ["--heartbeat-ttl", "3s"]
                .iter()
                .chain(queue_args)
                .map(|s| (*s).to_owned())
                .collect(),
            roles: false,
        }
    }

    fn nats_urls(&self) -> String {
        self.nats
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, subcommand: &str) -> Command {
        let mut command = rubricmill();
        command
            .arg(subcommand)
            .env("RUBRICMILL_NATS_URL", self.nats_urls())
            .env(
                "RUST_LOG",
                "warn,rubricmill_runtime=info,rubricmill_cluster=info",
            );
        if self.roles {
            let role = match subcommand {
                "submit" | "retry" | "cancel" => "submitter",
                "status" => "status",
                other => other,
            };
            as_role(&mut command, role);
        }
        command
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.dir().join(format!("{name}.log"))).unwrap()
    }

    fn start_coordinator(&mut self) {
        self.start_coordinator_with(&[], &[]);
    }

    /// Starts the coordinator; `extra` goes on its command line, `env` into its environment.
    fn start_coordinator_with(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        let child = self
            .command("coordinator")
            .args(["--reconcile-every", "500ms"])
            .args(extra)
            .args(&self.queue_args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(self.log("coordinator"))
            .spawn()
            .unwrap();
        self.coordinator = Some(child);
    }

    /// Stops the coordinator and starts another with extra arguments and environment.
    fn restart_coordinator_with(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        if let Some(mut child) = self.coordinator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.start_coordinator_with(extra, env);
    }

    /// Starts a worker process; `extra` goes on its command line.
    fn start_worker(&mut self, extra: &[&str]) -> String {
        self.start_worker_with_env(extra, &[])
    }

    /// The worker policy of this fleet's workers (unless a test passes its own `--policy`):
    /// the test key variable, mock-llm on any loopback port, and this fleet's folder for
    /// inputs and outputs.
    fn policy(&self) -> std::path::PathBuf {
        let path = self.dir().join("worker-policy.toml");
        if !path.exists() {
            let folder = self.dir().display().to_string();
            let text = format!(
                "api_key_env = [\"RUBRICMILL_TEST_LLM_KEY\"]\nllm_endpoints = [\"http://127.0.0.1:*/v1\"]\ninputs = [{folder:?}]\noutputs = [{folder:?}]\n"
            );
            std::fs::write(&path, text).unwrap();
        }
        path
    }

    /// Starts a worker process under the fleet's policy, with extra arguments and
    /// environment variables.
    fn start_worker_with_env(&mut self, extra: &[&str], env: &[(&str, &str)]) -> String {
        let mut command = self.command("worker");
        command.env("RUBRICMILL_WORKER_POLICY", self.policy());
        self.spawn_worker(command, extra, env)
    }

    /// Starts a worker process with no policy at all.
    fn start_worker_without_policy(&mut self, env: &[(&str, &str)]) -> String {
        let mut command = self.command("worker");
        command.env_remove("RUBRICMILL_WORKER_POLICY");
        self.spawn_worker(command, &[], env)
    }

    fn spawn_worker(
        &mut self,
        mut command: Command,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> String {
        self.spawned += 1;
        let id = format!("w{}", self.spawned);
        let child = command
            .args(["--id", &id])
            .args(&self.queue_args)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(self.log(&id))
            .spawn()
            .unwrap();
        self.workers.push((id.clone(), child));
        id
    }

    /// Sends SIGTERM to a worker and waits for it to exit; returns its exit status.
    fn terminate_worker(&mut self, index: usize) -> std::process::ExitStatus {
        let (_, mut child) = self.workers.remove(index);
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        child.wait().unwrap()
    }

    /// Kills a worker with SIGKILL.
    fn kill_worker(&mut self, index: usize) -> String {
        let (id, mut child) = self.workers.remove(index);
        child.kill().unwrap();
        child.wait().unwrap();
        id
    }

    fn submit(&self, spec: &Path) -> serde_json::Value {
        let output = succeeded(
            self.command("submit")
                .arg(spec)
                .arg("--json")
                .args(&self.queue_args),
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn run(&self, subcommand: &str, job: &str) -> String {
        let output = succeeded(self.command(subcommand).arg(job));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn status(&self, job: &str) -> Option<serde_json::Value> {
        let output = self
            .command("status")
            .args([job, "--json"])
            .output()
            .unwrap();
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).unwrap())
    }

    /// Polls `status` until `done` holds; panics with the last status and the logs otherwise.
    fn wait_for(
        &self,
        job: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(status) = self.status(job) {
                if done(&status) {
                    return status;
                }
                last = Some(status);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "job {job} did not get there in {timeout:?}; last status: {last:?}\n{}",
            self.logs()
        );
    }

    fn wait_complete(&self, job: &str, timeout: Duration) -> serde_json::Value {
        self.wait_for(job, timeout, |s| s["state"] == "complete")
    }

    /// Waits until `job`'s status counts `count` live workers.
    fn wait_workers(&self, job: &str, count: u64) {
        self.wait_for(job, Duration::from_secs(60), |s| s["workers"] == count);
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.dir()).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                text.push_str(&format!("--- {}\n", path.display()));
                for line in tail.into_iter().rev() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, child) in &mut self.workers {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(child) = &mut self.coordinator {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The roles of deploy/nats/auth.conf.
const ROLES: [&str; 4] = ["submitter", "coordinator", "worker", "status"];

fn password_env(role: &str) -> String {
    format!("RUBRICMILL_NATS_{}_PASSWORD", role.to_ascii_uppercase())
}

fn role_password(role: &str) -> String {
    format!("pw-{role}-e41")
}

/// Makes `command` connect as `role`'s user.
fn as_role(command: &mut Command, role: &str) {
    command
        .env("RUBRICMILL_NATS_USER", format!("rubricmill-{role}"))
        .env("RUBRICMILL_NATS_PASSWORD", role_password(role));
}

fn latency(ms: u64) -> rubricmill_mock_llm::Latency {
    rubricmill_mock_llm::Latency {
        fixed_ms: Some(ms),
        ..Default::default()
    }
}

/// mock-llm answering every request after `ms` milliseconds.
fn with_latency(ms: u64) -> MockConfig {
    MockConfig {
        latency: latency(ms),
        ..MockConfig::default()
    }
}

/// The ids every row must have, once each.
fn assert_exactly_once(committed: &Committed, pairs: usize) {
    let ids = committed.strings("pair_id");
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "an id was committed twice");
    let expected: HashSet<String> = (0..pairs).map(|i| format!("pair-{i:06}")).collect();
    let got: HashSet<String> = ids.into_iter().collect();
    assert_eq!(got, expected, "committed rows are not exactly the inputs");
}

#[test]
fn three_worker_processes_commit_every_record_once() {
    let Some(mut fleet) = Fleet::start(&[]) else {
        return;
    };
    let mock = Mock::start(with_latency(20));
    let spec = crg_job(fleet.dir(), "three", &mock, 300, "max_concurrency = 8");
    let metrics_port = free_port();
    fleet.start_worker(&["--metrics-addr", &format!("127.0.0.1:{metrics_port}")]);
    fleet.start_worker(&[]);
    fleet.start_worker(&[]);
    let submitted = fleet.submit(&spec);
    assert_eq!(submitted["planned"], 30);
    assert_eq!(submitted["queued"], 30);
    let status = fleet.wait_complete("three", Duration::from_secs(120));
    assert_eq!(status["committed"], 30);
    assert_eq!(status["failed"].as_array().unwrap().len(), 0);
    assert_eq!(status["progress"]["rows"], 300);
    let committed = Committed::read(&fleet.dir().join("out/three"));
    assert_eq!(committed.row_count() + committed.reject_count(), 300);
    assert_exactly_once(&committed, 300);
    let workers: HashSet<&str> = committed
        .markers
        .iter()
        .map(|m| m["worker_id"].as_str().unwrap())
        .collect();
    assert!(
        workers.is_subset(&HashSet::from(["w1", "w2", "w3"])),
        "{workers:?}"
    );
    assert!(workers.len() >= 2, "one worker did everything: {workers:?}");
    assert_eq!(mock.count(200), 300, "one call per pair");
    // The worker's metrics agree with what it committed.
    let mine = committed
        .markers
        .iter()
        .filter(|m| m["worker_id"] == "w1")
        .map(|m| m["rows"].as_u64().unwrap())
        .sum::<u64>();
    let metrics = Scrape::get(metrics_port);
    assert_eq!(
        metrics.value("rubricmill_rows_total", &[("job", "three")]),
        Some(mine as f64),
        "w1 committed {mine} rows; metrics:\n{}",
        metrics.text
    );
    assert_eq!(
        metrics.value("rubricmill_workers_live", &[]),
        Some(3.0),
        "{}",
        metrics.text
    );
    assert_eq!(http_get(metrics_port, "/readyz"), "ready");
    // Submitting a complete job again queues nothing.
    let again = fleet.submit(&spec);
    assert_eq!(
        (again["queued"].as_u64(), again["committed_before"].as_u64()),
        (Some(0), Some(30))
    );
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[test]
fn kill_nine_chaos_commits_exactly_once_and_replays_paid_calls_from_the_cache() {
    let Some(mut fleet) = Fleet::start(&["--ack-wait", "2s", "--max-deliver", "20"]) else {
        return;
    };
    let mock = Mock::start(with_latency(100));
    let pairs = 3000;
    let spec = crg_job(fleet.dir(), "chaos", &mock, pairs, "max_concurrency = 8");
    for _ in 0..3 {
        fleet.start_worker(&["--records", "8", "--shards", "1"]);
    }
    fleet.submit(&spec);
    // Kill a worker at a pseudo-random moment, start a replacement, at least ten times.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut kills = 0;
    while kills < 12 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 700));
        let victim = (seed % fleet.workers.len() as u64) as usize;
        fleet.kill_worker(victim);
        kills += 1;
        fleet.start_worker(&["--records", "8", "--shards", "1"]);
    }
    let status = fleet.wait_complete("chaos", Duration::from_secs(300));
    assert_eq!(status["failed"].as_array().unwrap().len(), 0, "{status}");
    let committed = Committed::read(&fleet.dir().join("out/chaos"));
    assert_exactly_once(&committed, pairs);
    let requests = mock.requests();
    // Every request the server received, answered or cut off by a kill.
    let received = requests.len();
    let distinct: HashSet<String> = requests
        .iter()
        .map(|r| serde_json::to_string(&r.body).unwrap())
        .collect();
    eprintln!(
        "chaos: {kills} kills, {received} requests received for {} distinct",
        distinct.len()
    );
    assert_eq!(distinct.len(), pairs, "one distinct request per pair");
    assert!(
        received as f64 <= 1.05 * distinct.len() as f64,
        "{received} requests for {} distinct ones after {kills} kills",
        distinct.len()
    );
    assert!(
        committed.marker_sum("rows") == pairs as u64,
        "markers disagree with the rows"
    );
    assert_spend_matches_the_server(&fleet, "chaos", &mock);
}

/// What `status` says the job paid (committed and uncommitted attempts) agrees with what the
/// server answered within 1 %, once the coordinator has read the last spend files. Requests a
/// kill cut off on the wire are apart in `cut_off` (the server may or may not have answered
/// them); only they may make the server's figure larger.
fn assert_spend_matches_the_server(fleet: &Fleet, job: &str, mock: &Mock) {
    let served: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    let served_calls = served.len() as f64;
    let served_tokens = served
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum::<u64>() as f64;
    // `paid` within 1 % below the server's figure, or above it by at most the cut-off part.
    let agrees = |paid: f64, cut_off: f64, server: f64| {
        paid <= server * 1.01 && server <= (paid + cut_off) * 1.01
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = fleet.status(job).expect("status");
        let progress = &status["progress"];
        let figure = |part: &str, field: &str| progress[part][field].as_u64().unwrap_or(0);
        let paid = |field: &str| figure("usage", field) + figure("uncommitted", field);
        let calls = paid("calls") as f64;
        let tokens = (paid("tokens_in") + paid("tokens_out")) as f64;
        let cut_calls = figure("cut_off", "calls") as f64;
        let cut_tokens = (figure("cut_off", "tokens_in") + figure("cut_off", "tokens_out")) as f64;
        let summary = format!(
            "{job}: status {calls} calls, {tokens} tokens ({} in markers, {cut_calls} cut off); the server served {served_calls} calls, {served_tokens} tokens",
            progress["usage"]["calls"]
        );
        if agrees(calls, cut_calls, served_calls) && agrees(tokens, cut_tokens, served_tokens) {
            eprintln!("{summary}");
            return;
        }
        assert!(Instant::now() < deadline, "{summary}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_nats_server_restart_mid_run_loses_nothing() {
    let Some(mut fleet) = Fleet::start(&["--ack-wait", "3s"]) else {
        return;
    };
    let mock = Mock::start(with_latency(50));
    let pairs = 600;
    let spec = crg_job(fleet.dir(), "restart", &mock, pairs, "max_concurrency = 4");
    fleet.start_worker(&["--shards", "1", "--records", "4"]);
    fleet.start_worker(&["--shards", "1", "--records", "4"]);
    fleet.submit(&spec);
    fleet.wait_for("restart", Duration::from_secs(60), |s| {
        s["progress"]["committed"].as_u64().unwrap_or(0) >= 3
    });
    fleet.nats[0].kill();
    std::thread::sleep(Duration::from_secs(2));
    fleet.nats[0].restart();
    // The coordinator dies too and its replacement rebuilds its view from the markers.
    let mut coordinator = fleet.coordinator.take().unwrap();
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    fleet.start_coordinator();
    let status = fleet.wait_complete("restart", Duration::from_secs(180));
    assert_eq!(status["committed"], 60);
    assert_eq!(status["failed"].as_array().unwrap().len(), 0, "{status}");
    assert_exactly_once(&Committed::read(&fleet.dir().join("out/restart")), pairs);
    assert_spend_matches_the_server(&fleet, "restart", &mock);
}

#[test]
fn a_shard_that_always_fails_is_recorded_after_max_deliver_and_retry_runs_it_again() {
    let Some(mut fleet) = Fleet::start(&["--max-deliver", "2", "--ack-wait", "5s"]) else {
        return;
    };
    let mock = Mock::start(MockConfig::default());
    let inputs = fleet.dir().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    write_pairs(&inputs.join("a.jsonl"), 20);
    write_pairs(&inputs.join("b.jsonl"), 5);
    let spec = pairs_job(fleet.dir(), "flaky", &inputs.join("*.jsonl"), &mock, "");
    // Planned with both files; then one disappears before any worker reads it.
    fleet.submit(&spec);
    let hidden = fleet.dir().join("b.jsonl.hidden");
    std::fs::rename(inputs.join("b.jsonl"), &hidden).unwrap();
    fleet.start_worker(&[]);
    let status = fleet.wait_complete("flaky", Duration::from_secs(120));
    let failed = status["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{status}");
    assert_eq!(failed[0]["attempts"], 2, "{status}");
    assert_eq!(status["committed"], 2);
    let text = fleet.run("status", "flaky");
    assert!(
        text.contains("1 failed") && text.contains("rubricmill retry flaky"),
        "{text}"
    );
    // The file is back: retry queues that shard only, and it commits.
    std::fs::rename(&hidden, inputs.join("b.jsonl")).unwrap();
    let attempts = |committed: &Committed| -> HashSet<String> {
        committed
            .markers
            .iter()
            .map(|m| m["attempt_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let before = attempts(&Committed::read(&fleet.dir().join("out/flaky")));
    assert!(
        fleet
            .run("retry", "flaky")
            .contains("1 failed shards queued again")
    );
    let status = fleet.wait_for("flaky", Duration::from_secs(120), |s| {
        s["state"] == "complete" && s["failed"].as_array().is_some_and(Vec::is_empty)
    });
    assert_eq!(status["committed"], 3);
    let committed = Committed::read(&fleet.dir().join("out/flaky"));
    assert_eq!(committed.row_count(), 25);
    let after = attempts(&committed);
    assert!(before.is_subset(&after), "a committed shard ran again");
    assert_eq!(after.len(), 3);
}

#[test]
fn the_coordinators_web_ui_shows_status_figures_and_failures_and_retries_with_the_token() {
    use crate::ui::{attribute, from, loaded_dom, metric, request, text};
    const TOKEN: &str = "ui-test-token-7f3";
    let Some(chromium) = rubricmill_testkit::Chromium::find() else {
        return;
    };
    let Some(mut fleet) = Fleet::start(&["--max-deliver", "2", "--ack-wait", "5s"]) else {
        return;
    };
    let ui_port = free_port();
    fleet.restart_coordinator_with(
        &["--ui-addr", &format!("127.0.0.1:{ui_port}")],
        &[("RUBRICMILL_UI_TOKEN", TOKEN)],
    );
    let mock = Mock::start(MockConfig::default());
    let inputs = fleet.dir().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    write_pairs(&inputs.join("a.jsonl"), 20);
    write_pairs(&inputs.join("b.jsonl"), 5);
    let spec = pairs_job(fleet.dir(), "watched", &inputs.join("*.jsonl"), &mock, "");
    fleet.submit(&spec);
    // One file goes missing after planning: its shard fails after two deliveries.
    let hidden = fleet.dir().join("b.jsonl.hidden");
    std::fs::rename(inputs.join("b.jsonl"), &hidden).unwrap();
    fleet.start_worker(&[]);
    fleet.wait_complete("watched", Duration::from_secs(120));
    let url = |fragment: &str| format!("http://127.0.0.1:{ui_port}/{fragment}");

    // The jobs page's figures are `status --json`'s (read before and after the page, equal).
    let mut compared = false;
    for _ in 0..5 {
        let before = fleet.status("watched").unwrap();
        let dom = loaded_dom(&chromium, &url("#/jobs"), "jobs");
        let after = fleet.status("watched").unwrap();
        if before != after {
            continue;
        }
        let status = after;
        let job = from(&dom, "data-job=\"watched\"");
        let progress = &status["progress"];
        let number = |v: &serde_json::Value| v.as_f64().unwrap();
        assert_eq!(metric(job, "planned"), number(&status["planned"]));
        assert_eq!(metric(job, "committed"), number(&status["committed"]));
        assert_eq!(metric(job, "pending"), number(&status["pending"]));
        assert_eq!(
            metric(job, "running"),
            status["running"].as_array().unwrap().len() as f64
        );
        assert_eq!(
            metric(job, "failed"),
            status["failed"].as_array().unwrap().len() as f64
        );
        assert_eq!(metric(job, "failed"), 1.0);
        assert_eq!(metric(job, "rows"), number(&progress["rows"]));
        assert_eq!(metric(job, "rejects"), number(&progress["rejects"]));
        assert_eq!(metric(job, "records"), number(&progress["records"]));
        assert_eq!(
            metric(job, "calls"),
            number(&progress["usage"]["calls"]) + number(&progress["uncommitted"]["calls"])
        );
        assert_eq!(metric(job, "workers"), number(&status["workers"]));
        assert_eq!(
            attribute(job, "data-metric=\"state\"", "data-value"),
            status["state"].as_str().unwrap()
        );
        assert!(dom.contains("data-writable=\"true\""), "a token is set");
        compared = true;
        break;
    }
    assert!(compared, "the status never held still");

    // The failures page names the shard, its reason and attempts, with a retry button.
    let status = fleet.status("watched").unwrap();
    let failed = &status["failed"][0];
    let shard = failed["shard"].as_str().unwrap();
    let dom = loaded_dom(&chromium, &url("#/failures"), "failures");
    let row = from(&dom, &format!("data-failed-shard=\"{shard}\""));
    assert_eq!(
        text(row, "data-col=\"reason\""),
        failed["reason"].as_str().unwrap()
    );
    assert_eq!(attribute(row, "data-col=\"attempts\"", "data-value"), "2");
    assert!(dom.contains("data-action=\"retry\" data-job=\"watched\""));

    // The workers page lists the live worker.
    let dom = loaded_dom(&chromium, &url("#/workers"), "workers");
    let worker = from(&dom, "data-worker=\"w1\"");
    assert_eq!(text(worker, "data-col=\"live\""), "live");

    // Retry wants the token; with it, the failed shard is queued again and commits.
    let (code, _) = request(ui_port, "POST", "/api/jobs/watched/retry", None).unwrap();
    assert_eq!(code, 403);
    let (code, _) = request(ui_port, "POST", "/api/jobs/watched/retry", Some("wrong")).unwrap();
    assert_eq!(code, 403);
    assert_eq!(
        fleet.status("watched").unwrap()["failed"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    std::fs::rename(&hidden, inputs.join("b.jsonl")).unwrap();
    let (code, body) = request(ui_port, "POST", "/api/jobs/watched/retry", Some(TOKEN)).unwrap();
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["queued"], 1);
    let status = fleet.wait_for("watched", Duration::from_secs(120), |s| {
        s["state"] == "complete" && s["failed"].as_array().is_some_and(Vec::is_empty)
    });
    assert_eq!(status["committed"], 3);
    let dom = loaded_dom(&chromium, &url("#/failures"), "failures");
    assert!(dom.contains("id=\"no-failures\""), "{dom}");
}

#[test]
fn four_workers_share_the_jobs_rate_limit_without_429s() {
    let Some(mut fleet) = Fleet::start(&[]) else {
        return;
    };
    // The server enforces the same 1,200 requests per minute the job declares.
    let mock = Mock::start(MockConfig {
        rps: Some(20.0),
        burst: Some(20),
        latency: latency(20),
        ..MockConfig::default()
    });
    let pairs = 400;
    let spec = crg_job(
        fleet.dir(),
        "shared",
        &mock,
        pairs,
        "requests_per_minute = 1200\nmax_concurrency = 16",
    );
    for _ in 0..4 {
        fleet.start_worker(&[]);
    }
    // Every worker knows the others before the first shard arrives.
    let warmup = crg_job(fleet.dir(), "warmup", &mock, 1, "");
    fleet.submit(&warmup);
    fleet.wait_complete("warmup", Duration::from_secs(60));
    fleet.wait_workers("warmup", 4);
    let warmup_requests = mock.requests().len();
    fleet.submit(&spec);
    let status = fleet.wait_complete("shared", Duration::from_secs(120));
    assert_eq!(status["progress"]["rows"], pairs as u64);
    let requests: Vec<_> = mock.requests().into_iter().skip(warmup_requests).collect();
    let throttled = requests.iter().filter(|r| r.status == 429).count();
    assert!(
        throttled * 100 <= requests.len(),
        "{throttled} of {} requests got 429",
        requests.len()
    );
    // Throughput while all four were busy: the middle of the run, by the server's clock.
    let answered: Vec<Duration> = requests
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.at)
        .collect();
    let (start, end) = (answered[pairs / 10], answered[pairs * 9 / 10]);
    let rate = (pairs * 8 / 10) as f64 / (end - start).as_secs_f64();
    eprintln!(
        "shared limit: {throttled} of {} requests got 429, {rate:.2} requests/s against 20/s",
        requests.len()
    );
    assert!(
        rate >= 0.95 * 20.0,
        "{rate:.2} requests/s against a limit of 20/s"
    );
}

#[test]
fn sigterm_hands_unfinished_shards_back_and_the_job_completes_elsewhere() {
    let Some(mut fleet) = Fleet::start(&["--ack-wait", "30s"]) else {
        return;
    };
    let mock = Mock::start(with_latency(300));
    let pairs = 60;
    let spec = crg_job(fleet.dir(), "drain", &mock, pairs, "max_concurrency = 8");
    fleet.start_worker(&["--drain-timeout", "200ms", "--records", "2"]);
    fleet.submit(&spec);
    fleet.wait_for("drain", Duration::from_secs(60), |s| {
        s["running"].as_array().is_some_and(|r| !r.is_empty())
    });
    // A shard takes about 1.5 s here, far past the 200 ms drain deadline.
    let exit = fleet.terminate_worker(0);
    assert!(
        exit.success(),
        "the worker exits cleanly after draining: {exit:?}"
    );
    let log = std::fs::read_to_string(fleet.dir().join("w1.log")).unwrap();
    assert!(log.contains("handing the shard back"), "{log}");
    // Handed back with a nak, not left to ack_wait (30 s): the next worker gets them at once.
    fleet.start_worker(&["--records", "8"]);
    let status = fleet.wait_complete("drain", Duration::from_secs(25));
    assert_eq!(status["failed"].as_array().unwrap().len(), 0, "{status}");
    assert_exactly_once(&Committed::read(&fleet.dir().join("out/drain")), pairs);
}

/// Runs `rubricmill status` against `server` with `env`; returns success and stderr.
fn status_with(server: &NatsServer, env: &[(&str, &str)]) -> (bool, String) {
    let mut command = rubricmill();
    command
        .arg("status")
        .env("RUBRICMILL_NATS_URL", server.url())
        .env_remove("RUBRICMILL_NATS_USER")
        .env_remove("RUBRICMILL_NATS_PASSWORD")
        .env_remove("RUBRICMILL_NATS_TOKEN");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn credentials_come_from_the_environment_and_are_never_printed() {
    let Some(server) = NatsServer::start_with(&["--user", "alice", "--pass", "pw-8f3a1"]) else {
        return;
    };
    let (ok, stderr) = status_with(
        &server,
        &[
            ("RUBRICMILL_NATS_USER", "alice"),
            ("RUBRICMILL_NATS_PASSWORD", "pw-8f3a1"),
        ],
    );
    assert!(ok, "{stderr}");
    let (ok, stderr) = status_with(
        &server,
        &[
            ("RUBRICMILL_NATS_USER", "alice"),
            ("RUBRICMILL_NATS_PASSWORD", "wrong-77c1"),
        ],
    );
    assert!(!ok, "a wrong password was accepted");
    assert!(stderr.contains("error:"), "{stderr}");
    assert!(
        !stderr.contains("wrong-77c1"),
        "the password was printed: {stderr}"
    );
    // Credentials in the URL are redacted in messages too.
    let mut command = rubricmill();
    let output = command
        .args(["status", "--nats"])
        .arg(format!("nats://alice:wrong-9d2e@127.0.0.1:{}", server.port))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        !stderr.contains("wrong-9d2e"),
        "the password was printed: {stderr}"
    );

    let Some(server) = NatsServer::start_with(&["--auth", "tok-51b7"]) else {
        return;
    };
    let (ok, stderr) = status_with(&server, &[("RUBRICMILL_NATS_TOKEN", "tok-51b7")]);
    assert!(ok, "{stderr}");
    let (ok, stderr) = status_with(&server, &[]);
    assert!(!ok, "no token was accepted");
    assert!(!stderr.contains("tok-51b7"), "{stderr}");
}

#[test]
fn a_three_server_nats_cluster_survives_losing_a_member_mid_run() {
    let Some(mut fleet) = Fleet::start_clustered(&["--ack-wait", "5s"]) else {
        return;
    };
    let mock = Mock::start(with_latency(50));
    let pairs = 400;
    let spec = crg_job(
        fleet.dir(),
        "replicated",
        &mock,
        pairs,
        "max_concurrency = 4",
    );
    fleet.start_worker(&["--shards", "1", "--records", "4"]);
    fleet.start_worker(&["--shards", "1", "--records", "4"]);
    fleet.submit(&spec);
    fleet.wait_for("replicated", Duration::from_secs(60), |s| {
        s["progress"]["committed"].as_u64().unwrap_or(0) >= 3
    });
    // The first URL is where every client connected first; the others carry on.
    fleet.nats[0].kill();
    let status = fleet.wait_complete("replicated", Duration::from_secs(180));
    assert_eq!(status["committed"], 40);
    assert_eq!(status["failed"].as_array().unwrap().len(), 0, "{status}");
    assert_exactly_once(&Committed::read(&fleet.dir().join("out/replicated")), pairs);
}

#[test]
fn a_rejected_key_halts_the_job_and_submitting_after_the_fix_resumes_it() {
    // A short ack_wait: shards the stopped worker still held come back quickly.
    let Some(mut fleet) = Fleet::start(&["--ack-wait", "3s"]) else {
        return;
    };
    let mock = Mock::start(MockConfig {
        api_key: Some(rubricmill_mock_llm::ApiKey::new("key-right-4c1")),
        ..MockConfig::default()
    });
    let pairs = 50;
    let spec = crg_job(
        fleet.dir(),
        "keyed",
        &mock,
        pairs,
        "api_key_env = \"RUBRICMILL_TEST_LLM_KEY\"",
    );
    fleet.start_worker_with_env(&[], &[("RUBRICMILL_TEST_LLM_KEY", "key-wrong-9e0")]);
    fleet.submit(&spec);
    let status = fleet.wait_for("keyed", Duration::from_secs(60), |s| s["state"] == "halted");
    let reason = status["reason"].as_str().unwrap_or_default().to_owned();
    assert!(!reason.is_empty(), "{status}");
    assert!(
        !reason.contains("key-wrong-9e0"),
        "the key was reported: {reason}"
    );
    assert_eq!(
        status["failed"].as_array().unwrap().len(),
        0,
        "nothing failed: {status}"
    );
    assert_eq!(
        status["queue"]["pending"], 0,
        "the halted job's shards left the queue"
    );
    // The operator fixes the key and submits again: the job resumes and completes.
    assert!(fleet.terminate_worker(0).success());
    fleet.start_worker_with_env(&[], &[("RUBRICMILL_TEST_LLM_KEY", "key-right-4c1")]);
    let again = fleet.submit(&spec);
    assert!(again["queued"].as_u64().unwrap() > 0, "{again}");
    let status = fleet.wait_complete("keyed", Duration::from_secs(60));
    assert_eq!(status["progress"]["rows"], pairs as u64);
    assert_exactly_once(&Committed::read(&fleet.dir().join("out/keyed")), pairs);
}

#[test]
fn a_worker_lost_on_the_last_delivery_is_recorded_by_the_coordinator() {
    // One delivery per shard: a worker killed during it leaves the message undeliverable,
    // and only the coordinator (advisory or sweep) can record the failure.
    let Some(mut fleet) = Fleet::start(&["--max-deliver", "1", "--ack-wait", "1s"]) else {
        return;
    };
    let mock = Mock::start(with_latency(3000));
    let spec = crg_job(fleet.dir(), "lost", &mock, 10, "");
    fleet.start_worker(&["--shards", "1"]);
    fleet.submit(&spec);
    fleet.wait_for("lost", Duration::from_secs(30), |s| {
        s["running"].as_array().is_some_and(|r| !r.is_empty())
    });
    fleet.kill_worker(0);
    let status = fleet.wait_complete("lost", Duration::from_secs(60));
    let failed = status["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{status}");
    let reason = failed[0]["reason"].as_str().unwrap();
    eprintln!("lost shard recorded: {reason}");
    assert!(reason.contains("worker was lost"), "{status}");
    assert_eq!(status["queue"]["pending"], 0);
    // Retry runs it again on a healthy worker.
    fleet.start_worker(&[]);
    fleet.run("retry", "lost");
    let status = fleet.wait_for("lost", Duration::from_secs(60), |s| {
        s["state"] == "complete" && s["failed"].as_array().is_some_and(Vec::is_empty)
    });
    assert_eq!(status["committed"], 1);
}

#[test]
fn cancel_empties_the_queue_and_submit_resumes() {
    let Some(mut fleet) = Fleet::start(&[]) else {
        return;
    };
    let mock = Mock::start(MockConfig::default());
    let spec = crg_job(fleet.dir(), "paused", &mock, 40, "");
    let submitted = fleet.submit(&spec);
    assert_eq!(submitted["queued"], 4);
    let again = fleet.submit(&spec);
    assert_eq!(
        (again["queued"].as_u64(), again["already_queued"].as_u64()),
        (Some(0), Some(4)),
        "a second submit queues nothing twice"
    );
    assert!(
        fleet
            .run("cancel", "paused")
            .contains("4 queued shards removed")
    );
    let status = fleet.status("paused").unwrap();
    assert_eq!(status["state"], "cancelled");
    assert_eq!(status["queue"]["pending"], 0);
    // A worker started now finds nothing to do for the cancelled job.
    fleet.start_worker(&[]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(mock.requests().len(), 0);
    let resumed = fleet.submit(&spec);
    assert_eq!(resumed["queued"], 4);
    let status = fleet.wait_complete("paused", Duration::from_secs(60));
    assert_eq!(status["progress"]["rows"], 40);
}

#[test]
fn a_lost_worker_whose_advisory_nobody_heard_is_found_by_the_sweep() {
    let Some(mut fleet) = Fleet::start(&["--max-deliver", "1", "--ack-wait", "1s"]) else {
        return;
    };
    let mock = Mock::start(with_latency(3000));
    let spec = crg_job(fleet.dir(), "unheard", &mock, 10, "");
    fleet.start_worker(&["--shards", "1"]);
    fleet.submit(&spec);
    fleet.wait_for("unheard", Duration::from_secs(30), |s| {
        s["running"].as_array().is_some_and(|r| !r.is_empty())
    });
    // No coordinator listens when the server gives the message up.
    let mut coordinator = fleet.coordinator.take().unwrap();
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    fleet.kill_worker(0);
    std::thread::sleep(Duration::from_secs(3));
    fleet.start_coordinator();
    let status = fleet.wait_complete("unheard", Duration::from_secs(60));
    let failed = status["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{status}");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.contains("found by the sweep"), "{reason}");
    assert_eq!(status["queue"]["pending"], 0);
}

/// A worker under a strict policy, and jobs that break each of its rules: each is halted with
/// the rule and the offending value named, before the worker reads the key variable, calls
/// the endpoint or touches the buckets; a job inside the policy runs.
#[test]
fn the_worker_policy_refuses_jobs_outside_it_before_touching_anything() {
    let Some(mut fleet) = Fleet::start(&[]) else {
        return;
    };
    let allowed = Mock::start(MockConfig {
        api_key: Some(rubricmill_mock_llm::ApiKey::new("key-allowed-3b9")),
        ..MockConfig::default()
    });
    let elsewhere = Mock::start(MockConfig::default());
    let outside = tempfile::tempdir().unwrap();
    let inputs = fleet.dir().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    write_pairs(&inputs.join("pairs.jsonl"), 12);
    write_pairs(&outside.path().join("private.jsonl"), 12);
    let outputs = fleet.dir().join("out");
    let policy = fleet.dir().join("strict-policy.toml");
    std::fs::write(
        &policy,
        format!(
            "api_key_env = [\"RUBRICMILL_TEST_LLM_KEY\"]\nllm_endpoints = [{:?}]\ninputs = [{:?}]\noutputs = [{:?}]\n",
            allowed.server().base_url(),
            inputs.display().to_string(),
            outputs.display().to_string(),
        ),
    )
    .unwrap();
    let policy_flag = policy.display().to_string();
    fleet.start_worker_with_env(
        &["--policy", &policy_flag],
        &[
            ("RUBRICMILL_TEST_LLM_KEY", "key-allowed-3b9"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret-never-sent-71c"),
        ],
    );
    let job = |name: &str, input: &Path, output: &Path, base_url: &str, key: &str| {
        crate::write_spec(
            fleet.dir(),
            name,
            &format!(
                "pipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 4\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"openai\"\nbase_url = \"{base_url}\"\nmodel = \"mock-model\"\napi_key_env = \"{key}\"\n[crg]\nconsistency_filter = false\n",
                input.display(),
                output.display(),
            ),
        )
    };
    let good_input = inputs.join("pairs.jsonl");
    let allowed_url = allowed.server().base_url();
    let cases = [
        (
            "steal-aws-key",
            job(
                "steal-aws-key",
                &good_input,
                &outputs,
                &allowed_url,
                "AWS_SECRET_ACCESS_KEY",
            ),
            "api_key_env",
            "$AWS_SECRET_ACCESS_KEY",
            fleet.dir().join("out/steal-aws-key"),
        ),
        (
            "other-endpoint",
            job(
                "other-endpoint",
                &good_input,
                &outputs,
                &elsewhere.server().base_url(),
                "RUBRICMILL_TEST_LLM_KEY",
            ),
            "llm_endpoints",
            "127.0.0.1",
            fleet.dir().join("out/other-endpoint"),
        ),
        (
            "userinfo-endpoint",
            job(
                "userinfo-endpoint",
                &good_input,
                &outputs,
                &allowed_url.replace("http://", "http://user:pw-hidden-88@"),
                "RUBRICMILL_TEST_LLM_KEY",
            ),
            "llm_endpoints",
            "user information",
            fleet.dir().join("out/userinfo-endpoint"),
        ),
        (
            "output-outside",
            job(
                "output-outside",
                &good_input,
                &outside.path().join("drop"),
                &allowed_url,
                "RUBRICMILL_TEST_LLM_KEY",
            ),
            "outputs",
            "drop",
            outside.path().join("drop/output-outside"),
        ),
        (
            "input-outside",
            job(
                "input-outside",
                &outside.path().join("private.jsonl"),
                &outputs,
                &allowed_url,
                "RUBRICMILL_TEST_LLM_KEY",
            ),
            "inputs",
            "file://",
            fleet.dir().join("out/input-outside"),
        ),
    ];
    for (name, spec, rule, value, job_dir) in &cases {
        fleet.submit(spec);
        let status = fleet.wait_for(name, Duration::from_secs(60), |s| s["state"] == "halted");
        let reason = status["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("worker policy") && reason.contains(&format!("rule {rule}")),
            "{name}: the reason names no rule {rule}: {reason}"
        );
        assert!(
            reason.contains(value),
            "{name}: the reason lacks {value:?}: {reason}"
        );
        for secret in [
            "aws-secret-never-sent-71c",
            "key-allowed-3b9",
            "pw-hidden-88",
        ] {
            assert!(
                !reason.contains(secret),
                "{name}: a secret in the reason: {reason}"
            );
        }
        assert_eq!(
            status["queue"]["pending"], 0,
            "{name}: shards left queued: {status}"
        );
        assert!(
            !job_dir.join("commits").exists() && !job_dir.join("parts").exists(),
            "{name}: the worker wrote into {}",
            job_dir.display()
        );
        assert_eq!(
            allowed.server().stats().connections,
            0,
            "{name}: the allowed endpoint was called"
        );
        assert_eq!(
            elsewhere.server().stats().connections,
            0,
            "{name}: the other endpoint was called"
        );
    }
    let logs = fleet.logs();
    assert!(
        !logs.contains("aws-secret-never-sent-71c") && !logs.contains("pw-hidden-88"),
        "{logs}"
    );

    // A job inside every rule runs to the end under the same worker.
    let spec = job(
        "inside",
        &good_input,
        &outputs,
        &allowed_url,
        "RUBRICMILL_TEST_LLM_KEY",
    );
    fleet.submit(&spec);
    let status = fleet.wait_complete("inside", Duration::from_secs(60));
    assert_eq!(status["progress"]["rows"], 12, "{status}");
    assert_eq!(allowed.count(200), 12);
    assert_eq!(elsewhere.server().stats().connections, 0);
}

/// Without a policy a worker lends no key: a job naming one is refused, while a simulated
/// job (no key, no endpoint) runs.
#[test]
fn without_a_policy_a_worker_lends_no_key_but_runs_the_simulated_provider() {
    let Some(mut fleet) = Fleet::start(&[]) else {
        return;
    };
    let mock = Mock::start(MockConfig::default());
    fleet.start_worker_without_policy(&[("RUBRICMILL_TEST_LLM_KEY", "key-5d0")]);
    let keyed = crg_job(
        fleet.dir(),
        "keyed",
        &mock,
        8,
        "api_key_env = \"RUBRICMILL_TEST_LLM_KEY\"",
    );
    fleet.submit(&keyed);
    let status = fleet.wait_for("keyed", Duration::from_secs(60), |s| s["state"] == "halted");
    let reason = status["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("rule api_key_env"), "{reason}");
    assert_eq!(mock.server().stats().connections, 0);

    let input = fleet.dir().join("sim.jsonl");
    write_pairs(&input, 8);
    let simulated = crate::write_spec(
        fleet.dir(),
        "simulated",
        &format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 4\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"sim\"\n",
            input.display(),
            fleet.dir().join("out").display()
        ),
    );
    fleet.submit(&simulated);
    let status = fleet.wait_complete("simulated", Duration::from_secs(60));
    assert_eq!(status["failed"].as_array().unwrap().len(), 0, "{status}");
    assert!(
        status["progress"]["records"].as_u64().unwrap_or(0) == 8,
        "{status}"
    );
}

/// The shipped per-role NATS users: the submitter, coordinator and worker users run a job end
/// to end; the status user reads it but can neither submit nor cancel, and says why.
#[test]
fn per_role_nats_users_run_a_job_and_the_status_user_changes_nothing() {
    let Some(mut fleet) = Fleet::start_with_roles() else {
        return;
    };
    let mock = Mock::start(MockConfig::default());
    let spec = crg_job(fleet.dir(), "roles", &mock, 30, "");
    fleet.start_worker(&[]);
    fleet.submit(&spec);
    let status = fleet.wait_complete("roles", Duration::from_secs(90));
    assert_eq!(status["progress"]["rows"], 30, "{status}");
    assert_eq!(status["failed"].as_array().unwrap().len(), 0, "{status}");

    // The status user reads…
    let mut command = rubricmill();
    command
        .args(["status", "roles", "--json"])
        .env("RUBRICMILL_NATS_URL", fleet.nats_urls());
    as_role(&mut command, "status");
    succeeded(&mut command);
    // …and is denied every change, with the denial in the error.
    let again = crg_job(fleet.dir(), "roles-again", &mock, 5, "");
    for args in [
        vec!["cancel".to_owned(), "roles".to_owned()],
        vec!["submit".to_owned(), again.display().to_string()],
    ] {
        let mut command = rubricmill();
        command
            .args(&args)
            .env("RUBRICMILL_NATS_URL", fleet.nats_urls());
        as_role(&mut command, "status");
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{args:?} succeeded as the status user"
        );
        assert!(
            stderr
                .to_ascii_lowercase()
                .contains("permissions violation"),
            "{args:?}: the error does not say the permission was denied: {stderr}"
        );
        assert!(!stderr.contains(&role_password("status")), "{stderr}");
    }
    assert!(
        fleet
            .status("roles-again")
            .is_none_or(|s| s["state"] != "running")
    );
    // The worker user cannot enqueue shards either.
    let mut command = rubricmill();
    command
        .arg("submit")
        .arg(&again)
        .env("RUBRICMILL_NATS_URL", fleet.nats_urls());
    as_role(&mut command, "worker");
    let output = command.output().unwrap();
    assert!(!output.status.success(), "the worker user submitted a job");
}

/// One sample of a scrape: its name, labels and value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape of a `/metrics` endpoint, parsed into samples.
struct Scrape {
    text: String,
    /// In the order of the text.
    samples: Vec<Sample>,
}

impl Scrape {
    fn get(port: u16) -> Scrape {
        Scrape::parse(http_get(port, "/metrics"))
    }

    /// Parses the OpenMetrics text our endpoint writes (no timestamps, no exemplars).
    fn parse(text: String) -> Scrape {
        assert!(text.ends_with("# EOF\n"), "not OpenMetrics text:\n{text}");
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("a sample line");
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
                let Some((name, labels)) = series.split_once('{') else {
                    return (series.to_owned(), Vec::new(), value);
                };
                let labels = labels
                    .trim_end_matches('}')
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once("=\"").expect("key=\"value\"");
                        (key.to_owned(), value.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels, value)
            })
            .collect();
        Scrape { text, samples }
    }

    /// The value of the sample `name` with exactly these labels (in any order).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut wanted: Vec<(&str, &str)> = labels.to_vec();
        wanted.sort_unstable();
        self.samples.iter().find_map(|(sample, have, value)| {
            let mut have: Vec<(&str, &str)> =
                have.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            have.sort_unstable();
            (sample == name && have == wanted).then_some(*value)
        })
    }

    /// The sum of every sample `name` whose labels include these.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(sample, have, _)| {
                sample == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// The `(le, count)` buckets of the histogram `name` with these labels besides `le`.
    fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|(sample, have, _)| {
                sample == &bucket
                    && have.len() == labels.len() + 1
                    && labels
                        .iter()
                        .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, have, value)| {
                let le = &have.iter().find(|(k, _)| k == "le").expect("an le label").1;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, *value)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }

    fn names(&self) -> HashSet<&str> {
        self.samples
            .iter()
            .map(|(name, _, _)| name.as_str())
            .collect()
    }
}

/// Metric names (ours and the process metrics) a PromQL text refers to.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    let is_name_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut start = 0;
    while start < bytes.len() {
        let rest = &text[start..];
        let at_boundary = start == 0 || !is_name_char(bytes[start - 1]);
        if at_boundary && (rest.starts_with("rubricmill_") || rest.starts_with("process_")) {
            let len = rest.bytes().take_while(|c| is_name_char(*c)).count();
            names.push(rest[..len].to_owned());
            start += len;
        } else {
            start += 1;
        }
    }
    names
}

/// The histogram's buckets are cumulative and end in `+Inf` holding every observation.
fn assert_histogram(scrape: &Scrape, name: &str, labels: &[(&str, &str)], count: f64) {
    let buckets = scrape.buckets(name, labels);
    assert!(
        buckets.len() >= 2,
        "{name} {labels:?} has no buckets:\n{}",
        scrape.text
    );
    assert!(
        buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1),
        "{name} {labels:?} buckets are not cumulative: {buckets:?}"
    );
    assert_eq!(
        buckets.last().unwrap(),
        &(f64::INFINITY, count),
        "{name} {labels:?}"
    );
    let count_name = format!("{name}_count");
    assert_eq!(
        scrape.value(&count_name, labels),
        Some(count),
        "{name} {labels:?}"
    );
    assert!(
        scrape.value(&format!("{name}_sum"), labels).unwrap() > 0.0,
        "{name} {labels:?} sums to nothing"
    );
}

#[test]
fn metrics_after_a_real_run_are_labelled_and_cover_every_deploy_query() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let turn = ONE_FLEET_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut fleet = Fleet::prepare(turn, vec![nats], &[]);
    let coordinator_port = free_port();
    fleet.start_coordinator_with(
        &["--metrics-addr", &format!("127.0.0.1:{coordinator_port}")],
        &[],
    );
    // Some 500s (errors) and 503s (push-back) so that retries and throttled calls show.
    let mock = Mock::start(MockConfig {
        fail_500: 0.05,
        fail_503: 0.05,
        seed: 7,
        ..with_latency(5)
    });
    let llm = "price_per_million = { input = 1.0, output = 2.0 }\nmax_cost_usd = 50.0\nmax_concurrency = 4\nmax_retries = 8";
    let spec = crg_job(fleet.dir(), "observed", &mock, 100, llm);
    let worker_port = free_port();
    fleet.start_worker(&["--metrics-addr", &format!("127.0.0.1:{worker_port}")]);
    fleet.submit(&spec);
    let status = fleet.wait_complete("observed", Duration::from_secs(120));
    assert_eq!(status["committed"], 10);
    let job = ("job", "observed");

    // The worker: shards, rows and calls by job, stage, model and outcome, as the mock saw them.
    let worker = Scrape::get(worker_port);
    let text = &worker.text;
    assert_eq!(
        worker.value("rubricmill_shards_total", &[job, ("outcome", "committed")]),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        worker.value("rubricmill_rows_total", &[job]),
        Some(100.0),
        "{text}"
    );
    let call = |outcome| {
        [
            job,
            ("stage", "generate"),
            ("model", "mock-model"),
            ("outcome", outcome),
        ]
    };
    let (ok, errors, throttled) = (mock.count(200), mock.count(500), mock.count(503));
    assert_eq!(ok, 100, "one answered call per pair");
    assert!(errors + throttled > 0, "the mock injected no fault");
    assert_eq!(
        worker.value("rubricmill_llm_calls_total", &call("ok")),
        Some(ok as f64),
        "{text}"
    );
    assert_eq!(
        worker.sum("rubricmill_llm_calls_total", &[("outcome", "error")]),
        errors as f64,
        "{text}"
    );
    assert_eq!(
        worker.sum("rubricmill_llm_calls_total", &[("outcome", "throttled")]),
        throttled as f64,
        "{text}"
    );
    assert_eq!(
        worker.sum("rubricmill_llm_retries_total", &[job]),
        (errors + throttled) as f64,
        "every failed attempt was retried: {text}"
    );
    let spent = worker.sum("rubricmill_llm_cost_usd_total", &[job]);
    assert!(spent > 0.0, "{text}");
    assert!(
        worker.value(
            "rubricmill_llm_tokens_total",
            &[
                job,
                ("stage", "generate"),
                ("model", "mock-model"),
                ("direction", "output")
            ]
        ) > Some(0.0),
        "{text}"
    );
    assert_histogram(
        &worker,
        "rubricmill_llm_call_duration_seconds",
        &call("ok"),
        ok as f64,
    );
    assert_histogram(
        &worker,
        "rubricmill_shard_duration_seconds",
        &[job, ("outcome", "committed")],
        10.0,
    );
    let picked_up = worker.sum("rubricmill_shards_total", &[job]);
    assert_eq!(
        worker.value("rubricmill_queue_wait_seconds_count", &[job]),
        Some(picked_up),
        "{text}"
    );
    assert!(
        worker.value("process_resident_memory_bytes", &[]) > Some(0.0),
        "{text}"
    );

    // The coordinator: the cluster-wide view of the job.
    let coordinator = Scrape::get(coordinator_port);
    let text = &coordinator.text;
    assert_eq!(
        coordinator.value("rubricmill_job_rows", &[job]),
        Some(100.0),
        "{text}"
    );
    assert_eq!(
        coordinator.value("rubricmill_job_budget_usd", &[job]),
        Some(50.0),
        "{text}"
    );
    assert_eq!(
        coordinator.value("rubricmill_job_shards", &[job, ("state", "committed")]),
        Some(10.0),
        "{text}"
    );
    assert!(
        coordinator.value("process_cpu_seconds_total", &[]) > Some(0.0),
        "{text}"
    );
    let paid = coordinator
        .value("rubricmill_job_cost_usd", &[job])
        .unwrap();
    assert!(
        (spent - paid).abs() < 1e-9,
        "the worker's calls cost {spent}, the coordinator counts {paid}"
    );

    // Every metric the dashboard and the alerts query is one the binary exports.
    let exported: HashSet<&str> = worker
        .names()
        .union(&coordinator.names())
        .copied()
        .collect();
    let deploy = crate::repo_root().join("deploy/monitoring");
    let dashboard_text = std::fs::read_to_string(deploy.join("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard_text).unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            assert!(
                !metric_names(expr).is_empty(),
                "panel {:?} queries none of our metrics: {expr}",
                panel["title"]
            );
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} dashboard queries");
    let rules_text = std::fs::read_to_string(deploy.join("prometheus-rules.yaml")).unwrap();
    let alerts = rules_text.matches("- alert: ").count();
    assert!(alerts >= 5, "{alerts} alerts");
    let mut referenced: Vec<String> = metric_names(&dashboard_text);
    referenced.extend(
        rules_text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(metric_names),
    );
    let missing: std::collections::BTreeSet<&String> = referenced
        .iter()
        // A histogram's family name (in a description) stands for its `_bucket` samples.
        .filter(|name| {
            !exported.contains(name.as_str())
                && !exported.contains(format!("{name}_bucket").as_str())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/monitoring queries metrics the binary does not export: {missing:?}\nexported: {exported:?}"
    );
}

#[test]
fn workers_killed_with_batches_in_flight_lose_nothing_and_submit_nothing_twice() {
    let Some(mut fleet) = Fleet::start(&["--ack-wait", "5s", "--max-deliver", "10"]) else {
        return;
    };
    let mock = Mock::start(MockConfig {
        batch_delay_ms: 1_500,
        ..MockConfig::default()
    });
    // 20 shards of 10 pairs; one call a pair (the consistency filter is off), so each shard
    // sends exactly one batch.
    let pairs = 200;
    let spec = crg_job(
        fleet.dir(),
        "batched",
        &mock,
        pairs,
        "mode = \"batch\"\nbatch_poll_s = 1\nprice_per_million = { input = 2.0, output = 8.0 }",
    );
    for _ in 0..2 {
        fleet.start_worker(&["--shards", "2"]);
    }
    fleet.submit(&spec);
    // Kill a worker every 0.4–1 s while batches are submitted, waiting and collected.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..8 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(400 + seed % 600));
        let victim = (seed % fleet.workers.len() as u64) as usize;
        fleet.kill_worker(victim);
        fleet.start_worker(&["--shards", "2"]);
    }
    let status = fleet.wait_complete("batched", Duration::from_secs(300));
    assert_eq!(status["failed"].as_array().unwrap().len(), 0, "{status}");
    let committed = Committed::read(&fleet.dir().join("out/batched"));
    assert_exactly_once(&committed, pairs);
    let stats = mock.server().stats().batches;
    eprintln!("batches under kills: {stats:?}");
    assert!(
        stats.batches_by_name.values().all(|&count| count == 1),
        "a batch was submitted twice: {:?}",
        stats.batches_by_name
    );
    assert_eq!(stats.batches_created, 20, "one batch a shard: {stats:?}");
    assert!(mock.requests().is_empty(), "a call went online");
    // Every batch answer is paid once, committed or not, and status says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = fleet.status("batched").expect("status");
        let progress = &status["progress"];
        let batch_calls = progress["usage"]["batch_calls"].as_u64().unwrap_or(0)
            + progress["uncommitted"]["batch_calls"].as_u64().unwrap_or(0);
        if batch_calls == stats.items_answered {
            assert_eq!(progress["batches_pending"], 0, "{progress}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status counts {batch_calls} batch answers, the server answered {}",
            stats.items_answered
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = fleet.run("status", "batched");
    assert!(text.contains("calls answered through batches"), "{text}");
}

#[test]
fn status_shows_the_rate_limits_the_provider_announced_to_the_workers() {
    let Some(mut fleet) = Fleet::start(&[]) else {
        return;
    };
    let mock = Mock::start(MockConfig {
        rpm: Some(60_000),
        tpm: Some(50_000_000),
        ..MockConfig::default()
    });
    let spec = crg_job(
        fleet.dir(),
        "announced",
        &mock,
        20,
        "requests_per_minute = 120000",
    );
    fleet.start_worker(&[]);
    fleet.submit(&spec);
    fleet.wait_complete("announced", Duration::from_secs(120));
    // Workers report what their gateways read from the answers with their next heartbeats.
    let status = fleet.wait_for("announced", Duration::from_secs(30), |s| {
        s["provider_limits"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
    });
    let limits: Vec<&serde_json::Value> = status["provider_limits"]
        .as_object()
        .unwrap()
        .values()
        .collect();
    assert_eq!(limits.len(), 1, "{status}");
    assert_eq!(limits[0]["provider_rpm"], 60_000);
    assert_eq!(limits[0]["provider_tpm"], 50_000_000);
    assert_eq!(limits[0]["configured_rpm"], 120_000);
    assert_eq!(
        limits[0]["stages"],
        serde_json::json!(["generate", "judge"])
    );
    let text = fleet.run("status", "announced");
    assert!(
        text.contains(
            "limits   generate, judge: provider limits: 60000 rpm, 50000000 tpm (configured 120000 rpm)"
        ),
        "{text}"
    );
}

/// The reference, nuggets and score recipes in distributed mode: two workers commit every
/// sample record once, as a row or a reject, and the same rows as an embedded run makes.
#[test]
fn the_three_recipes_run_distributed_with_every_record_once() {
    let Some(mut fleet) = Fleet::start(&[]) else {
        return;
    };
    fleet.start_worker(&[]);
    fleet.start_worker(&[]);
    let recipes = [
        ("reference", "samples/reference/prompts.jsonl", 6),
        ("nuggets", "samples/nuggets/questions.jsonl", 5),
        ("score", "samples/score/rubrics.jsonl", 6),
    ];
    for (pipeline, sample, _) in recipes {
        // Inputs inside the fleet's folder, which the worker policy allows.
        let input = fleet.dir().join(format!("{pipeline}.jsonl"));
        std::fs::copy(crate::repo_root().join(sample), &input).unwrap();
        let extra = if pipeline == "score" {
            "[score]\ngenerate_responses = 2\n"
        } else {
            ""
        };
        let spec = crate::write_spec(
            fleet.dir(),
            pipeline,
            &format!(
                "pipeline = \"{pipeline}\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 2\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"sim\"\n{extra}",
                input.display(),
                fleet.dir().join("out").display()
            ),
        );
        fleet.submit(&spec);
    }
    for (pipeline, sample, rows) in recipes {
        let status = fleet.wait_complete(pipeline, Duration::from_secs(120));
        assert_eq!(status["failed"].as_array().unwrap().len(), 0, "{status}");
        let committed = Committed::read(&fleet.dir().join("out").join(pipeline));
        let lines = std::fs::read_to_string(crate::repo_root().join(sample))
            .unwrap()
            .lines()
            .count();
        assert_eq!(committed.row_count(), rows, "{pipeline}");
        assert_eq!(
            committed.row_count() + committed.reject_count(),
            lines,
            "{pipeline}"
        );
        assert_eq!(
            committed.marker_sum("records") as usize,
            lines,
            "{pipeline}"
        );
        let ids = committed.strings("id");
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "{pipeline}: a row committed twice"
        );
        // The score job's agreement reaches `status` from the commit markers.
        let agreement = &status["progress"]["agreement"];
        if pipeline == "score" {
            assert_eq!(
                agreement["input"].as_u64(),
                Some(committed.stage_sum("agreement", "input")),
                "{status}"
            );
            assert_eq!(agreement["input"], 4, "{status}");
            assert_eq!(
                agreement["output"].as_u64(),
                Some(committed.stage_sum("agreement", "output"))
            );
            let text = fleet.run("status", pipeline);
            assert!(text.contains("agreement 4 of 4 labelled records"), "{text}");
        } else {
            assert!(agreement.is_null(), "{status}");
        }
    }
}
