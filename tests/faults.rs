//! Faults a careless user, a hostile file or a bad day bring, kept as cases: special files where
//! files are expected, several trainers and readers on one workspace at once, and a full disk.
//! Every case runs the real binary with a time limit, so a regression that hangs fails instead.
//! (A run killed by SIGKILL is in `cli_experiments.rs`.)

mod common;

use std::path::Path;
use std::process::Command as Process;
use std::time::Duration;

use assert_cmd::Command;
use common::{assert_success, copy_dir, shared, weights_path};
use predicates::prelude::*;

const LIMIT: Duration = Duration::from_secs(120);

fn facelab(workspace: &Path) -> Command {
    let mut cmd = Command::cargo_bin("facelab").unwrap();
    cmd.current_dir(workspace)
        .env("FACELAB_WEIGHTS", weights_path())
        .timeout(LIMIT);
    cmd
}

fn mkfifo(path: &Path) {
    let status = Process::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Two people of the seed dataset and a small experiment on them.
fn small_workspace(root: &Path) {
    for split in ["train", "test"] {
        for person in ["s01", "s02"] {
            copy_dir(
                &shared().join("facedata/seed").join(split).join(person),
                &root.join("facedata").join(split).join(person),
            );
        }
    }
    std::fs::create_dir_all(root.join("experiments")).unwrap();
    std::fs::write(
        root.join("experiments/small.yaml"),
        "data: {dir: facedata, train: train, test: test}\nhead: {hidden: [16]}\ntrain: {epochs: 2}\n",
    )
    .unwrap();
}

#[test]
fn special_files_are_refused_by_kind_and_never_hang() {
    let ws = tempfile::tempdir().unwrap();
    let pipe = ws.path().join("pipe.jpg");
    mkfifo(&pipe);
    for command in [&["embed", "pipe.jpg"][..], &["detect", "pipe.jpg"]] {
        facelab(ws.path())
            .args(command)
            .assert()
            .failure()
            .stderr(predicate::str::contains("named pipe"));
    }
    facelab(ws.path())
        .args(["embed", "pipe.jpg"])
        .env("FACELAB_WEIGHTS", "/dev/zero")
        .assert()
        .failure()
        .stderr(predicate::str::contains("/dev/zero: a device"));
    facelab(ws.path())
        .args(["train", "/dev/zero"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("a device"));
    facelab(ws.path())
        .args(["train", "pipe.jpg"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("named pipe"));
}

#[test]
fn concurrent_trainers_and_readers_lose_nothing() {
    let ws = tempfile::tempdir().unwrap();
    small_workspace(ws.path());
    // Fill the feature cache first, so the trainers race on the store, not on the backbone.
    facelab(ws.path())
        .args(["features", "facedata"])
        .assert()
        .success();
    let bin = assert_cmd::cargo::cargo_bin("facelab");
    let trainers: Vec<_> = (0..3)
        .map(|_| {
            Process::new(&bin)
                .current_dir(ws.path())
                .env("FACELAB_WEIGHTS", weights_path())
                .args(["train", "experiments/small.yaml"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Readers while they train: every read succeeds and parses.
    for _ in 0..10 {
        let out = facelab(ws.path())
            .args(["runs", "--json"])
            .output()
            .unwrap();
        assert_success(&out);
        let _: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    for trainer in trainers {
        let out = trainer.wait_with_output().unwrap();
        assert_success(&out);
    }
    let out = facelab(ws.path())
        .args(["runs", "--json"])
        .output()
        .unwrap();
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 3);
    assert!(
        runs.iter()
            .all(|r| r["status"] == "finished" && r["epochs"] == 2),
        "{runs:?}"
    );
}

/// A tmpfs of `bytes` at `dir`, unmounted when dropped; `None` where mounting is not allowed.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, bytes: u64) -> Option<SmallDisk> {
        let ok = Process::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Process::new("umount").arg(&self.0).status();
    }
}

fn says_disk_full(stderr: &str) -> bool {
    [
        "No space left on device",
        "disk is full",
        "disk may be full",
    ]
    .iter()
    .any(|s| stderr.contains(s))
}

#[test]
fn a_full_disk_gives_a_clear_error_and_leaves_the_store_usable() {
    // Room for the dataset (tmpfs counts whole pages) and a margin: the disk fills while the
    // store is created, while features are cached, or while the head is saved.
    let dataset_bytes: u64 = ["train/s01", "train/s02", "test/s01", "test/s02"]
        .iter()
        .flat_map(|d| std::fs::read_dir(shared().join("facedata/seed").join(d)).unwrap())
        .map(|e| e.unwrap().metadata().unwrap().len().div_ceil(4096) * 4096)
        .sum();
    let mut failures = 0;
    for margin_kb in [96, 256, 400, 560] {
        let dir = tempfile::tempdir().unwrap();
        let Some(_disk) = SmallDisk::mount(dir.path(), dataset_bytes + margin_kb * 1024) else {
            // Loud, and only where this process may not mount (CI runs as root and can).
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here (needs root); the full-disk case did not run"
            );
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must be able to run the full-disk case"
            );
            return;
        };
        let ws = dir.path();
        small_workspace(ws);
        let out = facelab(ws)
            .args(["train", "experiments/small.yaml"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            failures += 1;
            assert!(says_disk_full(&stderr), "margin {margin_kb} KB: {stderr}");
        }
        // The store opens (or says the disk is full), and no run is left `running`.
        let out = facelab(ws).args(["runs", "--json"]).output().unwrap();
        if out.status.success() {
            let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
            assert!(runs.iter().all(|r| r["status"] != "running"), "{runs:?}");
        } else {
            assert!(says_disk_full(&String::from_utf8_lossy(&out.stderr)));
        }
        // No atomic write left a temporary file behind.
        let leftovers: Vec<_> = walkdir::WalkDir::new(ws)
            .min_depth(1)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "margin {margin_kb} KB: {leftovers:?}");
    }
    assert!(failures > 0, "no margin was small enough to fill the disk");
}

fn runs_json(ws: &Path) -> Vec<serde_json::Value> {
    let out = facelab(ws).args(["runs", "--json"]).output().unwrap();
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn files_under(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}

#[test]
fn a_run_killed_at_any_point_leaves_a_usable_workspace() {
    let bin = assert_cmd::cargo::cargo_bin("facelab");
    type Reached = fn(&Path) -> bool;
    let points: [(&str, Reached); 3] = [
        ("starting", |_| true),
        ("caching features", |ws| {
            files_under(&ws.join("models/cache")) >= 5
        }),
        ("training", |ws| {
            ws.join("facelab.db").exists()
                && runs_json(ws)
                    .first()
                    .is_some_and(|r| r["epochs"].as_u64() >= Some(1))
        }),
    ];
    for (point, reached) in points {
        let ws = tempfile::tempdir().unwrap();
        small_workspace(ws.path());
        std::fs::write(
            ws.path().join("experiments/long.yaml"),
            "data: {dir: facedata, train: train, test: test}\nhead: {hidden: [64]}\naugment: {copies: 3, rotation: 10}\ntrain: {epochs: 100000}\n",
        )
        .unwrap();
        let mut child = Process::new(&bin)
            .current_dir(ws.path())
            .env("FACELAB_WEIGHTS", weights_path())
            .args(["train", "experiments/long.yaml"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + LIMIT;
        while !reached(ws.path()) {
            assert!(
                std::time::Instant::now() < deadline,
                "never reached {point}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if ws.path().join("facelab.db").exists() {
            let runs = runs_json(ws.path());
            assert!(
                runs.iter().all(|r| r["status"] != "running"),
                "{point}: {runs:?}"
            );
        }
        // Whatever the kill interrupted, the cache and the store serve the next run.
        facelab(ws.path())
            .args(["train", "experiments/small.yaml"])
            .assert()
            .success()
            .stdout(predicate::str::contains("test accuracy"));
    }
}

#[test]
fn names_from_data_reach_json_exactly_and_the_terminal_harmlessly() {
    use std::os::unix::ffi::OsStrExt;
    let ws = tempfile::tempdir().unwrap();
    small_workspace(ws.path());
    let hostile = "evil\u{1b}]0;pwned\u{7}\u{1b}[2J";
    std::fs::write(
        ws.path().join("experiments/small.yaml"),
        // YAML's own escapes for ESC and BEL.
        "name: \"evil\\x1b]0;pwned\\x07\\x1b[2J\"\ndata: {dir: facedata, train: train, test: test}\nhead: {hidden: [16]}\ntrain: {epochs: 1}\n",
    )
    .unwrap();
    for _ in 0..2 {
        facelab(ws.path())
            .args(["train", "experiments/small.yaml"])
            .assert()
            .success();
    }
    let runs = runs_json(ws.path());
    assert_eq!(runs[0]["experiment"], hostile, "JSON stays exact");
    let table = facelab(ws.path()).arg("runs").output().unwrap().stdout;
    assert!(
        !table.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(&table)
    );
    assert!(String::from_utf8_lossy(&table).contains("evil\\u{1b}"));

    // Deleting both runs at once needs --yes.
    let ids: Vec<String> = runs
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    facelab(ws.path())
        .arg("rm")
        .args(&ids)
        .assert()
        .failure()
        .stderr(predicate::str::contains("--yes"));
    assert_eq!(runs_json(ws.path()).len(), 2);
    facelab(ws.path())
        .arg("rm")
        .args(&ids)
        .arg("--yes")
        .assert()
        .success();
    assert!(runs_json(ws.path()).is_empty());

    // A file name that is not UTF-8 comes out with its exact bytes.
    let name = std::ffi::OsStr::from_bytes(b"face-\xff.jpg");
    let photo = ws.path().join(name);
    std::fs::copy(shared().join("facedata/seed/train/s01/01.jpg"), &photo).unwrap();
    let out = facelab(ws.path())
        .arg("detect")
        .arg(&photo)
        .output()
        .unwrap();
    assert_success(&out);
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected_hex: String = photo
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(line["path_hex"], expected_hex);
}
