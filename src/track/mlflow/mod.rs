//! Runs in an MLflow tracking server, live, without ever putting a run at risk.
//!
//! One MLflow experiment per spec name (or `tracking.mlflow.experiment`), one MLflow run per
//! opencarbon run, found again by its tag `opencarbon.run_id`: re-running, resuming or
//! re-launching a sweep updates the same MLflow run and never makes a second one.
//!
//! A run's life in MLflow ([`Tracker`]):
//! 1. when it starts, `mlflow-pending.json` is written into its run directory (the run is
//!    *unsynced*), its MLflow run found or created, the resolved spec logged as params and
//!    `meta.json` as tags, its status set RUNNING;
//! 2. while it trains, [`Tracker::sink`] buffers each epoch's scalars and sends them at each
//!    flush of the trainer, only the steps the server does not hold yet (a resumed run replays
//!    its earlier history into fresh sinks: those steps are already there);
//! 3. when it ends (done, failed or preempted), the run directory is *synced*
//!    ([`sync_run`]): every metric history compared with `metrics.csv` point by point (bits,
//!    not text), what is missing sent, the record files uploaded as artifacts, the status set
//!    (FINISHED, FAILED, or KILLED for a preempted run until it resumes); then the marker goes.
//!
//! Nothing here fails or blocks a run: every request has a short timeout; the first failure
//! turns tracking off for the rest of the run (and, in this process, for 30 s, or for good when
//! the server refused the credentials) with one warning; what was not sent is re-derived from
//! the run directory later by `opencarbon mlflow-sync results/<exp>` ([`sync_experiment`]).
//! When the server holds values a run directory does not (an earlier attempt's, say), the MLflow
//! run is moved to MLflow's trash and logged again from the run directory, so that a synced
//! run's values are always the run directory's, to the bit.
//!
//! The experiment's report page goes to one more MLflow run of the experiment, named `report`
//! and tagged `opencarbon.kind=report` ([`upload_report`]).

pub mod client;
pub mod config;
pub mod record;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use client::{ApiError, Client, Status};
pub use config::{MlflowConfig, Target, TrackingConfig, URI_ENV};
pub use record::{Desired, RunIdentity, RUN_ID_TAG};

use crate::track::sink::MetricSink;

/// The marker of an unsynced run: `<run dir>/mlflow-pending.json`.
pub const PENDING: &str = "mlflow-pending.json";
/// The tag of the experiment's report run.
pub const KIND_TAG: &str = "opencarbon.kind";

/// How long this process leaves a server alone after it failed to answer.
const BACKOFF: Duration = Duration::from_secs(30);

/// Where an experiment directory's runs are tracked: `<out>/mlflow.json` (no credentials),
/// written when a sweep starts with tracking on; `mlflow-sync` falls back on it.
pub const TARGET_FILE: &str = "mlflow.json";

#[derive(Serialize, Deserialize)]
struct TargetRecord {
    uri: String,
    experiment: String,
}

/// Records `target` as where the runs of the experiment directory `out` are tracked.
pub fn remember_target(out: &Path, target: &Target) {
    let record = TargetRecord {
        uri: target.uri.clone(),
        experiment: target.experiment.clone(),
    };
    let json = serde_json::to_vec_pretty(&record).expect("a target serialises");
    let written = std::fs::create_dir_all(out)
        .map_err(anyhow::Error::from)
        .and_then(|()| crate::track::atomic::write(&out.join(TARGET_FILE), &json));
    if let Err(e) = written {
        eprintln!(
            "warning: could not write {}: {e:#}",
            out.join(TARGET_FILE).display()
        );
    }
}

/// The target [`remember_target`] recorded for `out`, if any.
pub fn remembered_target(out: &Path) -> Option<Target> {
    let text = std::fs::read_to_string(out.join(TARGET_FILE)).ok()?;
    let r: TargetRecord = serde_json::from_str(&text).ok()?;
    Some(Target {
        uri: r.uri,
        experiment: r.experiment,
    })
}

/// What `mlflow-pending.json` says: where the run should go, and why it has not yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub uri: String,
    pub experiment: String,
    pub since: String,
    pub reason: String,
}

