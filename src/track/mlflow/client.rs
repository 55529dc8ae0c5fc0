//! A thin typed client for the MLflow tracking server's REST API (`/api/2.0/mlflow/...`) and its
//! proxied artifact routes (`/api/2.0/mlflow-artifacts/artifacts/...`), over ureq.
//!
//! Only what opencarbon needs: experiments by name (and created), runs searched by tag, created,
//! read, updated and deleted, metric histories, `log-batch` (split to MLflow's limits) and
//! artifact uploads. Credentials come from MLflow's own variables, `MLFLOW_TRACKING_TOKEN`
//! (Bearer) or `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` (Basic); they live in this
//! value only and are never printed (its `Debug` hides them) or written anywhere. TLS: rustls
//! with the webpki roots, plus the CA bundle `MLFLOW_TRACKING_SERVER_CERT_PATH` names;
//! `MLFLOW_TRACKING_INSECURE_TLS=true` turns verification off, as in MLflow's own client.
//!
//! Timeouts are short (3 s to connect, 10 s per call unless `MLFLOW_HTTP_REQUEST_TIMEOUT` says
//! less or more, more for large uploads): tracking must never hold a run up for long.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

/// MLflow's limits on one `runs/log-batch` request.
pub const MAX_BATCH_METRICS: usize = 1000;
pub const MAX_BATCH_PARAMS: usize = 100;
pub const MAX_BATCH_TAGS: usize = 100;
/// MLflow's limit on the entities of one batch, all kinds together.
pub const MAX_BATCH_ENTITIES: usize = 1000;
/// Longest param value (MLflow 2.x and later; 500 before) and longest key, in characters.
pub const MAX_PARAM_VALUE: usize = 6000;
pub const MAX_KEY: usize = 250;
/// Longest tag value (MLflow 2.x and later).
pub const MAX_TAG_VALUE: usize = 8000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong with a request.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status; None when no answer came (refused connection, timeout, TLS, DNS).
    pub status: Option<u16>,
    /// MLflow's `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`), when it sent one.
    pub code: Option<String>,
    pub message: String,
}

impl ApiError {
    fn transport(e: ureq::Error) -> Self {
        let message = match &e {
            ureq::Error::Timeout(_) => format!("no answer in time ({e})"),
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is the server running?)".into()
            }
            _ => e.to_string(),
        };
        ApiError {
            status: None,
            code: None,
            message,
        }
    }

    /// The server is not there, not answering, or failing (worth trying again later).
    pub fn unreachable(&self) -> bool {
        self.status.is_none_or(|s| s >= 500 || s == 429)
    }

    /// The server refused our credentials (or their absence): 401 or 403.
    pub fn refused(&self) -> bool {
        matches!(self.status, Some(401 | 403))
    }

    pub fn not_found(&self) -> bool {
        self.status == Some(404) || self.code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST")
    }

    pub fn already_exists(&self) -> bool {
        self.code.as_deref() == Some("RESOURCE_ALREADY_EXISTS")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.status, &self.code) {
            (Some(401), _) | (Some(403), _) => write!(
                f,
                "HTTP {}: the server refused the credentials (MLFLOW_TRACKING_TOKEN, or \
                 MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD): {}",
                self.status.unwrap_or_default(),
                self.message
            ),
            (Some(s), Some(code)) => write!(f, "HTTP {s} {code}: {}", self.message),
            (Some(s), None) => write!(f, "HTTP {s}: {}", self.message),
            (None, _) => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// How requests authenticate. Never printed.
#[derive(Clone)]
enum Auth {
    Bearer(String),
    /// base64 of `user:password`
    Basic(String),
}

/// An MLflow tracking server.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// `http(s)://host[:port][/prefix]`, without a trailing slash.
    base: String,
    auth: Option<Auth>,
    call_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            None => "none",
            Some(Auth::Bearer(_)) => "bearer (hidden)",
            Some(Auth::Basic(_)) => "basic (hidden)",
        };
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("auth", &auth)
            .finish()
    }
}

/// `experiments/get-by-name`'s experiment.
#[derive(Debug, Clone, Deserialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    #[serde(default)]
    pub lifecycle_stage: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "int_or_string")]
    pub start_time: Option<i64>,
    #[serde(default, deserialize_with = "int_or_string")]
    pub end_time: Option<i64>,
    #[serde(default)]
    pub artifact_uri: String,
    #[serde(default)]
    pub run_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub params: Vec<KeyValue>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

