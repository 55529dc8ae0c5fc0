//! MLflow tracking against a real `mlflow server` (PyPI `mlflow`, SQLite store, artifacts served
//! by the server, on 127.0.0.1 at a free port), started and stopped by each test; MLflow's own
//! Python client (`search_runs`, `get_metric_history`, `list_artifacts`, `download_artifacts`)
//! reads back what the real binary logged, and every value must equal the run directory's to the
//! bit, every artifact its file byte for byte, with one MLflow run per run and no point twice.
//!
//! - a sweep (2 variants × 2 seeds, `--jobs 2`, the spec's `tracking:` winning over
//!   MLFLOW_TRACKING_URI), re-run; a run killed (SIGKILL), synced (KILLED), preempted (SIGTERM:
//!   KILLED) and resumed (FINISHED);
//! - the server killed mid-sweep: the runs finish, unsynced; `mlflow-sync` completes them after
//!   the server is back, and again changes nothing;
//! - a refused token (a real server with MLflow's basic-auth app): a clear warning, runs done and
//!   unsynced; `mlflow-sync` with the right password sends them.
//!
//! Needs `OPENCARBON_PYTHON` with `mlflow[auth]` (scripts/test.sh installs it into the tools venv);
//! a missing one fails under OPENCARBON_REQUIRE_TOOLS=1. `OPENCARBON_MLFLOW_SCREENSHOT=<png>`
//! also takes the picture of MLflow's UI comparing two variants that docs/tracking.md shows
//! (headless Chromium driven by Node).

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use opencarbon::track::mlflow::record;

use crate::common;

const BIN: &str = env!("CARGO_BIN_EXE_opencarbon");
const ADMIN_PASSWORD: &str = "opencarbon-test-password";

/// Two variants × two seeds of a tiny network run (a few seconds each on flex).
fn sweep_spec(name: &str, extra: &str) -> String {
    format!(
        "
name: {name}
seeds: [1, 2]
dataset: {{kind: synthetic, preset: monocentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 5}}
model: {{modalities: [poi, tabular]}}
train:
  epochs: 6
  batch_size: 8
  validate_every: 1
  contrastive_epoch: 1
  contrastive: {{pair: [poi, tabular]}}
  standardize_target: true
  early_stopping: {{rule: off}}
variants:
  base: {{}}
  narrow: {{model: {{embedding_dim: 16, attention_hidden: 16, tabular_hidden: 16}}}}
{extra}"
    )
}

/// One run long enough to be stopped part-way: a checkpoint after every epoch.
const RESUME_SPEC: &str = "
name: mlflow-resume
seed: 3
dataset: {kind: synthetic, preset: monocentric, width: 6, height: 6, tile_side: 16, poi_categories: 3, seed: 5}
model: {modalities: [poi, tabular]}
train:
  epochs: 8
  batch_size: 8
  validate_every: 1
  contrastive_epoch: 1
  contrastive: {pair: [poi, tabular]}
  standardize_target: true
  early_stopping: {rule: off}
  checkpoint_every: {epochs: 1}
";

/// A real `mlflow server` in its own process group (its workers die with it).
struct Server {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    auth: bool,
    mlflow: PathBuf,
}