/// Reads a run directory's marker, if it has one.
pub fn pending(dir: &Path) -> Option<Pending> {
    let text = std::fs::read_to_string(dir.join(PENDING)).ok()?;
    serde_json::from_str(&text).ok()
}

fn mark_pending(dir: &Path, target: &Target, reason: &str) {
    let p = Pending {
        uri: target.uri.clone(),
        experiment: target.experiment.clone(),
        since: pending(dir)
            .map(|p| p.since)
            .unwrap_or_else(crate::track::meta::now),
        reason: reason.to_string(),
    };
    let json = serde_json::to_vec_pretty(&p).expect("a marker serialises");
    if let Err(e) = crate::track::atomic::write(&dir.join(PENDING), &json) {
        eprintln!(
            "warning: could not write {}: {e:#}",
            dir.join(PENDING).display()
        );
    }
}

fn clear_pending(dir: &Path) {
    let path = dir.join(PENDING);
    if path.exists() {
        if let Err(e) = std::fs::remove_file(&path) {
            eprintln!("warning: could not remove {}: {e}", path.display());
        }
    }
}

/// Servers this process stopped asking, and until when (None: for good, credentials refused).
static BACKOFFS: Mutex<Vec<(String, Option<Instant>, String)>> = Mutex::new(Vec::new());

/// Why `uri` is not being asked now, if it is not.
fn backing_off(uri: &str) -> Option<String> {
    let list = BACKOFFS.lock().unwrap_or_else(|e| e.into_inner());
    list.iter()
        .find(|(u, until, _)| u == uri && until.is_none_or(|t| Instant::now() < t))
        .map(|(_, _, why)| why.clone())
}

/// Remembers a failure that says the server is down (for [`BACKOFF`]) or refuses us (for good).
fn note_failure(uri: &str, error: &anyhow::Error) {
    let Some(api) = error.downcast_ref::<ApiError>() else {
        return;
    };
    let until = if api.refused() {
        None
    } else if api.unreachable() {
        Some(Instant::now() + BACKOFF)
    } else {
        return;
    };
    let mut list = BACKOFFS.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|(u, _, _)| u != uri);
    list.push((uri.to_string(), until, format!("{api}")));
}

fn warn(target: &Target, dir: &Path, what: &str) {
    let out = dir
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| dir.display().to_string(), |p| p.display().to_string());
    let run = dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().to_string());
    eprintln!(
        "warning: MLflow {}: {what}; run {run} goes on, unsynced ({PENDING}); send it later with \
         `opencarbon mlflow-sync {out}`",
        target.uri
    );
}

/// What a live run shares with its metric sink.
struct Live {
    client: Client,
    run: String,
    /// The last step the server holds, per metric key.
    latest: HashMap<String, i64>,
    buffer: Vec<client::Metric>,
    online: bool,
}

/// One run's MLflow tracking, from its start to its end (see the module's documentation).
pub struct Tracker {
    target: Target,
    dir: PathBuf,
    identity: RunIdentity,
    live: Option<Arc<Mutex<Live>>>,
}

impl Tracker {
    /// Marks the run unsynced, then finds or creates its MLflow run (params, tags, RUNNING).
    /// Never fails: a server that cannot be reached is a warning.
    pub fn start(target: &Target, dir: &Path, identity: RunIdentity) -> Tracker {
        mark_pending(
            dir,
            target,
            "the run is under way (or was stopped before it was synced)",
        );
        let mut tracker = Tracker {
            target: target.clone(),
            dir: dir.to_path_buf(),
            identity,
            live: None,
        };
        if let Some(why) = backing_off(&target.uri) {
            warn(target, dir, &format!("not asked again yet ({why})"));
            return tracker;
        }
        match tracker.open() {
            Ok(live) => tracker.live = Some(Arc::new(Mutex::new(live))),
            Err(e) => {
                note_failure(&target.uri, &e);
                warn(target, dir, &format!("{e:#}"));
            }
        }
        tracker
    }