impl Run {
    pub fn params(&self) -> BTreeMap<String, String> {
        self.data
            .params
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect()
    }

    pub fn tags(&self) -> BTreeMap<String, String> {
        self.data
            .tags
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One metric point. The value travels as a JSON number written by ryu (the shortest text that
/// reads back as the same double), so it arrives bit-identical; NaN and ±∞, which JSON numbers
/// cannot hold, as protobuf's JSON strings `NaN`, `Infinity`, `-Infinity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    #[serde(serialize_with = "float_out", deserialize_with = "float_in")]
    pub value: f64,
    #[serde(default, deserialize_with = "int_or_string_required")]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "int_or_string_required")]
    pub step: i64,
}

fn float_out<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str("NaN")
    } else if v.is_infinite() {
        s.serialize_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f64(*v)
    }
}

fn float_in<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| serde::de::Error::custom("a metric value out of range")),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(serde::de::Error::custom),
        },
        other => Err(serde::de::Error::custom(format!(
            "a metric value is {other}"
        ))),
    }
}

/// protobuf's JSON may write int64 as a string.
fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64()),
        Some(Value::String(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an integer, found {other}"
        ))),
    }
}

fn int_or_string_required<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    int_or_string(d).map(|v| v.unwrap_or(0))
}

/// `RUNNING`, `FINISHED`, `FAILED` or `KILLED` (MLflow's `RunStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Finished,
    Failed,
    Killed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Finished => "FINISHED",
            Status::Failed => "FAILED",
            Status::Killed => "KILLED",
        }
    }
}

/// A request body: JSON, or bytes (an artifact).
enum Body<'a> {
    None,
    Json(Value),
    Bytes(&'a [u8]),
}

