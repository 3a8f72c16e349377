//! Hyperparameter sweeps: a sweep file (`experiments/sweeps/*.yaml`, W&B's shape) names a base
//! experiment, a search space over its dotted keys, a method (grid, random or TPE) and the
//! validation metric to select by. Every trial is the base experiment plus overrides, trained
//! and recorded as a run; the sweep itself and its trial claims live in the store.
//!
//! `spec` is the file's schema, `space` the domains and their sampling, `tpe` the Parzen
//! estimator, `pruner` the median rule, `runner` the scheduler that runs trials (resumable,
//! in parallel) and `report` what `sweep show` and the Sweeps screen display.

mod pruner;
pub mod report;
mod runner;
pub mod space;
pub mod spec;
pub mod tpe;
pub mod trial;

use std::path::{Path, PathBuf};

pub use pruner::MedianPruner;
pub(crate) use runner::sweep_record;
pub use runner::{run_sweep, SweepEvents, SweepOutcome, TrialOutcome};
use space::{Domain, Params, Space};
use spec::{Method, SweepSpec};

use crate::config::{Experiment, Override, Validation};
use crate::error::{Error, Result};
use crate::fsutil::{limits, read_text_limited};

/// A loaded, checked sweep file and its base experiment.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub path: PathBuf,
    pub text: String,
    pub spec: SweepSpec,
    pub base: Experiment,
    pub space: Space,
}

/// The most trials a sweep may ask for.
const MAX_TRIALS: usize = 100_000;

impl Sweep {
    /// Reads, parses and checks a sweep file, its base experiment and every parameter key.
    pub fn load(path: &Path) -> Result<Sweep> {
        let text = read_text_limited(path, limits::TEXT).map_err(|e| Error::Config {
            path: path.to_owned(),
            line: None,
            key: "file".into(),
            message: format!(
                "{}; check the path (sweeps live in experiments/sweeps/*.yaml)",
                e.reason()
            ),
        })?;
        // Kept absolute, so `sweep resume` finds the file from any folder.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        Self::parse(&path, &text)
    }

