//! `facelab train` and the run commands on real workspaces: the notebook's seed dataset, the
//! ORL faces with the recommended config, every bad-config fixture, and a run killed mid-way.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{copy_dir, facelab, orl_workspace, repo_root, shared, spawn_facelab, stdout_of};
use predicates::prelude::*;

/// A workspace with the notebook's dataset and the shipped experiments.
fn seed_workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    copy_dir(&shared().join("facedata/seed"), &ws.path().join("facedata"));
    copy_dir(
        &repo_root().join("experiments"),
        &ws.path().join("experiments"),
    );
    ws
}

fn runs_json(ws: &Path) -> Vec<serde_json::Value> {
    let out = facelab(ws)
        .args(["runs", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn run_id_from(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("run ") && l.contains("finished"))
        .expect("a closing line");
    line.split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
fn seed_experiment_reaches_full_test_accuracy_and_is_recorded() {
    let ws = seed_workspace();
    let out = stdout_of(facelab(ws.path()).args(["train", "experiments/seed.yaml"]));
    assert!(out.contains("test accuracy 1.0000"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("epoch ")).count(),
        3,
        "{out}"
    );
    let id = run_id_from(&out);

    let runs = runs_json(ws.path());
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["status"], "finished");
    assert_eq!(runs[0]["test_accuracy"], 1.0);
    assert_eq!(runs[0]["epochs"], 3);

    facelab(ws.path())
        .args(["show", &id[..4]])
        .assert()
        .success()
        .stdout(predicate::str::contains("confusion matrix").and(predicate::str::contains("s04")));
    for file in [
        "head.safetensors",
        "best.safetensors",
        "head.json",
        "config.yaml",
    ] {
        assert!(
            ws.path().join("models").join(&id).join(file).is_file(),
            "{file}"
        );
    }

    let predicted = facelab(ws.path())
        .args([
            "predict",
            &id,
            "facedata/test/s02/13.jpg",
            "--json",
            "--annotate",
            "annotated",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let p: serde_json::Value =
        serde_json::from_slice(predicted.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(p["predicted"], "s02");
    assert!(p["confidence"].as_f64().unwrap() > 0.5);
    assert!(ws.path().join("annotated/s02_13.png").is_file());

    facelab(ws.path()).args(["rm", &id]).assert().success();
    assert!(runs_json(ws.path()).is_empty());
    assert!(!ws.path().join("models").join(&id).exists());
}

#[test]
fn same_config_and_data_give_the_same_metrics() {
    let ws = seed_workspace();
    let config =
        "data: {dir: facedata, train: train, test: test}\nhead: {hidden: [64], dropout: 0.2}\n\
                  train: {epochs: 2, seed: 5}\naugment: {copies: 1, rotation: 20}\n";
    std::fs::write(ws.path().join("experiments/small.yaml"), config).unwrap();
    let epochs = |ws: &Path| -> Vec<String> {
        let out = facelab(ws)
            .args(["train", "experiments/small.yaml"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("epoch"))
            .map(|l| l.split(" (").next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(epochs(ws.path()), epochs(ws.path()));
}

#[test]
fn recommended_config_on_orl_faces_reaches_097() {
    let ws = orl_workspace();
    let out = facelab(ws.path())
        .arg("train")
        .arg(repo_root().join("experiments/recommended.yaml"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let accuracy: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("test accuracy "))
        .and_then(|rest| rest.split([',', ' ']).next())
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("ORL test accuracy with recommended.yaml: {accuracy}");
    assert!(accuracy >= 0.97, "{out}");
}

/// Each bad-config fixture: exit code 2, and stderr naming the file, the key and the value.
#[test]
fn every_bad_config_fixture_gets_its_clear_error_and_exit_code_2() {
    let ws = seed_workspace();
    std::fs::create_dir_all(ws.path().join("facedata/empty")).unwrap();
    copy_dir(
        &shared().join("facedata/seed/train/s01"),
        &ws.path().join("facedata/solo/s01"),
    );
    let fixtures = repo_root().join("tests/fixtures/bad_configs");
    let cases: [(&str, &[&str]); 16] = [
        ("yaml_syntax.yaml", &["yaml_syntax.yaml:", "line"]),
        ("unknown_key.yaml", &["unknown_key.yaml:3", "epocs"]),
        (
            "wrong_type.yaml",
            &["wrong_type.yaml:3", "batch_size", "sixteen"],
        ),
        (
            "negative_lr.yaml",
            &["negative_lr.yaml:3", "train.optimizer.lr", "-0.001"],
        ),
        (
            "batch_zero.yaml",
            &["batch_zero.yaml:3", "train.batch_size", "0"],
        ),
        ("zero_units.yaml", &["zero_units.yaml:3", "head.hidden[1]"]),
        (
            "unknown_optimizer.yaml",
            &["unknown_optimizer.yaml:3", "adamw"],
        ),
        (
            "no_person_folders.yaml",
            &["no_person_folders.yaml:3", "data.dir", "no person folders"],
        ),
        (
            "one_person.yaml",
            &["one_person.yaml:3", "data.dir", "at least 2 people"],
        ),
        (
            "missing_data_dir.yaml",
            &["missing_data_dir.yaml:2", "data.dir", "nowhere"],
        ),
        (
            "train_without_test.yaml",
            &["train_without_test.yaml:1", "data.test"],
        ),
        (
            "bad_margin.yaml",
            &["bad_margin.yaml:3", "head.margin", "1.5"],
        ),
        (
            "bad_far.yaml",
            &["bad_far.yaml:3", "open_set.far", "0 is not"],
        ),
        (
            "missing_strangers.yaml",
            &[
                "missing_strangers.yaml:3",
                "data.strangers",
                "nobody",
                "no such folder",
            ],
        ),
        (
            "unknown_head_type.yaml",
            &["unknown_head_type.yaml:3", "arcface"],
        ),
        (
            "unknown_backbone.yaml",
            &[
                "unknown_backbone.yaml:3",
                "resnet50",
                "mobilenet_v2",
                "dlib_resnet",
            ],
        ),
    ];
    for (file, expected) in cases {
        let path: PathBuf = fixtures.join(file);
        let assert = facelab(ws.path()).arg("train").arg(&path).assert().code(2);
        let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
        for fragment in expected {
            assert!(
                stderr.contains(fragment),
                "{file}: expected {fragment:?} in: {stderr}"
            );
        }
    }
    facelab(ws.path())
        .args(["train", "experiments/absent.yaml"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("absent.yaml").and(predicate::str::contains("No such file")),
        );
    assert!(
        runs_json(ws.path()).is_empty(),
        "no bad config leaves a run behind"
    );
}

#[test]
fn a_killed_run_is_marked_interrupted_and_the_store_stays_usable() {
    let ws = seed_workspace();
    std::fs::write(
        ws.path().join("experiments/long.yaml"),
        "data: {dir: facedata, train: train, test: test}\nhead: {hidden: [256]}\ntrain: {epochs: 100000}\n",
    )
    .unwrap();
    let mut child = spawn_facelab(ws.path(), &["train", "experiments/long.yaml"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = if ws.path().join("facelab.db").exists() {
            runs_json(ws.path())
        } else {
            Vec::new()
        };
        if runs
            .first()
            .is_some_and(|r| r["status"] == "running" && r["epochs"].as_u64() > Some(1))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let runs = runs_json(ws.path());
    assert_eq!(runs[0]["status"], "interrupted");
    assert!(runs[0]["epochs"].as_u64().unwrap() >= 2);
    let out = facelab(ws.path())
        .args(["train", "experiments/seed.yaml"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8(out).unwrap().contains("test accuracy"));
    assert_eq!(runs_json(ws.path()).len(), 2);
}

#[test]
fn runs_sort_by_any_column_and_an_unknown_column_lists_them() {
    let ws = tempfile::tempdir().unwrap();
    facelab(ws.path())
        .args(["runs", "--sort", "speed"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("'speed'")
                .and(predicate::str::contains("val_accuracy"))
                .and(predicate::str::contains("test_accuracy")),
        );
    let csv = facelab(ws.path())
        .args(["runs", "--sort", "test_accuracy", "--reverse", "--csv"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        String::from_utf8(csv).unwrap().trim(),
        "started,id,experiment,status,val_accuracy,val_loss,test_accuracy,epochs,duration"
    );
}

/// `bench experiment` trains in a temporary workspace of its own: a cold and a warm run whose
/// phases add up to at most the wall time, with features dominating only when cold, and the
/// user's workspace left without a run or a cache.
#[test]
fn bench_experiment_times_a_cold_and_a_warm_run_away_from_the_workspace() {
    let ws = seed_workspace();
    let stdout =
        stdout_of(facelab(ws.path()).args(["bench", "experiment", "experiments/seed.yaml"]));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let seconds = |line: &str, name: &str| -> f64 {
        let at = line
            .find(&format!("{name} "))
            .unwrap_or_else(|| panic!("{name} in {line}"));
        line[at + name.len() + 1..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    for (line, cache) in lines.iter().zip(["cold", "warm"]) {
        assert!(line.contains(&format!("({cache} cache)")), "{line}");
        let wall = seconds(line, "cache):");
        let phases: f64 = ["start", "dataset", "features", "training", "finishing"]
            .iter()
            .map(|p| seconds(line, p))
            .sum();
        assert!((phases - wall).abs() < 0.05, "{line}");
    }
    assert!(
        seconds(lines[0], "features") > 5.0 * seconds(lines[1], "features"),
        "{stdout}"
    );
    assert!(!ws.path().join("facelab.db").exists());
    assert!(!ws.path().join("models").exists());
}

/// `bench augment` times a copy of each of the experiment's 48 training images.
#[test]
fn bench_augment_times_copies_of_the_training_images() {
    let ws = seed_workspace();
    facelab(ws.path())
        .args(["bench", "augment", "experiments/seed.yaml", "--rounds", "1"])
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(
                r"^facelab augment seed threads=1 images=48: [0-9.]+ ms/copy \(median\)\n$",
            )
            .unwrap(),
        );
}

/// `--set` changes one key for one run: the run records the resolved config with the new
/// values, and a bad key or value exits 2 naming the key, as a bad file does.
#[test]
fn set_overrides_keys_checks_them_like_the_file_and_records_them() {
    let ws = seed_workspace();
    let stdout = stdout_of(
        facelab(ws.path())
            .args(["train", "experiments/seed.yaml", "--set", "train.epochs=1"])
            .args(["--set", "head.hidden=[64]"]),
    );
    assert!(stdout.contains("epoch 1/1"), "{stdout}");
    let run = run_id_from(&stdout);
    let shown = stdout_of(facelab(ws.path()).args(["show", &run]));
    assert!(shown.contains("  hidden:\n  - 64\n"), "{shown}");
    assert!(shown.contains("  epochs: 1\n"), "{shown}");

    for (set, named) in [
        ("train.optimizer.lrr=0.1", "unknown field `lrr`"),
        ("train.epochs=abc", "train.epochs"),
        ("train.optimizer.lr=-1", "train.optimizer.lr: -1"),
        ("train.epochs.max=2", "train.epochs is not a mapping"),
        ("epochs", "is not KEY=VALUE"),
    ] {
        facelab(ws.path())
            .args(["train", "experiments/seed.yaml", "--set", set])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(named));
    }
    assert_eq!(
        runs_json(ws.path()).len(),
        1,
        "a refused override records no run"
    );
}
