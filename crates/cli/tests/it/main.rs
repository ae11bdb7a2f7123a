//! End-to-end tests of the `rubricmill` binary: real processes, real files, Parquet read back.

mod accounting;
mod batch;
mod cluster;
mod crg;
mod docs;
mod hostile;
mod layouts;
mod llm;
mod providers;
mod recipes;
mod reference;
mod researchqa;
mod resume;
mod run;
mod s3;
mod ui;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn rubricmill() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rubricmill"));
    command.env("RUST_LOG", "warn");
    command
}

/// Runs `command` and returns its output, failing the test with its stderr unless it succeeded.
pub fn succeeded(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{:?} failed: {}",
        command.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `rubricmill run --json` and returns the exit code and the parsed summary.
pub fn run_job(spec: &Path, extra: &[&str]) -> (i32, serde_json::Value, Output) {
    let output = rubricmill()
        .arg("run")
        .arg(spec)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "no JSON summary; stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), summary, output)
}

/// mock-llm started in-process on a free loopback port, with the runtime it runs on; stopped
/// when dropped.
pub struct Mock {
    runtime: tokio::runtime::Runtime,
    server: Option<rubricmill_mock_llm::MockServer>,
}

impl Mock {
    pub fn start(config: rubricmill_mock_llm::MockConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime
            .block_on(rubricmill_mock_llm::MockServer::start(config))
            .unwrap();
        Self {
            runtime,
            server: Some(server),
        }
    }

    pub fn server(&self) -> &rubricmill_mock_llm::MockServer {
        self.server.as_ref().unwrap()
    }

    /// Every request the server received, in arrival order.
    pub fn requests(&self) -> Vec<rubricmill_mock_llm::RecordedRequest> {
        self.server().requests()
    }

    /// How many requests were answered with `status`.
    pub fn count(&self, status: u16) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.status == status)
            .count()
    }

    /// Answered requests of one task (by `response_format` name), as rubricmill sees them.
    pub fn task_requests(&self, task: &str) -> Vec<rubricmill_llm::ChatRequest> {
        self.requests()
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.body.to_request())
            .filter(|r| r.response_format.as_ref().is_some_and(|f| f.name == task))
            .collect()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

/// `configs/<config>.toml` as job `name` in `dir`: its sample input made absolute, its output
/// under `<dir>/out`, and `[llm]` replaced by `llm` lines when given (mock-llm instead of the
/// simulated provider).
pub fn quickstart(dir: &Path, config: &str, name: &str, llm: Option<&str>) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join(format!("configs/{config}.toml"))).unwrap();
    let mut body = String::new();
    let mut section = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            section = line.to_owned();
            if let (Some(llm), "[llm]") = (llm, line) {
                body.push_str(&format!("[llm]\n{llm}\n"));
                continue;
            }
        }
        if line.starts_with("name = ") || (llm.is_some() && section == "[llm]") {
            continue;
        }
        if let Some(url) = line
            .strip_prefix("url = \"")
            .and_then(|u| u.strip_suffix('"'))
        {
            let url = if section == "[output]" {
                dir.join("out")
            } else {
                repo_root().join(url)
            };
            body.push_str(&format!("url = \"{}\"\n", url.display()));
            continue;
        }
        body.push_str(line);
        body.push('\n');
    }
    write_spec(dir, name, &body)
}

/// Writes a job spec; `body` holds everything after the `name` line.
pub fn write_spec(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("name = \"{name}\"\n{body}")).unwrap();
    path
}

/// A crg job over `pairs` synthetic pairs (10 per shard) against `mock`; `llm` lines go into
/// `[llm]`. The consistency filter is off so that each pair costs exactly one call and makes
/// exactly one row (crg.rs tests the judge).
pub fn crg_job(dir: &Path, name: &str, mock: &Mock, pairs: usize, llm: &str) -> PathBuf {
    let input = dir.join(format!("{name}.jsonl"));
    write_pairs(&input, pairs);
    pairs_job(dir, name, &input, mock, llm)
}

/// The job of [`crg_job`] over existing input (a file or a glob).
pub fn pairs_job(dir: &Path, name: &str, input: &Path, mock: &Mock, llm: &str) -> PathBuf {
    let llm = format!(
        "provider = \"openai\"\nbase_url = \"{}\"\n{llm}",
        mock.server().base_url()
    );
    crg_spec(dir, name, input, 10, &llm, "consistency_filter = false")
}

/// A crg job spec over `input` with `records_per_shard` pairs a shard, writing to `<dir>/out`,
/// model `mock-model` with `max_tokens = 300`, and the given `[llm]` and `[crg]` lines.
pub fn crg_spec(
    dir: &Path,
    name: &str,
    input: &Path,
    records_per_shard: u64,
    llm: &str,
    crg: &str,
) -> PathBuf {
    write_spec(
        dir,
        name,
        &format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = {records_per_shard}\n[output]\nurl = \"{}\"\n[llm]\nmodel = \"mock-model\"\nmax_tokens = 300\n{llm}\n[crg]\n{crg}\n",
            input.display(),
            dir.join("out").display(),
        ),
    )
}