impl Client {
    /// A client for the server at `uri` (`http://` or `https://`), with the credentials and TLS
    /// settings of the environment.
    pub fn new(uri: &str) -> anyhow::Result<Self> {
        let base = uri.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("an MLflow tracking URI must start with http:// or https://");
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let auth = match (
            env("MLFLOW_TRACKING_TOKEN"),
            env("MLFLOW_TRACKING_USERNAME"),
            env("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(token), _, _) => Some(Auth::Bearer(token)),
            (None, Some(user), Some(password)) => {
                Some(Auth::Basic(base64(format!("{user}:{password}").as_bytes())))
            }
            (None, Some(_), None) | (None, None, Some(_)) => anyhow::bail!(
                "set both MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or neither"
            ),
            (None, None, None) => None,
        };
        let mut tls = ureq::tls::TlsConfig::builder();
        if env("MLFLOW_TRACKING_INSECURE_TLS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            tls = tls.disable_verification(true);
        } else if let Some(path) = env("MLFLOW_TRACKING_SERVER_CERT_PATH") {
            let pem = std::fs::read(&path).map_err(|e| {
                anyhow::anyhow!("reading MLFLOW_TRACKING_SERVER_CERT_PATH={path}: {e}")
            })?;
            let mut certs: Vec<ureq::tls::Certificate<'static>> = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                if let ureq::tls::PemItem::Certificate(c) = item
                    .map_err(|e| anyhow::anyhow!("MLFLOW_TRACKING_SERVER_CERT_PATH={path}: {e}"))?
                {
                    certs.push(c);
                }
            }
            if certs.is_empty() {
                anyhow::bail!("MLFLOW_TRACKING_SERVER_CERT_PATH={path} holds no certificate");
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let call_timeout = env("MLFLOW_HTTP_REQUEST_TIMEOUT")
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(CALL_TIMEOUT, Duration::from_secs_f64);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(call_timeout))
            .user_agent(format!("opencarbon/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Client {
            agent,
            base,
            auth,
            call_timeout,
        })
    }

    /// The server's address (no credentials are ever part of it).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The UI page of a run.
    pub fn run_url(&self, experiment_id: &str, run_id: &str) -> String {
        format!("{}/#/experiments/{experiment_id}/runs/{run_id}", self.base)
    }

    /// One request; 5xx and 429 answers are tried again twice (a busy SQLite store says
    /// "database is locked"), a missing answer is not (a server that is down stays down).
    fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Body,
    ) -> ApiResult<Value> {
        let mut url = format!("{}{path}", self.base);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&percent_encode(k));
            url.push('=');
            url.push_str(&percent_encode(v));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.send(method, &url, &body);
            match result {
                Err(e) if e.status.is_some() && e.unreachable() && attempt < 3 => {
                    std::thread::sleep(Duration::from_millis(250 * attempt));
                }
                other => return other,
            }
        }
    }

    fn send(&self, method: &str, url: &str, body: &Body) -> ApiResult<Value> {
        let auth = self.auth.as_ref().map(|a| match a {
            Auth::Bearer(t) => format!("Bearer {t}"),
            Auth::Basic(b) => format!("Basic {b}"),
        });
        let response = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (_, Body::Json(v)) => {
                let mut r = self
                    .agent
                    .post(url)
                    .header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(serde_json::to_vec(v).expect("JSON serialises"))
            }
            (_, Body::Bytes(bytes)) => {
                // Uploads get 1 s more per MB on top of the call timeout.
                let extra = Duration::from_secs((bytes.len() / 1_000_000) as u64);
                let mut r = self
                    .agent
                    .put(url)
                    .header("Content-Type", "application/octet-stream")
                    .config()
                    .timeout_global(Some(self.call_timeout + extra))
                    .build();
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(*bytes)
            }
            (_, Body::None) => {
                let mut r = self
                    .agent
                    .post(url)
                    .header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send("{}")
            }
        };
        let mut response = response.map_err(ApiError::transport)?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(ApiError::transport)?;
        if (200..300).contains(&status) {
            if text.trim().is_empty() {
                return Ok(Value::Object(Default::default()));
            }
            return serde_json::from_str(&text).map_err(|e| ApiError {
                status: Some(status),
                code: None,
                message: format!("the answer is not JSON ({e}): {}", first_line(&text)),
            });
        }
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Err(ApiError {
            status: Some(status),
            code: field("error_code"),
            message: field("message").unwrap_or_else(|| first_line(&text)),
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> ApiResult<T> {
        decode(self.call("GET", path, query, Body::None)?)
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: Value) -> ApiResult<T> {
        decode(self.call("POST", path, &[], Body::Json(body))?)
    }

    /// The experiment called `name`, if there is one (active or deleted).
    pub fn experiment_by_name(&self, name: &str) -> ApiResult<Option<Experiment>> {
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        match self.get::<Answer>(
            "/api/2.0/mlflow/experiments/get-by-name",
            &[("experiment_name", name)],
        ) {
            Ok(a) => Ok(Some(a.experiment)),
            Err(e) if e.not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the experiment `name`; its id.
    pub fn create_experiment(&self, name: &str) -> ApiResult<String> {
        #[derive(Deserialize)]
        struct Answer {
            experiment_id: String,
        }
        let a: Answer = self.post(
            "/api/2.0/mlflow/experiments/create",
            json!({ "name": name }),
        )?;
        Ok(a.experiment_id)
    }

    /// Every active run of `experiment_id` that `filter` (MLflow's search syntax) selects.
    pub fn search_runs(&self, experiment_id: &str, filter: &str) -> ApiResult<Vec<Run>> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            runs: Vec<Run>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut runs = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "experiment_ids": [experiment_id],
                "filter": filter,
                "run_view_type": "ACTIVE_ONLY",
                "max_results": 1000,
            });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let a: Answer = self.post("/api/2.0/mlflow/runs/search", body)?;
            runs.extend(a.runs);
            match a.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(runs),
            }
        }
    }

    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time: i64,
        tags: &[KeyValue],
    ) -> ApiResult<Run> {
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        let a: Answer = self.post(
            "/api/2.0/mlflow/runs/create",
            json!({
                "experiment_id": experiment_id,
                "run_name": run_name,
                "start_time": start_time,
                "tags": tags,
            }),
        )?;
        Ok(a.run)
    }

    pub fn get_run(&self, run_id: &str) -> ApiResult<Run> {
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        let a: Answer = self.get("/api/2.0/mlflow/runs/get", &[("run_id", run_id)])?;
        Ok(a.run)
    }

    pub fn update_run(&self, run_id: &str, status: Status, end_time: Option<i64>) -> ApiResult<()> {
        let mut body = json!({ "run_id": run_id, "status": status.as_str() });
        if let Some(t) = end_time {
            body["end_time"] = json!(t);
        }
        let _: Value = self.post("/api/2.0/mlflow/runs/update", body)?;
        Ok(())
    }

    /// Moves a run to MLflow's trash (`mlflow gc` removes it for good).
    pub fn delete_run(&self, run_id: &str) -> ApiResult<()> {
        let _: Value = self.post("/api/2.0/mlflow/runs/delete", json!({ "run_id": run_id }))?;
        Ok(())
    }

    /// Every point of one metric of a run, in the server's order.
    pub fn metric_history(&self, run_id: &str, key: &str) -> ApiResult<Vec<Metric>> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            metrics: Vec<Metric>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut points = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", "25000"),
            ];
            if let Some(t) = &token {
                query.push(("page_token", t));
            }
            let a: Answer = self.get("/api/2.0/mlflow/metrics/get-history", &query)?;
            points.extend(a.metrics);
            match a.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(points),
            }
        }
    }

    /// Logs metrics, params and tags in as many `log-batch` requests as MLflow's limits need.
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> ApiResult<()> {
        let (mut m, mut p, mut t) = (metrics, params, tags);
        while !(m.is_empty() && p.is_empty() && t.is_empty()) {
            let np = p.len().min(MAX_BATCH_PARAMS);
            let nt = t.len().min(MAX_BATCH_TAGS);
            let nm = m
                .len()
                .min(MAX_BATCH_METRICS)
                .min(MAX_BATCH_ENTITIES - np - nt);
            let _: Value = self.post(
                "/api/2.0/mlflow/runs/log-batch",
                json!({
                    "run_id": run_id,
                    "metrics": &m[..nm],
                    "params": &p[..np],
                    "tags": &t[..nt],
                }),
            )?;
            (m, p, t) = (&m[nm..], &p[np..], &t[nt..]);
        }
        Ok(())
    }

    /// Uploads `bytes` as `path` (relative, `/`-separated) under a run's artifact root, through
    /// the server's artifact proxy: the root must be an `mlflow-artifacts:` URI (a server started
    /// with `--serve-artifacts`, MLflow's default since 2.0).
    pub fn upload_artifact(&self, artifact_uri: &str, path: &str, bytes: &[u8]) -> ApiResult<()> {
        let Some(root) = proxied_root(artifact_uri) else {
            return Err(ApiError {
                status: None,
                code: None,
                message: format!(
                    "the run's artifact root `{artifact_uri}` is not served by the tracking server \
                     (start it with --serve-artifacts, MLflow's default); artifacts not uploaded"
                ),
            });
        };
        let mut url = String::from("/api/2.0/mlflow-artifacts/artifacts");
        for part in root
            .split('/')
            .chain(path.split('/'))
            .filter(|p| !p.is_empty())
        {
            url.push('/');
            url.push_str(&percent_encode(part));
        }
        self.call("PUT", &url, &[], Body::Bytes(bytes))?;
        Ok(())
    }
}

