//! A facelab workspace: the folder holding `experiments/`, `facedata/`, `models/` and
//! `facelab.db`. Every path the tool reads or writes by default is derived here.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Workspace { root: root.into() }
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
}