/// Starts `rubricmill run SPEC` and returns it once `reached` holds (the run must not end
/// before). `what` names the awaited moment in the failure message.
pub fn run_until(spec: &Path, what: &str, reached: impl Fn() -> bool) -> std::process::Child {
    let mut child = rubricmill()
        .arg("run")
        .arg(spec)
        .arg("--no-progress")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !reached() {
        assert!(std::time::Instant::now() < deadline, "the run never {what}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be stopped"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
}

/// [`run_until`], then SIGKILL.
pub fn kill_run_when(spec: &Path, what: &str, reached: impl Fn() -> bool) {
    let mut child = run_until(spec, what, reached);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Synthetic preference pairs, one JSON object per line.
pub fn write_pairs(path: &Path, count: usize) {
    let mut text = String::new();
    for i in 0..count {
        let line = serde_json::json!({
            "id": format!("pair-{i:06}"),
            "prompt": format!("Question {i}: how should I store {} bottles of olive oil for a long time?", i % 17),
            "chosen": format!("Keep them cool and dark; answer {i} explains why light and heat spoil oil."),
            "rejected": format!("Put them anywhere, answer {i} says it does not matter."),
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The commit markers under `commits_dir`. A process killed while writing a marker to a local
/// directory can leave the store's staging file (`<shard>.json#<n>`) behind; it is not a marker
/// (the store's listing skips it too), so only names ending in `.json` count.
pub fn marker_paths(commits_dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(commits_dir)
        .into_iter()
        .flatten()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect()
}

/// Committed output of a job, read the way readers must: through the markers.
pub struct Committed {
    pub markers: Vec<serde_json::Value>,
    pub rows: Vec<RecordBatch>,
    pub rejects: Vec<RecordBatch>,
    pub metadata: HashMap<String, String>,
}

impl Committed {
    pub fn read(job_dir: &Path) -> Self {
        let mut markers = Vec::new();
        for path in marker_paths(&job_dir.join("commits")) {
            let bytes = std::fs::read(path).unwrap();
            markers.push(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap());
        }
        markers.sort_by_key(|m| m["shard_id"].as_str().unwrap().to_owned());
        let mut rows = Vec::new();
        let mut rejects = Vec::new();
        let mut metadata = HashMap::new();
        for marker in &markers {
            if let Some(part) = marker["part"].as_str() {
                let (batches, kv) = read_parquet(&job_dir.join(part));
                rows.extend(batches);
                metadata = kv;
            }
            if let Some(part) = marker["rejects_part"].as_str() {
                rejects.extend(read_parquet(&job_dir.join(part)).0);
            }
        }
        Self {
            markers,
            rows,
            rejects,
            metadata,
        }
    }

    pub fn row_count(&self) -> usize {
        self.rows.iter().map(RecordBatch::num_rows).sum()
    }

    pub fn reject_count(&self) -> usize {
        self.rejects.iter().map(RecordBatch::num_rows).sum()
    }

    /// All values of a string column over the rows.
    pub fn strings(&self, column: &str) -> Vec<String> {
        strings(&self.rows, column)
    }

    /// The rows as JSON objects (Arrow's JSON form: null columns left out).
    pub fn json_rows(&self) -> Vec<serde_json::Value> {
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        for batch in &self.rows {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
        let bytes = writer.into_inner();
        if bytes.is_empty() {
            return Vec::new();
        }
        serde_json::from_slice(&bytes).unwrap()
    }

    pub fn reject_strings(&self, column: &str) -> Vec<String> {
        strings(&self.rejects, column)
    }

    pub fn marker_sum(&self, field: &str) -> u64 {
        self.markers
            .iter()
            .map(|m| m[field].as_u64().unwrap())
            .sum()
    }

    pub fn stage_sum(&self, stage: &str, counter: &str) -> u64 {
        self.markers
            .iter()
            .map(|m| m["stages"][stage][counter].as_u64().unwrap_or(0))
            .sum()
    }
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let array = batch
            .column_by_name(column)
            .unwrap_or_else(|| panic!("no column {column}"));
        let array = array
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        out.extend(array.iter().map(|v| v.unwrap_or_default().to_owned()));
    }
    out
}

fn read_parquet(path: &Path) -> (Vec<RecordBatch>, HashMap<String, String>) {
    let file = std::fs::File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let metadata = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let batches = builder
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (batches, metadata)
}

/// Column names of the first batch.
pub fn column_names(batches: &[RecordBatch]) -> Vec<String> {
    batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}
