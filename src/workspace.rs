//! A facelab workspace: the folder holding `experiments/`, `facedata/`, `models/` and
//! `facelab.db`. Every path the tool reads or writes by default is derived here, and nowhere
//! else.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    /// A PostgreSQL URL to keep runs in instead of the workspace's `facelab.db`.
    store_url: Option<String>,
}

impl Workspace {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Workspace {
            root: root.into(),
            store_url: None,
        }
    }

    /// The same workspace with its runs in the store at `url` (a PostgreSQL server) instead of
    /// its own `facelab.db`.
    pub fn with_store_url(mut self, url: Option<String>) -> Self {
        self.store_url = url;
        self
    }

    /// Where the run store is: the server URL, else the `facelab.db` path.
    pub fn store_location(&self) -> String {
        match &self.store_url {
            Some(url) => url.clone(),
            None => self.store_path().display().to_string(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Datasets: one folder per person, optionally under `train/` and `test/`.
    pub fn facedata_dir(&self) -> PathBuf {
        self.root.join("facedata")
    }

    /// Weights, the feature cache and trained heads.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    pub fn feature_cache_dir(&self) -> PathBuf {
        crate::features::cache_dir(&self.models_dir())
    }

    pub fn experiments_dir(&self) -> PathBuf {
        self.root.join("experiments")
    }

    /// `experiments/*.yaml` (and `.yml`) and the sweep files in `experiments/sweeps/`, as
    /// workspace-relative paths, sorted.
    pub fn experiment_files(&self) -> Vec<PathBuf> {
        let sweeps = self.experiments_dir().join(SWEEPS_DIR);
        let mut files: Vec<PathBuf> = [self.experiments_dir(), sweeps]
            .iter()
            .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten())
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .filter_map(|p| p.strip_prefix(&self.root).map(Path::to_owned).ok())
            .collect();
        files.sort();
        files
    }

    /// The run store, an SQLite file.
    pub fn store_path(&self) -> PathBuf {
        self.root.join("facelab.db")
    }

    /// Where a run's resolved config is copied to be edited and run again:
    /// `models/reruns/<run-id>.yaml`.
    pub fn rerun_file(&self, run_id: &str) -> PathBuf {
        self.models_dir()
            .join("reruns")
            .join(format!("{run_id}.yaml"))
    }

    /// A run's saved head, its checkpoints and resolved config: `models/<run-id>/`.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.models_dir().join(run_id)
    }
}

/// Sweep files live in this folder of `experiments/`.
pub const SWEEPS_DIR: &str = "sweeps";

/// Whether a file listed with the experiments is a sweep file (it lies in a `sweeps/` folder).
pub fn is_sweep_file(path: &Path) -> bool {
    path.parent()
        .and_then(|p| p.file_name())
        .is_some_and(|name| name == SWEEPS_DIR)
}