    fn open(&self) -> Result<Live> {
        let client = Client::new(&self.target.uri)?;
        let desired = record::read(&self.dir, &self.identity, true)?;
        let experiment = ensure_experiment(&client, &self.target.experiment)?;
        let mut run = match find_run(&client, &experiment, &self.identity.run_id)? {
            Some(run) => client.get_run(&run.info.run_id)?,
            None => create_run(&client, &experiment, &desired)?,
        };
        if let Some(why) = param_conflict(&run, &desired) {
            run = replace_run(&client, &experiment, &run, &desired, &why)?;
        }
        send_params_and_tags(&client, &run, &desired)?;
        if run.info.status != Status::Running.as_str() {
            client.update_run(&run.info.run_id, Status::Running, None)?;
        }
        let mut latest: HashMap<String, i64> = HashMap::new();
        for m in &run.data.metrics {
            let e = latest.entry(m.key.clone()).or_insert(m.step);
            *e = (*e).max(m.step);
        }
        Ok(Live {
            client,
            run: run.info.run_id,
            latest,
            buffer: Vec::new(),
            online: true,
        })
    }

    /// A sink that sends each epoch's scalars at the trainer's flushes (never an error).
    pub fn sink(&self) -> Box<dyn MetricSink> {
        Box::new(LiveSink {
            live: self.live.clone(),
            target: self.target.clone(),
            dir: self.dir.clone(),
        })
    }

    /// The run has ended (its meta.json says how): syncs the whole run directory, then removes
    /// the marker; or leaves it, saying why, when the server cannot take it now.
    pub fn finish(&self) {
        complete(&self.target, &self.dir, &self.identity);
    }
}

/// Syncs one run directory into `target` and clears its marker; a warning (and the marker kept)
/// when that fails. For a run that is not running (its end, or a skipped run still unsynced).
pub fn complete(target: &Target, dir: &Path, identity: &RunIdentity) -> bool {
    if let Some(why) = backing_off(&target.uri) {
        mark_pending(dir, target, &format!("not sent: {why}"));
        warn(target, dir, &format!("not asked again yet ({why})"));
        return false;
    }
    let result = Client::new(&target.uri)
        .and_then(|client| sync_run(&client, &target.experiment, dir, identity, false));
    match result {
        Ok(_) => {
            clear_pending(dir);
            true
        }
        Err(e) => {
            note_failure(&target.uri, &e);
            mark_pending(dir, target, &format!("{e:#}"));
            warn(target, dir, &format!("{e:#}"));
            false
        }
    }
}

/// A run that was skipped as done but is still unsynced is synced now (a sweep re-launched after
/// the server came back completes what it could not send).
pub fn complete_if_pending(target: &Target, dir: &Path, identity: &RunIdentity) {
    if dir.join(PENDING).exists() {
        complete(target, dir, identity);
    }
}

/// The live run's scalars, sent at each flush.
struct LiveSink {
    live: Option<Arc<Mutex<Live>>>,
    target: Target,
    dir: PathBuf,
}