    /// Parses and checks sweep text; `path` names the file and anchors the base experiment.
    pub fn parse(path: &Path, text: &str) -> Result<Sweep> {
        let error = |key: &str, message: String| Error::Config {
            path: path.to_owned(),
            line: crate::config::line_of_key(text, key),
            key: key.to_owned(),
            message,
        };
        let spec: SweepSpec = crate::config::parse_yaml(path, text)?;
        let base_path = path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&spec.experiment);
        let base = Experiment::load(&base_path).map_err(|e| match e {
            // The base file itself is unreadable: say so at the sweep's `experiment` line.
            Error::Config { key, message, .. } if key == "file" => {
                error("experiment", format!("{}: {message}", base_path.display()))
            }
            Error::Config { .. } => e,
            other => error("experiment", other.to_string()),
        })?;
        Self::with_base(path, text, spec, base)
    }

    /// A sweep as the store recorded it (its resolved file and base experiment), as a worker
    /// on any machine reads it.
    pub fn from_record(record: &crate::store::SweepRecord) -> Result<Sweep> {
        let path = PathBuf::from(&record.file);
        let spec: SweepSpec = crate::config::parse_yaml(&path, &record.spec_yaml)?;
        let base_path = path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&spec.experiment);
        let base = Experiment::parse(&base_path, &record.experiment_yaml)?;
        Self::with_base(&path, &record.spec_yaml, spec, base)
    }

    /// Checks a parsed sweep against its base experiment.
    fn with_base(path: &Path, text: &str, spec: SweepSpec, base: Experiment) -> Result<Sweep> {
        let error = |key: &str, message: String| Error::Config {
            path: path.to_owned(),
            line: crate::config::line_of_key(text, key),
            key: key.to_owned(),
            message,
        };
        let base_path = &base.path;
        let mut params = Vec::new();
        for (key, param) in &spec.parameters {
            let domain =
                Domain::from_spec(param).map_err(|m| error_at_param(path, text, key, m))?;
            check_key(&base, key, &domain).map_err(|m| error_at_param(path, text, key, m))?;
            params.push((key.clone(), domain));
        }
        if params.is_empty() {
            return Err(error(
                "parameters",
                "no parameters to sweep; add at least one".into(),
            ));
        }
        let space = Space { params };
        match spec.method {
            Method::Grid => {
                space
                    .grid_size()
                    .map_err(|(key, m)| error_at_param(path, text, &key, m))?;
            }
            Method::Random | Method::Tpe => match spec.trials {
                None | Some(0) => {
                    return Err(error(
                        if spec.trials.is_none() {
                            "method"
                        } else {
                            "trials"
                        },
                        format!(
                            "{} search needs trials: N (how many to run)",
                            spec.method.as_str()
                        ),
                    ))
                }
                Some(n) if n > MAX_TRIALS => {
                    return Err(error("trials", format!("{n} is more than {MAX_TRIALS}")))
                }
                _ => {}
            },
        }
        if spec.parallel == 0 || spec.parallel > 64 {
            return Err(error(
                "parallel",
                format!("{} is not between 1 and 64", spec.parallel),
            ));
        }
        let validation = base.config.data.validation.as_ref().and_then(|v| v.kind());
        let wanted = if spec.metric.name.needs_folds() {
            "data.validation: {folds: 5}"
        } else {
            "data.validation: {fraction: 0.2}"
        };
        let fits = matches!(
            (spec.metric.name.needs_folds(), validation),
            (true, Some(Validation::Folds(_))) | (false, Some(Validation::Fraction(_)))
        );
        if !fits {
            return Err(error(
                "metric.name",
                format!(
                    "{} needs {wanted} in the base experiment {} (a sweep never selects by test figures)",
                    spec.metric.name.as_str(),
                    base_path.display()
                ),
            ));
        }
        Ok(Sweep {
            path: path.to_owned(),
            text: text.to_owned(),
            spec,
            base,
            space,
        })
    }

    pub fn name(&self) -> String {
        self.spec.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map_or("sweep".into(), |s| s.to_string_lossy().into_owned())
        })
    }

    /// Trials in the sweep: every grid combination, else `trials`.
    pub fn total_trials(&self) -> usize {
        match self.spec.method {
            Method::Grid => self.space.grid_size().unwrap_or(0),
            _ => self.spec.trials.unwrap_or(0),
        }
    }

    /// The sweep file with defaults resolved, plus the base experiment: what identifies it.
    pub fn resolved_yaml(&self) -> String {
        serde_norway::to_string(&self.spec).expect("a sweep spec serialises")
    }

    /// A sweep's id: its resolved file, its base experiment and the data's content.
    pub fn id(&self, dataset_hash: &str) -> String {
        let mut h = blake3::Hasher::new();
        h.update(self.resolved_yaml().as_bytes());
        h.update(self.base.resolved_yaml().as_bytes());
        h.update(dataset_hash.as_bytes());
        h.finalize().to_hex()[..8].to_string()
    }

    /// Trial `number`'s experiment: the base (with its defaults written out, so a swept key
    /// may sit under a default such as `train.optimizer`) with the trial's parameters, a training seed
    /// derived from (sweep seed, trial number) unless `train.seed` is swept, and the base's
    /// augmentation seed, so every trial shares the same augmented copies.
    pub fn trial_experiment(&self, params: &Params, number: usize) -> Result<Experiment> {
        let mut overrides: Vec<Override> = params
            .iter()
            .map(|(key, value)| Override {
                key: key.clone(),
                value: serde_norway::to_value(value).expect("JSON values are YAML values"),
            })
            .collect();
        if !params.contains_key("train.seed") {
            overrides.push(Override {
                key: "train.seed".into(),
                value: serde_norway::Value::from(trial_seed(self.spec.seed, number)),
            });
        }
        if !params.contains_key("augment.seed") {
            overrides.push(Override {
                key: "augment.seed".into(),
                value: serde_norway::Value::from(self.base.config.augment_seed()),
            });
        }
        Experiment::parse_with(&self.base.path, &self.base.resolved_yaml(), &overrides)
    }
}

/// A trial's training seed: a hash of the sweep's seed and the trial number.
pub fn trial_seed(sweep_seed: u64, number: usize) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&sweep_seed.to_le_bytes());
    h.update(&(number as u64).to_le_bytes());
    // Kept below 2^53 so the seed survives any JSON reader as an exact integer.
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes")) >> 11
}

/// Checks a swept key against the experiment schema by applying sample values of its domain
/// to the base experiment: a key the schema lacks, or a value it refuses, is caught here.
fn check_key(base: &Experiment, key: &str, domain: &Domain) -> std::result::Result<(), String> {
    let samples: Vec<serde_json::Value> = match domain {
        Domain::Values(values) => values.clone(),
        _ => {
            let (low, high) = domain.internal_range();
            vec![domain.from_internal(low), domain.from_internal(high)]
        }
    };
    for value in samples {
        let o = Override {
            key: key.to_owned(),
            value: serde_norway::to_value(&value).expect("JSON values are YAML values"),
        };
        if let Err(e) = Experiment::parse_with(&base.path, &base.resolved_yaml(), &[o]) {
            let reason = match e {
                Error::Config { key, message, .. } => {
                    format!("{key}: {}", message.trim_end_matches(" (set with --set)"))
                }
                other => other.to_string(),
            };
            return Err(format!(
                "value {value} does not fit the experiment: {reason}"
            ));
        }
    }
    Ok(())
}

/// An error about one parameter of the search space, pointed at its line.
fn error_at_param(path: &Path, text: &str, key: &str, message: String) -> Error {
    let line = text
        .lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(&format!("{key}:")) || l.starts_with(&format!("\"{key}\":"))
        })
        .map(|i| i + 1);
    Error::Config {
        path: path.to_owned(),
        line,
        key: format!("parameters.{key}"),
        message,
    }
}
