//! Helpers shared by the integration tests: the real weights (fetched once into the repo's
//! git-ignored `models/`, or taken from FACELAB_WEIGHTS) and the shared reference data.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

pub mod tmux;

use std::path::{Path, PathBuf};

use facelab::backbone::weights::{self, WeightsRequest};
use facelab::progress::NoProgress;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the repository, where CI and developers have the reference data.
pub fn shared() -> PathBuf {
    let dir = repo_root().join("../shared");
    assert!(
        dir.join("reference/mobilenet_v2").is_dir(),
        "the shared reference data is missing at {}",
        dir.display()
    );
    dir
}

pub fn reference(name: &str) -> PathBuf {
    shared().join("reference/mobilenet_v2").join(name)
}

/// A verified weights file, fetched through the product's own path on first use.
pub fn weights_path() -> PathBuf {
    let explicit = std::env::var_os("FACELAB_WEIGHTS").map(PathBuf::from);
    let models_dir = repo_root().join("models");
    let user_cache = weights::user_cache_dir();
    let request = WeightsRequest {
        explicit: explicit.as_deref(),
        models_dir: &models_dir,
        user_cache: user_cache.as_deref(),
        allow_fetch: true,
    };
    weights::obtain(&request, &NoProgress).expect("MobileNetV2 weights")
}

/// A float32 .npy file's values.
pub fn read_npy(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<f32>()
        .unwrap()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Copies the folder `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Fails with the process's stderr unless it succeeded.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A workspace with the ORL faces: per person, images 1-5 under facedata/train and 6-10 under
/// facedata/test (copies: the dataset lister does not follow links).
pub fn orl_workspace() -> tempfile::TempDir {
    orl_workspace_with_strangers(0)
}

/// [`orl_workspace`], but the last `strangers` people in folder-number order (s40, s39, ...)
/// go whole to facedata/strangers instead, never to be trained on.
pub fn orl_workspace_with_strangers(strangers: usize) -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    for number in 1..=40 {
        let name = format!("s{number}");
        let person = shared().join("facedata/orl").join(&name);
        for n in 1..=10 {
            let split = if number > 40 - strangers {
                "strangers"
            } else if n <= 5 {
                "train"
            } else {
                "test"
            };
            let dir = ws.path().join("facedata").join(split).join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(
                person.join(format!("{n}.pgm")),
                dir.join(format!("{n}.pgm")),
            )
            .unwrap();
        }
    }
    ws
}

/// `facelab` run in `workspace` with the test weights.
pub fn facelab(workspace: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("facelab").unwrap();
    cmd.current_dir(workspace)
        .env("FACELAB_WEIGHTS", weights_path());
    cmd
}

/// The stdout of a command that must succeed.
pub fn stdout_of(cmd: &mut assert_cmd::Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

/// `facelab ARGS` started in `workspace` as a child process (output discarded), to be killed.
pub fn spawn_facelab(workspace: &Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("facelab"))
        .current_dir(workspace)
        .env("FACELAB_WEIGHTS", weights_path())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A fresh database on the PostgreSQL test server (`FACELAB_TEST_POSTGRES`), and its URL.
/// Without a server the caller's test says loudly that it did not run, and fails under CI.
pub fn fresh_database() -> Option<String> {
    let Ok(url) = std::env::var("FACELAB_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL store tests, but FACELAB_TEST_POSTGRES is not set"
        );
        eprintln!("NOT RUN: set FACELAB_TEST_POSTGRES to a PostgreSQL server URL to run this test");
        return None;
    };
    let name = format!(
        "facelab_cli_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

/// Trains `experiment` (a file or `--set` overrides of one) and returns `show --json` of the run.
pub fn train_and_show(ws: &Path, experiment: &Path, overrides: &[&str]) -> serde_json::Value {
    let mut train = facelab(ws);
    train.arg("train").arg(experiment);
    for o in overrides {
        train.args(["--set", o]);
    }
    let out = stdout_of(&mut train);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.split([' ', ':']).next())
        .unwrap_or_else(|| panic!("no run id in:\n{out}"))
        .to_owned();
    serde_json::from_str(&stdout_of(facelab(ws).args(["show", &id, "--json"]))).unwrap()
}