impl MetricSink for LiveSink {
    fn log(&mut self, epoch: usize, split: &str, metric: &str, value: f64) -> Result<()> {
        if let Some(live) = &self.live {
            let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
            if live.online {
                live.buffer.push(client::Metric {
                    key: record::metric_key(split, metric),
                    value,
                    timestamp: record::now_ms(),
                    step: epoch as i64,
                });
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let Some(live) = &self.live else {
            return Ok(());
        };
        let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
        if !live.online || live.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut live.buffer);
        // Only steps past the server's last: a resumed run replays what is there already.
        let mut latest = live.latest.clone();
        let mut send = Vec::new();
        for m in buffer {
            if latest.get(&m.key).is_none_or(|&s| m.step > s) {
                latest.insert(m.key.clone(), m.step);
                send.push(m);
            }
        }
        if send.is_empty() {
            return Ok(());
        }
        match live.client.log_batch(&live.run, &send, &[], &[]) {
            Ok(()) => live.latest = latest,
            Err(e) => {
                live.online = false;
                let e = anyhow::Error::new(e);
                note_failure(&self.target.uri, &e);
                warn(&self.target, &self.dir, &format!("{e:#}"));
            }
        }
        Ok(())
    }
}

/// The id of the experiment `name`, created if missing (two workers may race to create it).
pub fn ensure_experiment(client: &Client, name: &str) -> Result<String> {
    for _ in 0..2 {
        if let Some(e) = client.experiment_by_name(name)? {
            if e.lifecycle_stage == "deleted" {
                anyhow::bail!(
                    "the MLflow experiment `{name}` is deleted: restore it (mlflow experiments restore --experiment-id {}) or track into another (tracking.mlflow.experiment)",
                    e.experiment_id
                );
            }
            return Ok(e.experiment_id);
        }
        match client.create_experiment(name) {
            Ok(id) => return Ok(id),
            Err(e) if e.already_exists() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("the MLflow experiment `{name}` could neither be found nor created")
}

/// The MLflow run of `run_id` in an experiment, if there is one. Should there be several (two
/// processes created one at once), the oldest is kept and the others go to MLflow's trash.
fn find_run(client: &Client, experiment: &str, run_id: &str) -> Result<Option<client::Run>> {
    let filter = format!("tags.`{RUN_ID_TAG}` = '{}'", run_id.replace('\'', "\\'"));
    let mut runs = client.search_runs(experiment, &filter)?;
    runs.sort_by_key(|r| (r.info.start_time.unwrap_or(i64::MAX), r.info.run_id.clone()));
    for extra in runs.iter().skip(1) {
        client.delete_run(&extra.info.run_id)?;
    }
    Ok(runs.into_iter().next())
}

fn create_run(client: &Client, experiment: &str, desired: &Desired) -> Result<client::Run> {
    let tags = [client::KeyValue {
        key: RUN_ID_TAG.into(),
        value: desired.identity.run_id.clone(),
    }];
    let run = client.create_run(experiment, &desired.identity.label, desired.start_ms, &tags)?;
    Ok(client.get_run(&run.info.run_id)?)
}

/// Moves `run` to MLflow's trash and creates its replacement (the server holds what the run
/// directory does not).
fn replace_run(
    client: &Client,
    experiment: &str,
    run: &client::Run,
    desired: &Desired,
    why: &str,
) -> Result<client::Run> {
    eprintln!(
        "warning: MLflow run {} of run {} holds {why}; it goes to MLflow's trash and the run is logged again from its run directory",
        run.info.run_id, desired.identity.run_id
    );
    client.delete_run(&run.info.run_id)?;
    create_run(client, experiment, desired)
}

/// A param the server holds with another value, or that the run does not have (MLflow params
/// cannot change).
fn param_conflict(run: &client::Run, desired: &Desired) -> Option<String> {
    run.data
        .params
        .iter()
        .find_map(|p| match desired.params.get(&p.key) {
            Some(v) if v == &p.value => None,
            Some(v) => Some(format!("param {} = `{}`, not `{v}`", p.key, p.value)),
            None => Some(format!("param {}, which the run's spec has not", p.key)),
        })
}

fn send_params_and_tags(client: &Client, run: &client::Run, desired: &Desired) -> Result<()> {
    let have_params = run.params();
    let have_tags = run.tags();
    let params: Vec<client::KeyValue> = desired
        .params
        .iter()
        .filter(|(k, _)| !have_params.contains_key(*k))
        .map(|(k, v)| client::KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    let tags: Vec<client::KeyValue> = desired
        .tags
        .iter()
        .filter(|(k, v)| have_tags.get(*k) != Some(v))
        .map(|(k, v)| client::KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    client.log_batch(&run.info.run_id, &[], &params, &tags)?;
    Ok(())
}

/// A double as MLflow's SQL store keeps it: ±∞ become ±f64::MAX there, and NaN is one NaN.
fn stored_bits(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else if v == f64::INFINITY {
        f64::MAX.to_bits()
    } else if v == f64::NEG_INFINITY {
        f64::MIN.to_bits()
    } else {
        v.to_bits()
    }
}

/// The points of one metric the server lacks, or why its history is not a part of the run
/// directory's (a point the run directory does not hold).
fn missing_points(
    key: &str,
    local: &[(i64, f64)],
    server: &[client::Metric],
) -> std::result::Result<Vec<(i64, f64)>, String> {
    let mut left: HashMap<(i64, u64), usize> = HashMap::new();
    for &(step, v) in local {
        *left.entry((step, stored_bits(v))).or_default() += 1;
    }
    for m in server {
        match left.get_mut(&(m.step, stored_bits(m.value))) {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                return Err(format!(
                    "metric {key} = {} at step {}, which the run directory does not hold",
                    m.value, m.step
                ))
            }
        }
    }
    let mut missing = Vec::new();
    for &(step, v) in local {
        if let Some(n) = left.get_mut(&(step, stored_bits(v))) {
            if *n > 0 {
                *n -= 1;
                missing.push((step, v));
            }
        }
    }
    Ok(missing)
}

/// What [`sync_run`] did.
#[derive(Debug, Clone)]
pub struct Synced {
    pub experiment_id: String,
    pub mlflow_run: String,
    /// Metric points sent now (0: the server held them all).
    pub points_sent: usize,
    pub artifacts: usize,
    /// The MLflow run held values the run directory does not, and was replaced.
    pub replaced: bool,
    pub url: String,
}

/// Makes the MLflow run of the run directory `dir` hold what the directory holds: params, tags,
/// every metric point (only the missing ones are sent), the record files as artifacts, and the
/// status. Idempotent. `live`: the run is running in this process.
pub fn sync_run(
    client: &Client,
    experiment: &str,
    dir: &Path,
    identity: &RunIdentity,
    live: bool,
) -> Result<Synced> {
    let desired = record::read(dir, identity, live)?;
    let experiment_id = ensure_experiment(client, experiment)?;
    let mut run = match find_run(client, &experiment_id, &identity.run_id)? {
        Some(run) => client.get_run(&run.info.run_id)?,
        None => create_run(client, &experiment_id, &desired)?,
    };
    let mut replaced = false;
    let to_send = loop {
        let conflict = param_conflict(&run, &desired);
        let mut to_send: Vec<client::Metric> = Vec::new();
        let mut conflict = conflict.map(Ok).unwrap_or(Err(()));
        if conflict.is_err() {
            let on_server: BTreeSet<String> =
                run.data.metrics.iter().map(|m| m.key.clone()).collect();
            let keys: BTreeSet<&String> = on_server.iter().chain(desired.metrics.keys()).collect();
            let now = record::now_ms();
            for key in keys {
                let local = desired.metrics.get(key).map_or(&[][..], |v| &v[..]);
                let server = if on_server.contains(key) {
                    client.metric_history(&run.info.run_id, key)?
                } else {
                    Vec::new()
                };
                match missing_points(key, local, &server) {
                    Ok(missing) => {
                        to_send.extend(missing.into_iter().map(|(step, value)| client::Metric {
                            key: key.clone(),
                            value,
                            timestamp: now,
                            step,
                        }))
                    }
                    Err(why) => {
                        conflict = Ok(why);
                        break;
                    }
                }
            }
        }
        match conflict {
            Err(()) => break to_send,
            Ok(why) if !replaced => {
                run = replace_run(client, &experiment_id, &run, &desired, &why)?;
                replaced = true;
            }
            Ok(why) => anyhow::bail!("MLflow run {} still holds {why}", run.info.run_id),
        }
    };
    send_params_and_tags(client, &run, &desired)?;
    client.log_batch(&run.info.run_id, &to_send, &[], &[])?;
    let mut artifacts = 0;
    if !live {
        for name in record::ARTIFACTS {
            let path = dir.join(name);
            if !path.exists() {
                continue;
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            client.upload_artifact(&run.info.artifact_uri, name, &bytes)?;
            artifacts += 1;
        }
    }
    let status_differs = run.info.status != desired.status.as_str();
    let end_differs = desired.end_ms.is_some() && run.info.end_time != desired.end_ms;
    if status_differs || end_differs {
        client.update_run(&run.info.run_id, desired.status, desired.end_ms)?;
    }
    Ok(Synced {
        url: client.run_url(&experiment_id, &run.info.run_id),
        experiment_id,
        mlflow_run: run.info.run_id,
        points_sent: to_send.len(),
        artifacts,
        replaced,
    })
}

/// Uploads the experiment's report (`<out>/report/`, every file) as the artifacts of the
/// experiment's `report` run (tagged `opencarbon.kind=report`), FINISHED. A warning, never an
/// error, when it cannot; `mlflow-sync` uploads it again.
pub fn upload_report(target: &Target, out: &Path) {
    let dir = out.join("report");
    if !dir.join("index.html").exists() {
        return;
    }
    if let Some(why) = backing_off(&target.uri) {
        eprintln!(
            "warning: MLflow {}: report not uploaded ({why}); later: opencarbon mlflow-sync {}",
            target.uri,
            out.display()
        );
        return;
    }
    match Client::new(&target.uri).and_then(|c| report_run(&c, target, &dir)) {
        Ok(url) => println!("MLflow: experiment `{}` → {url}", target.experiment),
        Err(e) => {
            note_failure(&target.uri, &e);
            eprintln!(
                "warning: MLflow {}: report not uploaded ({e:#}); later: opencarbon mlflow-sync {}",
                target.uri,
                out.display()
            );
        }
    }
}

fn report_run(client: &Client, target: &Target, dir: &Path) -> Result<String> {
    let experiment_id = ensure_experiment(client, &target.experiment)?;
    let mut runs = client.search_runs(&experiment_id, &format!("tags.`{KIND_TAG}` = 'report'"))?;
    runs.sort_by_key(|r| r.info.start_time.unwrap_or(i64::MAX));
    let run = match runs.into_iter().next() {
        Some(run) => run,
        None => client.create_run(
            &experiment_id,
            "report",
            record::now_ms(),
            &[
                client::KeyValue {
                    key: KIND_TAG.into(),
                    value: "report".into(),
                },
                client::KeyValue {
                    key: "mlflow.note.content".into(),
                    value: "The experiment's report page (report/index.html) and its figures, as `opencarbon report` wrote them.".into(),
                },
            ],
        )?,
    };
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    for rel in &files {
        let bytes = std::fs::read(dir.join(rel))
            .with_context(|| format!("reading {}", dir.join(rel).display()))?;
        client.upload_artifact(&run.info.artifact_uri, &format!("report/{rel}"), &bytes)?;
    }
    client.update_run(&run.info.run_id, Status::Finished, Some(record::now_ms()))?;
    Ok(format!("{}/#/experiments/{experiment_id}", client.base()))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if crate::track::atomic::is_scratch(&name) || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// `opencarbon mlflow-sync`: which server, which experiment, which runs.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Default: `MLFLOW_TRACKING_URI`, else the URI each run's marker names.
    pub uri: Option<String>,
    /// Default: the experiment each run's marker names, else the run's spec name.
    pub experiment: Option<String>,
    /// Every run, not only the unsynced ones (e.g. to fill a new server).
    pub all: bool,
}

/// What [`sync_experiment`] did.
#[derive(Debug, Default)]
pub struct SyncSummary {
    pub synced: usize,
    pub already: usize,
    pub busy: usize,
    /// (run id, why)
    pub failed: Vec<(String, String)>,
}

/// Syncs the runs of the experiment directory `out` (`results/<exp>`): the unsynced ones (a
/// marker), or every run with `all`; then its report. `identity` says who a run directory is
/// (its label, from its spec). A run another process holds is left to it.
pub fn sync_experiment(
    out: &Path,
    options: &SyncOptions,
    identity: &dyn Fn(&Path) -> Result<(RunIdentity, String)>,
) -> Result<SyncSummary> {
    let runs = out.join("runs");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&runs)
        .with_context(|| format!("reading {}", runs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let first = dirs.first().cloned();
    let env_uri = std::env::var(URI_ENV).ok().filter(|u| !u.trim().is_empty());
    let remembered = remembered_target(out);
    let mut summary = SyncSummary::default();
    let mut report_target: Option<Target> = None;
    let mut spec_name: Option<String> = None;
    for dir in dirs {
        let id = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().to_string());
        let marker = pending(&dir);
        if !options.all && marker.is_none() {
            summary.already += 1;
            continue;
        }
        if !dir.join("meta.json").exists() || !dir.join("spec.resolved.yaml").exists() {
            continue;
        }
        let (who, name) = match identity(&dir) {
            Ok(w) => w,
            Err(e) => {
                summary.failed.push((id, format!("{e:#}")));
                continue;
            }
        };
        spec_name.get_or_insert(name.clone());
        let uri = options
            .uri
            .clone()
            .or(env_uri.clone())
            .or(marker.as_ref().map(|m| m.uri.clone()))
            .or(remembered.as_ref().map(|t| t.uri.clone()));
        let Some(uri) = uri else {
            anyhow::bail!(
                "no MLflow server for run {id}: give --uri or set {URI_ENV} (this experiment was never tracked, so nothing names one)"
            );
        };
        if let Some(why) = config::uri_problem(&uri) {
            anyhow::bail!("--uri / {URI_ENV}: {why}");
        }
        let target = Target {
            uri: uri.trim_end_matches('/').to_string(),
            experiment: options
                .experiment
                .clone()
                .or(marker.as_ref().map(|m| m.experiment.clone()))
                .or(remembered.as_ref().map(|t| t.experiment.clone()))
                .unwrap_or(name),
        };
        let _lock = match crate::track::lock::RunLock::try_acquire(&dir)? {
            crate::track::lock::Attempt::Acquired(lock) => lock,
            crate::track::lock::Attempt::Busy(holder) => {
                println!("skipped {id}: {holder} is running it (it syncs itself at its end)");
                summary.busy += 1;
                continue;
            }
        };
        let result = Client::new(&target.uri)
            .and_then(|c| sync_run(&c, &target.experiment, &dir, &who, false));
        match result {
            Ok(s) => {
                clear_pending(&dir);
                println!(
                    "synced {} ({id}): {} points sent, {} artifacts{} → {}",
                    who.label,
                    s.points_sent,
                    s.artifacts,
                    if s.replaced { ", replaced" } else { "" },
                    s.url
                );
                summary.synced += 1;
                report_target.get_or_insert(target);
            }
            Err(e) => {
                mark_pending(&dir, &target, &format!("{e:#}"));
                eprintln!("failed {} ({id}): {e:#}", who.label);
                summary.failed.push((id, format!("{e:#}")));
            }
        }
    }
    // The report goes where the runs went; with nothing to sync, where the flags, the
    // environment or the sweep's own record say.
    let report_target = report_target.or_else(|| {
        let uri = options
            .uri
            .clone()
            .or(env_uri)
            .or(remembered.as_ref().map(|t| t.uri.clone()))?;
        let experiment = options
            .experiment
            .clone()
            .or(remembered.as_ref().map(|t| t.experiment.clone()))
            .or(spec_name)
            .or_else(|| Some(identity(first.as_deref()?).ok()?.1))?;
        config::uri_problem(&uri).is_none().then(|| Target {
            uri: uri.trim_end_matches('/').to_string(),
            experiment,
        })
    });
    if let Some(target) = report_target {
        upload_report(&target, out);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: i64, value: f64) -> client::Metric {
        client::Metric {
            key: "k".into(),
            value,
            timestamp: 0,
            step,
        }
    }

    #[test]
    fn only_the_points_the_server_lacks_are_sent() {
        let local = [(1, 0.5), (2, 0.25), (3, f64::NAN), (4, f64::INFINITY)];
        let server = [point(1, 0.5), point(3, f64::NAN), point(4, f64::MAX)];
        assert_eq!(
            missing_points("k", &local, &server).unwrap(),
            vec![(2, 0.25)]
        );
        assert_eq!(missing_points("k", &local, &[]).unwrap().len(), 4);
        // A point the run directory does not hold, or one more than it holds: a conflict.
        assert!(missing_points("k", &local, &[point(2, 0.2500000001)]).is_err());
        assert!(missing_points("k", &local, &[point(1, 0.5), point(1, 0.5)]).is_err());
        assert!(missing_points("k", &[], &[point(9, 1.0)]).is_err());
    }
}
