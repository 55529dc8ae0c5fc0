//! The `tracking:` section of an experiment: where its runs are tracked besides their run
//! directories. It lives here, with the code that tracks; `spec` composes it (an experiment's own
//! section, like `launcher:`: it changes no run id).

use serde::{Deserialize, Serialize};

use crate::checked::Params;

/// The environment variable MLflow's own clients read; a spec's `tracking.mlflow.uri` wins.
pub const URI_ENV: &str = "MLFLOW_TRACKING_URI";

/// `tracking:` in a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// false: nothing is tracked, even with `MLFLOW_TRACKING_URI` set (`run --no-tracking`).
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub mlflow: MlflowConfig,
}

fn enabled() -> bool {
    true
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig {
            enabled: true,
            mlflow: MlflowConfig::default(),
        }
    }
}

/// `tracking.mlflow`: an MLflow tracking server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowConfig {
    /// `http(s)://host:port`; unset: `MLFLOW_TRACKING_URI`, else no MLflow tracking.
    pub uri: Option<String>,
    /// The MLflow experiment; unset: the spec's `name`.
    pub experiment: Option<String>,
}

/// Where a sweep's runs go: a server and an experiment on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Without a trailing slash and without credentials.
    pub uri: String,
    pub experiment: String,
}

/// Why a tracking URI cannot be used, if it cannot: opencarbon speaks MLflow's REST API only.
pub fn uri_problem(uri: &str) -> Option<String> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"));
    let Some(rest) = rest else {
        return Some(format!(
            "`{uri}` is not an http:// or https:// tracking server (opencarbon logs through MLflow's REST API; file, sqlite and databricks URIs are not served)"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Some(
            "holds credentials: give them in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), never in a spec or URI"
                .into(),
        );
    }
    if authority.is_empty() {
        return Some(format!("`{uri}` names no host"));
    }
    if rest.contains(['?', '#']) {
        return Some(format!(
            "`{uri}`: a tracking URI takes no query or fragment"
        ));
    }
    None
}

impl Params for TrackingConfig {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(uri) = &self.mlflow.uri {
            if let Some(why) = uri_problem(uri) {
                problems.push(format!("tracking.mlflow.uri: {why}"));
            }
        }
        if let Some(name) = &self.mlflow.experiment {
            if name.trim().is_empty() || name.chars().count() > 500 {
                problems.push(
                    "tracking.mlflow.experiment: must be 1 to 500 characters, not blank".into(),
                );
            }
        }
        problems
    }
}

impl TrackingConfig {
    /// Where the runs of the spec `spec_name` are tracked: the spec's URI, else `env_uri` (the
    /// value of `MLFLOW_TRACKING_URI`); None when tracking is off or no URI is given. An
    /// environment URI opencarbon cannot use is a warning, not an error (it may be meant for
    /// other tools).
    pub fn target(&self, spec_name: &str, env_uri: Option<&str>) -> Option<Target> {
        if !self.enabled {
            return None;
        }
        let uri = match (&self.mlflow.uri, env_uri.filter(|u| !u.trim().is_empty())) {
            (Some(uri), _) => uri.clone(),
            (None, Some(env)) => {
                if let Some(why) = uri_problem(env) {
                    eprintln!("warning: {URI_ENV}: {why}; not tracking in MLflow");
                    return None;
                }
                env.to_string()
            }
            (None, None) => return None,
        };
        Some(Target {
            uri: uri.trim_end_matches('/').to_string(),
            experiment: self
                .mlflow
                .experiment
                .clone()
                .unwrap_or_else(|| spec_name.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_wins_over_the_environment_and_off_is_off() {
        let spec: TrackingConfig =
            serde_norway::from_str("mlflow: {uri: 'http://lab:5000/', experiment: sweeps}")
                .unwrap();
        let t = spec.target("ci", Some("http://other:5000")).unwrap();
        assert_eq!(t.uri, "http://lab:5000");
        assert_eq!(t.experiment, "sweeps");
        let none = TrackingConfig::default();
        let t = none.target("ci", Some("https://env:443")).unwrap();
        assert_eq!(
            (t.uri.as_str(), t.experiment.as_str()),
            ("https://env:443", "ci")
        );
        assert_eq!(none.target("ci", None), None);
        assert_eq!(none.target("ci", Some("sqlite:///mlflow.db")), None);
        let off: TrackingConfig = serde_norway::from_str("enabled: false").unwrap();
        assert_eq!(off.target("ci", Some("http://env:5000")), None);
    }

    #[test]
    fn credentials_and_other_schemes_are_refused_in_a_spec() {
        for (uri, says) in [
            ("http://me:pw@lab:5000", "credentials"),
            ("file:///tmp/mlruns", "not an http"),
            ("http://", "no host"),
        ] {
            let c = TrackingConfig {
                enabled: true,
                mlflow: MlflowConfig {
                    uri: Some(uri.into()),
                    experiment: None,
                },
            };
            let problems = c.problems().join("\n");
            assert!(problems.contains(says), "{uri}: {problems}");
        }
    }
}