impl Server {
    /// Starts a server keeping its store and artifacts in `dir`; None (after `missing`) when
    /// MLflow is not installed.
    fn start(dir: &Path, auth: bool) -> Option<Server> {
        let python = common::python(&["mlflow", "flask_wtf"])?;
        let mlflow = Path::new(&python).with_file_name("mlflow");
        if !mlflow.is_file() {
            common::missing(
                &format!("no `mlflow` beside {python}"),
                "scripts/test.sh installs mlflow[auth] into the tools venv",
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Server {
            child: None,
            port,
            dir: dir.to_path_buf(),
            auth,
            mlflow,
        };
        server.launch();
        Some(server)
    }

    fn launch(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let mut c = Command::new(&self.mlflow);
        c.arg("server");
        if self.auth {
            // MLflow's basic-auth app: its users database (basic_auth.db) goes to the working
            // directory, the admin's password comes from the environment.
            c.args(["--app-name", "basic-auth"])
                .env("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "opencarbon-test-only");
        }
        c.args([
            "--backend-store-uri",
            &format!("sqlite:///{}", self.dir.join("mlflow.db").display()),
            "--serve-artifacts",
            "--artifacts-destination",
            self.dir.join("artifacts").to_str().unwrap(),
            "--host",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--workers",
            "1",
        ])
        .current_dir(&self.dir)
        // Its lock files (`db_init_lock-*`) too stay in the test's directory.
        .env("TMPDIR", &self.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0);
        self.child = Some(c.spawn().expect("starting mlflow server"));
        let started = Instant::now();
        loop {
            if health(self.port) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "mlflow server exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "mlflow server not up after 240 s: {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL to the server's process group (it and its workers), as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signals the process group this test started (its id is the child's pid).
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            let started = Instant::now();
            while health(self.port) && started.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Starts it again on the same port, store and artifacts.
    fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `GET /health` answers on `port` (a raw request: no client needed).
fn health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// `opencarbon` with the MLflow variables of this environment removed, then `env` set.
fn opencarbon(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env_remove(opencarbon::fault::VAR);
    for var in [
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ] {
        c.env_remove(var);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(mut c: Command) -> Output {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    o
}

fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn markers(out: &Path) -> usize {
    run_dirs(out)
        .iter()
        .filter(|d| d.join(opencarbon::track::mlflow::PENDING).exists())
        .count()
}

/// What MLflow's Python client reads back: per run (tagged with a run id) its status, params,
/// tags, metric histories (step, IEEE bits) and artifacts, downloaded under argv[3].
const READ_BACK: &str = r#"
import json, struct, sys
from mlflow.tracking import MlflowClient
uri, name, dst = sys.argv[1], sys.argv[2], sys.argv[3]
c = MlflowClient(tracking_uri=uri)
exp = c.get_experiment_by_name(name)
out = {"experiment_id": exp.experiment_id, "runs": []}
for r in c.search_runs([exp.experiment_id], max_results=1000):
    bits = lambda v: struct.unpack("<q", struct.pack("<d", v))[0]
    metrics = {k: [[m.step, bits(m.value)] for m in c.get_metric_history(r.info.run_id, k)]
               for k in r.data.metrics}
    artifacts = sorted(a.path for a in c.list_artifacts(r.info.run_id))
    folder = None
    if "opencarbon.run_id" in r.data.tags:
        folder = c.download_artifacts(r.info.run_id, "", dst + "/" + r.info.run_id)
    out["runs"].append({"id": r.info.run_id, "name": r.info.run_name, "status": r.info.status,
                        "tags": r.data.tags, "params": r.data.params, "metrics": metrics,
                        "artifacts": artifacts, "folder": folder})
print(json.dumps(out))
"#;

#[derive(serde::Deserialize, Debug)]
struct ReadBack {
    experiment_id: String,
    runs: Vec<MlflowRun>,
    /// Where the artifacts were downloaded (removed with this value).
    #[serde(skip)]
    _downloads: Option<tempfile::TempDir>,
}

#[derive(serde::Deserialize, Debug)]
struct MlflowRun {
    id: String,
    name: String,
    status: String,
    tags: BTreeMap<String, String>,
    params: BTreeMap<String, String>,
    metrics: BTreeMap<String, Vec<(i64, i64)>>,
    artifacts: Vec<String>,
    folder: Option<String>,
}

fn read_back(uri: &str, experiment: &str, env: &[(&str, &str)]) -> ReadBack {
    let python = common::python(&["mlflow"]).expect("checked when the server started");
    let dst = tempfile::tempdir().unwrap();
    let mut c = Command::new(python);
    c.args([
        "-c",
        READ_BACK,
        uri,
        experiment,
        dst.path().to_str().unwrap(),
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "read-back: {}", text(&o));
    let mut back: ReadBack = serde_json::from_slice(&o.stdout).unwrap();
    back._downloads = Some(dst);
    back
}

/// Every run directory of `out` is in MLflow exactly once, and holds exactly what it holds.
fn assert_mirrored(out: &Path, back: &ReadBack, status: &str) {
    let mut by_id: HashMap<String, Vec<&MlflowRun>> = HashMap::new();
    for r in &back.runs {
        if let Some(id) = r.tags.get(record::RUN_ID_TAG) {
            by_id.entry(id.clone()).or_default().push(r);
        }
    }
    let dirs = run_dirs(out);
    for dir in &dirs {
        let id = dir.file_name().unwrap().to_str().unwrap();
        let found = by_id.get(id).map_or(0, Vec::len);
        assert_eq!(found, 1, "run {id}: {found} MLflow runs, not one");
        let run = by_id[id][0];
        assert_eq!(run.status, status, "run {id}");
        // Params: the resolved spec, flattened.
        let spec: serde_norway::Value = serde_norway::from_str(
            &std::fs::read_to_string(dir.join("spec.resolved.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(run.params, record::flatten_spec(&spec), "run {id}: params");
        assert_eq!(run.params["train.batch_size"], "8");
        // Tags: provenance from meta.json.
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        assert_eq!(
            run.tags["opencarbon.backend"],
            meta["backend"].as_str().unwrap()
        );
        assert_eq!(
            run.tags["opencarbon.device"],
            meta["device"].as_str().unwrap()
        );
        assert_eq!(
            run.tags["opencarbon.threads"],
            meta["threads"].as_u64().unwrap().to_string()
        );
        if let Some(commit) = meta["build_commit"].as_str() {
            assert_eq!(run.tags["opencarbon.build_commit"], commit);
        }
        // Metrics: every point of metrics.csv, bit for bit, and nothing else.
        let local =
            record::parse_metrics(&std::fs::read_to_string(dir.join("metrics.csv")).unwrap())
                .unwrap();
        let local: BTreeMap<String, Vec<(i64, i64)>> = local
            .into_iter()
            .map(|(k, points)| {
                let mut p: Vec<(i64, i64)> = points
                    .into_iter()
                    .map(|(s, v)| (s, v.to_bits() as i64))
                    .collect();
                p.sort();
                (k, p)
            })
            .collect();
        let mut server = run.metrics.clone();
        server.values_mut().for_each(|p| p.sort());
        assert_eq!(server, local, "run {id}: metric histories");
        assert!(server.contains_key("valid/r2") && server.contains_key("train/l1"));
        // The final test metrics are test_metrics.json's.
        if status == "FINISHED" {
            let tm: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join("test_metrics.json")).unwrap(),
            )
            .unwrap();
            for m in ["r2", "rmse", "mae", "mape"] {
                let v = tm[m].as_f64().unwrap();
                let points = &server[&format!("test/{m}")];
                assert_eq!(points.len(), 1, "run {id}: test/{m}");
                assert_eq!(points[0].1, v.to_bits() as i64, "run {id}: test/{m}");
            }
        }
        // Artifacts: the record files, byte for byte.
        let folder = PathBuf::from(run.folder.as_ref().unwrap());
        for name in record::ARTIFACTS {
            let file = dir.join(name);
            if !file.exists() {
                continue;
            }
            assert!(
                run.artifacts.contains(&name.to_string()),
                "run {id}: {name} missing"
            );
            assert_eq!(
                std::fs::read(folder.join(name)).unwrap(),
                std::fs::read(&file).unwrap(),
                "run {id}: artifact {name}"
            );
        }
    }
    let tracked = back
        .runs
        .iter()
        .filter(|r| r.tags.contains_key(record::RUN_ID_TAG))
        .count();
    assert_eq!(
        tracked,
        dirs.len(),
        "MLflow runs beside the run directories'"
    );
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn a_sweep_reads_back_from_mlflow_to_the_bit_and_reruns_and_resumes_add_nothing_twice() {
    let root = tempfile::tempdir().unwrap();
    let Some(server) = Server::start(&root.path().join("server"), false) else {
        return;
    };
    let started = Instant::now();
    let uri = server.uri();
    // The spec's server wins over MLFLOW_TRACKING_URI (nothing listens on port 9).
    let spec = root.path().join("sweep.yaml");
    std::fs::write(
        &spec,
        sweep_spec(
            "mlflow-sweep",
            &format!("tracking: {{mlflow: {{uri: '{uri}', experiment: mlflow-sweep-exp}}}}\n"),
        ),
    )
    .unwrap();
    let out = root.path().join("out");
    let env = [("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")];
    let args = |extra: &[&str]| {
        let mut a = vec!["run", spec.to_str().unwrap(), "--quiet", "--out"];
        a.push(out.to_str().unwrap());
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(opencarbon(&a, &env))
    };
    let first = run(&["--jobs", "2"]);
    assert!(
        !stderr(&first).contains("warning: MLflow"),
        "{}",
        text(&first)
    );
    assert_eq!(markers(&out), 0);
    let back = read_back(&uri, "mlflow-sweep-exp", &[]);
    assert_mirrored(&out, &back, "FINISHED");
    assert_eq!(back.runs.iter().filter(|r| r.name == "report").count(), 1);
    let names: Vec<&str> = back.runs.iter().map(|r| r.name.as_str()).collect();
    assert!(
        names.contains(&"synthetic-monocentric / narrow / seed 2"),
        "{names:?}"
    );
    if let Ok(png) = std::env::var("OPENCARBON_MLFLOW_SCREENSHOT") {
        screenshot(&uri, &back, Path::new(&png));
    }
    eprintln!(
        "mlflow sweep logged and read back after {:?}",
        started.elapsed()
    );

    // Re-run (all done: skipped) and re-run one run from scratch (--force): still one MLflow run
    // each, every point once.
    run(&[]);
    run(&["--force", "--only", "variant=narrow", "--only", "seed=1"]);
    let again = read_back(&uri, "mlflow-sweep-exp", &[]);
    assert_mirrored(&out, &again, "FINISHED");
    let ids = |b: &ReadBack| {
        let mut v: Vec<String> = b.runs.iter().map(|r| r.id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&again), ids(&back), "the same MLflow runs");

    // --no-tracking: nothing is sent and nothing is marked.
    let quiet = root.path().join("untracked");
    ok(opencarbon(
        &[
            "run",
            spec.to_str().unwrap(),
            "--quiet",
            "--no-tracking",
            "--jobs",
            "2",
            "--only",
            "seed=1",
            "--out",
            quiet.to_str().unwrap(),
        ],
        &env,
    ));
    assert_eq!(markers(&quiet), 0);
    assert!(!quiet.join(opencarbon::track::mlflow::TARGET_FILE).exists());

    // A run killed outright (SIGKILL at a batch of epoch 3): RUNNING in MLflow and unsynced;
    // `mlflow-sync` says KILLED. Then stopped by SIGTERM (preempted: KILLED), then resumed to
    // the end: FINISHED, every point once.
    let resume_spec = root.path().join("resume.yaml");
    std::fs::write(&resume_spec, RESUME_SPEC).unwrap();
    let resumed = root.path().join("resumed");
    let env_uri = [("MLFLOW_TRACKING_URI", uri.as_str())];
    let resume_args = [
        "run",
        resume_spec.to_str().unwrap(),
        "--quiet",
        "--no-report",
        "--out",
        resumed.to_str().unwrap(),
    ];
    let killed = opencarbon(&resume_args, &env_uri)
        .env(opencarbon::fault::VAR, "kill:batch#8")
        .output()
        .unwrap();
    assert!(!killed.status.success(), "{}", text(&killed));
    assert_eq!(markers(&resumed), 1);
    let o = ok(opencarbon(
        &["mlflow-sync", resumed.to_str().unwrap()],
        &env_uri,
    ));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 synced"),
        "{}",
        text(&o)
    );
    assert_mirrored(&resumed, &read_back(&uri, "mlflow-resume", &[]), "KILLED");

    let mut child = opencarbon(&resume_args, &env_uri)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = run_dirs(&resumed)[0].join("metrics.csv");
    let t = Instant::now();
    while std::fs::read_to_string(&metrics)
        .map(|s| s.matches(",train,l1,").count())
        .unwrap_or(0)
        < 4
    {
        assert!(
            child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(300),
            "the resumed run ended before epoch 4"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signals the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(
        stopped.status.code(),
        Some(opencarbon::track::preempt::EXIT_CODE),
        "{}",
        text(&stopped)
    );
    assert_eq!(
        markers(&resumed),
        0,
        "a preempted run is synced as it stopped"
    );
    assert_mirrored(&resumed, &read_back(&uri, "mlflow-resume", &[]), "KILLED");
    ok(opencarbon(&resume_args, &env_uri));
    let meta = std::fs::read_to_string(run_dirs(&resumed)[0].join("meta.json")).unwrap();
    assert!(meta.contains("resumed_from"), "{meta}");
    assert_mirrored(&resumed, &read_back(&uri, "mlflow-resume", &[]), "FINISHED");
    eprintln!("mlflow sweep test: {:?}", started.elapsed());
}

#[test]
fn a_server_killed_mid_sweep_loses_no_run_and_mlflow_sync_completes_them() {
    let root = tempfile::tempdir().unwrap();
    let Some(mut server) = Server::start(&root.path().join("server"), false) else {
        return;
    };
    let started = Instant::now();
    let uri = server.uri();
    let spec = root.path().join("sweep.yaml");
    std::fs::write(&spec, sweep_spec("mlflow-killed", "")).unwrap();
    let out = root.path().join("out");
    let env = [("MLFLOW_TRACKING_URI", uri.as_str())];
    let mut sweep = opencarbon(
        &[
            "run",
            spec.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
        &env,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Killed as soon as the first run has logged an epoch: three runs are still to come.
    let t = Instant::now();
    loop {
        let logged = out.join("runs").read_dir().ok().is_some_and(|dirs| {
            dirs.flatten().any(|d| {
                std::fs::read_to_string(d.path().join("metrics.csv"))
                    .is_ok_and(|s| s.contains(",train,l1,"))
            })
        });
        if logged {
            break;
        }
        assert!(
            sweep.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(300),
            "the sweep ended before the server could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    let o = sweep.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(stderr(&o).contains("warning: MLflow"), "{}", text(&o));
    assert!(stderr(&o).contains("mlflow-sync"), "{}", text(&o));
    let dirs = run_dirs(&out);
    assert_eq!(dirs.len(), 4);
    assert!(dirs.iter().all(|d| d.join("test_metrics.json").exists()));
    let unsynced = markers(&out);
    assert!(unsynced >= 3, "{unsynced} runs marked unsynced");

    // The server is back: mlflow-sync sends what is missing, and a second one nothing.
    server.restart();
    let o = ok(opencarbon(&["mlflow-sync", out.to_str().unwrap()], &env));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{unsynced} synced")),
        "{}",
        text(&o)
    );
    assert_eq!(markers(&out), 0);
    let back = read_back(&uri, "mlflow-killed", &[]);
    assert_mirrored(&out, &back, "FINISHED");
    let o = ok(opencarbon(
        &["mlflow-sync", out.to_str().unwrap(), "--all"],
        &env,
    ));
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(said.matches("0 points sent").count(), 4, "{said}");
    assert_mirrored(&out, &read_back(&uri, "mlflow-killed", &[]), "FINISHED");
    eprintln!("mlflow server-killed test: {:?}", started.elapsed());
}

#[test]
fn a_refused_token_is_a_clear_warning_and_the_runs_are_intact() {
    let root = tempfile::tempdir().unwrap();
    let Some(server) = Server::start(&root.path().join("server"), true) else {
        return;
    };
    let uri = server.uri();
    let spec = root.path().join("sweep.yaml");
    std::fs::write(&spec, sweep_spec("mlflow-auth", "")).unwrap();
    let out = root.path().join("out");
    let token = "not-a-valid-token-7c1e";
    let o = ok(opencarbon(
        &[
            "run",
            spec.to_str().unwrap(),
            "--quiet",
            "--only",
            "seed=1",
            "--out",
            out.to_str().unwrap(),
        ],
        &[
            ("MLFLOW_TRACKING_URI", uri.as_str()),
            ("MLFLOW_TRACKING_TOKEN", token),
        ],
    ));
    let err = stderr(&o);
    assert!(err.contains("HTTP 401"), "{}", text(&o));
    assert!(err.contains("refused the credentials"), "{}", text(&o));
    assert!(!err.contains(token) && !String::from_utf8_lossy(&o.stdout).contains(token));
    let dirs = run_dirs(&out);
    assert_eq!(dirs.len(), 2);
    assert!(dirs.iter().all(|d| d.join("test_metrics.json").exists()));
    assert_eq!(markers(&out), 2);
    for d in &dirs {
        let marker = std::fs::read_to_string(d.join(opencarbon::track::mlflow::PENDING)).unwrap();
        assert!(!marker.contains(token), "{marker}");
    }

    // A wrong password: refused again, the runs stay marked.
    let sync = |password: &str| {
        opencarbon(
            &["mlflow-sync", out.to_str().unwrap()],
            &[
                ("MLFLOW_TRACKING_USERNAME", "admin"),
                ("MLFLOW_TRACKING_PASSWORD", password),
            ],
        )
        .output()
        .unwrap()
    };
    let refused = sync("wrong");
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(stderr(&refused).contains("HTTP 401"), "{}", text(&refused));
    assert_eq!(markers(&out), 2);
    // The right one (Basic authentication): synced, to the bit.
    let o = sync(ADMIN_PASSWORD);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(markers(&out), 0);
    let creds = [
        ("MLFLOW_TRACKING_USERNAME", "admin"),
        ("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD),
    ];
    assert_mirrored(&out, &read_back(&uri, "mlflow-auth", &creds), "FINISHED");
}

/// MLflow's UI comparing two variants: the experiment's runs as charts, grouped by variant (each
/// variant's mean over its seeds, and their range), the validation metrics only, the report run
/// left out. Headless Chromium, driven over the DevTools protocol by Node (whose WebSocket the
/// script uses) to close MLflow's assistant panel, filter the charts and pick the grouping.
fn screenshot(uri: &str, back: &ReadBack, png: &Path) {
    let Some(chromium) = common::chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("shot.mjs");
    std::fs::write(&script, SCREENSHOT_JS).unwrap();
    let page = format!(
        "{uri}/#/experiments/{}/runs?compareRunsMode=CHART&searchFilter=attributes.run_name%20!%3D%20%27report%27",
        back.experiment_id
    );
    let builtin = Command::new("node")
        .args([
            "-e",
            "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
        ])
        .status()
        .expect("node (for OPENCARBON_MLFLOW_SCREENSHOT)")
        .success();
    let mut node = Command::new("node");
    if !builtin {
        node.arg("--experimental-websocket");
    }
    let o = node
        .arg(&script)
        .args([chromium.as_str(), page.as_str(), png.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success() && png.exists(), "{}", text(&o));
}

const SCREENSHOT_JS: &str = r#"
import { spawn } from "node:child_process";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const [chromium, url, png] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "oc-shot-"));
const browser = spawn(chromium, ["--headless", "--no-sandbox", "--use-angle=swiftshader",
  "--enable-unsafe-swiftshader", "--no-first-run", "--hide-scrollbars", `--user-data-dir=${profile}`,
  "--remote-debugging-port=0", "--window-size=1500,1000", "about:blank"],
  { stdio: ["ignore", "ignore", "pipe"] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
try {
  const wsUrl = await new Promise((resolve, reject) => {
    let err = "";
    browser.stderr.on("data", (d) => {
      err += d;
      const m = err.match(/DevTools listening on (ws:\S+)/);
      if (m) resolve(m[1]);
    });
    browser.on("exit", () => reject(new Error("chromium exited: " + err)));
  });
  const port = new URL(wsUrl).port;
  const pages = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const ws = new WebSocket(pages.find((p) => p.type === "page").webSocketDebuggerUrl);
  await new Promise((r) => ws.addEventListener("open", r));
  let id = 0;
  const waiting = new Map();
  ws.addEventListener("message", (e) => {
    const m = JSON.parse(e.data);
    if (m.id && waiting.has(m.id)) { waiting.get(m.id)(m); waiting.delete(m.id); }
  });
  const send = (method, params = {}) => new Promise((r) => {
    const i = ++id; waiting.set(i, r); ws.send(JSON.stringify({ id: i, method, params }));
  });
  const js = async (expr) => (await send("Runtime.evaluate",
    { expression: expr, awaitPromise: true, returnByValue: true })).result?.result?.value;
  // A real click (MLflow's menus open on pointer events) at the centre of an element.
  const clickAt = async (r) => {
    if (!r) throw new Error("nothing to click");
    for (const type of ["mouseMoved", "mousePressed", "mouseReleased"])
      await send("Input.dispatchMouseEvent", { type, x: r[0], y: r[1], button: "left", clickCount: 1 });
  };
  const centre = (find) => js(`(() => { const e = ${find}; if (!e) return null; e.scrollIntoView({block: "center"});
    const b = e.getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2] })()`);
  await send("Emulation.setDeviceMetricsOverride", { width: 1500, height: 1000, deviceScaleFactor: 1, mobile: false });
  await send("Page.navigate", { url });
  for (let i = 0; i < 120 && !(await js(`document.body.innerText.includes("matching runs")`)); i++)
    await sleep(500);
  await sleep(3000);
  await js(`[...document.querySelectorAll('button[aria-label="Close"]')].forEach(b => b.click())`);
  await sleep(1000);
  await js(`(() => { const i = document.querySelector('input[placeholder="Search metric charts"]');
    Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set.call(i, "valid/");
    i.dispatchEvent(new Event("input", { bubbles: true })) })()`);
  await sleep(1500);
  await clickAt(await centre(`[...document.querySelectorAll("button")].find(b => b.offsetParent && b.innerText.includes("Group by"))`));
  await sleep(1500);
  await clickAt(await centre(`[...document.querySelectorAll('[role^="menuitem"], [role="option"]')].find(x => x.innerText.trim() === "variant")`));
  await sleep(1000);
  for (const type of ["keyDown", "keyUp"])
    await send("Input.dispatchKeyEvent", { type, key: "Escape", code: "Escape", windowsVirtualKeyCode: 27 });
  await sleep(4000);
  const shot = await send("Page.captureScreenshot", { format: "png" });
  writeFileSync(png, Buffer.from(shot.result.data, "base64"));
  ws.close();
} finally {
  browser.kill();
}
"#;