/// `mlflow-artifacts:/1/abc/artifacts` (or `mlflow-artifacts://host:port/1/abc/artifacts`) →
/// `1/abc/artifacts`; None for any other scheme.
pub fn proxied_root(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    Some(path.trim_matches('/').to_string())
}

fn decode<T: DeserializeOwned>(value: Value) -> ApiResult<T> {
    serde_json::from_value(value).map_err(|e| ApiError {
        status: None,
        code: None,
        message: format!("an answer of unexpected shape: {e}"),
    })
}

fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars().take(300).collect()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding (for Basic authentication).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn metric_values_round_trip_through_json_bit_for_bit() {
        for v in [
            0.1,
            0.30000000000000004,
            -2.5e-310,
            f64::MAX,
            f64::MIN_POSITIVE,
            1.0 / 3.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let m = Metric {
                key: "valid/r2".into(),
                value: v,
                timestamp: 1,
                step: 2,
            };
            let text = serde_json::to_string(&m).unwrap();
            let back: Metric = serde_json::from_str(&text).unwrap();
            if v.is_nan() {
                assert!(back.value.is_nan());
            } else {
                assert_eq!(back.value.to_bits(), v.to_bits(), "{text}");
            }
        }
        // protobuf's JSON writes int64 as strings at times.
        let m: Metric =
            serde_json::from_str(r#"{"key":"k","value":"NaN","timestamp":"5","step":"3"}"#)
                .unwrap();
        assert_eq!((m.timestamp, m.step), (5, 3));
    }

    #[test]
    fn artifact_roots_served_by_the_server_are_recognised() {
        assert_eq!(
            proxied_root("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_root("mlflow-artifacts://host:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxied_root("s3://bucket/1/abc/artifacts"), None);
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let mut c = Client::new("http://127.0.0.1:1").unwrap();
        c.auth = Some(Auth::Bearer("s3cr3t".into()));
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
