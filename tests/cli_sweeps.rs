//! `facelab sweep` on real workspaces: a grid over the ORL faces with 5-fold cross-validation,
//! killed with SIGKILL and resumed; the same random sweep with one and two trials at a time;
//! the median rule on a sweep built to have bad trials; and every bad sweep fixture.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::{copy_dir, facelab, orl_workspace, repo_root, shared, spawn_facelab, stdout_of};
use serde_json::Value;

fn json_of(cmd: &mut Command) -> Value {
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

fn sweeps_json(ws: &Path) -> Vec<Value> {
    if !ws.join("facelab.db").exists() {
        return Vec::new();
    }
    json_of(facelab(ws).args(["sweeps", "--json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn show_json(ws: &Path, id: &str) -> Value {
    json_of(facelab(ws).args(["sweep", "show", id, "--json"]))
}

fn write(ws: &Path, file: &str, text: &str) {
    let path = ws.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The notebook's dataset with a base experiment that holds out 3 folds.
fn seed_workspace_with_folds(epochs: usize) -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    copy_dir(&shared().join("facedata/seed"), &ws.path().join("facedata"));
    write(
        ws.path(),
        "experiments/base.yaml",
        &format!(
            "data: {{dir: facedata, train: train, test: test, validation: {{folds: 3}}}}\n\
             head: {{hidden: [], l2_normalize: true}}\n\
             train: {{optimizer: {{name: adam, lr: 0.01}}, epochs: {epochs}, batch_size: 16}}\n"
        ),
    );
    ws
}

/// Trial number -> (status, params, metric, test accuracy, epochs).
fn trial_figures(report: &Value) -> Vec<(u64, String, Value, Value, Value, u64)> {
    let mut rows: Vec<_> = report["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["number"].as_u64().unwrap(),
                t["status"].as_str().unwrap().to_owned(),
                t["params"].clone(),
                t["metric"].clone(),
                t["test_accuracy"].clone(),
                t["epochs"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

#[test]
fn a_grid_sweep_runs_each_combination_once_survives_sigkill_and_then_has_nothing_to_do() {
    let ws = orl_workspace();
    write(
        ws.path(),
        "experiments/base.yaml",
        "data: {dir: facedata, train: train, test: test, validation: {folds: 5}}\n\
         head: {hidden: [], l2_normalize: true}\n\
         train: {optimizer: {name: adam, lr: 0.01}, epochs: 4, batch_size: 16}\n",
    );
    write(
        ws.path(),
        "experiments/sweeps/grid.yaml",
        "experiment: ../base.yaml\nmethod: grid\nmetric: {name: cv_accuracy}\nparameters:\n  \
         train.optimizer.lr: {values: [0.001, 0.01, 0.1]}\n  \
         head.hidden: {values: [[], [256], [1024, 512]]}\n  \
         head.dropout: {values: [0.0, 0.3]}\n",
    );
    let mut child = spawn_facelab(ws.path(), &["sweep", "experiments/sweeps/grid.yaml"]);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = sweeps_json(ws.path())
            .first()
            .map_or(0, |s| s["finished_trials"].as_u64().unwrap());
        if done >= 6 {
            break;
        }
        assert!(Instant::now() < deadline, "the sweep never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let id = sweeps_json(ws.path())[0]["id"].as_str().unwrap().to_owned();
    let half = show_json(ws.path(), &id);
    let done_before = half["finished_trials"].as_u64().unwrap();
    assert!(done_before < 18, "killed half way, not at the end");

    let out = stdout_of(facelab(ws.path()).args(["sweep", "experiments/sweeps/grid.yaml"]));
    assert!(
        out.contains(&format!("sweep {id}")),
        "the same sweep resumed: {out}"
    );
    let report = show_json(ws.path(), &id);
    let trials = trial_figures(&report);
    assert_eq!(trials.len(), 18);
    assert_eq!(
        trials.iter().map(|t| t.0).collect::<Vec<_>>(),
        (0..18).collect::<Vec<_>>()
    );
    assert!(trials.iter().all(|t| t.1 == "finished"), "{trials:?}");
    let distinct: BTreeSet<String> = trials.iter().map(|t| t.2.to_string()).collect();
    assert_eq!(distinct.len(), 18, "no combination twice");
    // Trials that finished before the kill were kept, not run again.
    for before in trial_figures(&half).iter().filter(|t| t.1 == "finished") {
        assert_eq!(Some(before), trials.iter().find(|t| t.0 == before.0));
    }
    let runs = json_of(facelab(ws.path()).args(["runs", "--json"]));
    let sweep_runs = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["sweep"]["sweep_id"] == id.as_str())
        .count();
    assert_eq!(sweep_runs, 18, "interrupted trials' runs were replaced");
    let best = report["best"].as_u64().unwrap();
    let best_metric = trials[best as usize].3.as_f64().unwrap();
    assert!(trials.iter().all(|t| t.3.as_f64().unwrap() <= best_metric));

    let again = stdout_of(facelab(ws.path()).args(["sweep", "experiments/sweeps/grid.yaml"]));
    assert!(again.contains("(0 run now, 18 before)"));
    let exported = stdout_of(facelab(ws.path()).args(["sweep", "export", &id]));
    let lr = trials[best as usize].2["train.optimizer.lr"]
        .as_f64()
        .unwrap();
    assert!(exported.contains(&format!("lr: {lr}")), "{exported}");
}

#[test]
fn one_or_two_trials_at_a_time_give_the_same_trials_and_figures() {
    let sweep = |parallel: usize| {
        format!(
            "experiment: ../base.yaml\nmethod: random\ntrials: 6\nseed: 11\nparallel: {parallel}\n\
             metric: {{name: cv_loss}}\nparameters:\n  \
             train.optimizer.lr: {{min: 0.001, max: 0.1, distribution: log_uniform}}\n  \
             head.hidden: {{values: [[], [64]]}}\n  head.dropout: {{min: 0.0, max: 0.5}}\n"
        )
    };
    let figures = |parallel: usize| {
        let ws = seed_workspace_with_folds(5);
        write(ws.path(), "experiments/sweeps/s.yaml", &sweep(parallel));
        facelab(ws.path())
            .args(["sweep", "experiments/sweeps/s.yaml"])
            .assert()
            .success();
        let id = sweeps_json(ws.path())[0]["id"].as_str().unwrap().to_owned();
        trial_figures(&show_json(ws.path(), &id))
    };
    let (one, two) = (figures(1), figures(2));
    assert_eq!(one.len(), 6);
    assert_eq!(one, two);
    let distinct: BTreeSet<String> = one.iter().map(|t| t.2.to_string()).collect();
    assert_eq!(distinct.len(), 6);
}

#[test]
fn the_median_rule_prunes_trials_that_fall_behind_and_keeps_their_epochs() {
    let ws = seed_workspace_with_folds(8);
    // Three sensible learning rates first, then two far too small to learn anything in 8 epochs.
    write(
        ws.path(),
        "experiments/sweeps/prune.yaml",
        "experiment: ../base.yaml\nmethod: grid\nmetric: {name: cv_accuracy}\n\
         early_terminate: {type: median, min_epochs: 2, startup_trials: 3}\nparameters:\n  \
         train.optimizer.lr: {values: [0.01, 0.02, 0.03, 0.0000001, 0.0000002]}\n",
    );
    facelab(ws.path())
        .args(["sweep", "experiments/sweeps/prune.yaml"])
        .assert()
        .success();
    let id = sweeps_json(ws.path())[0]["id"].as_str().unwrap().to_owned();
    let trials = trial_figures(&show_json(ws.path(), &id));
    let statuses: Vec<&str> = trials.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(
        statuses,
        ["finished", "finished", "finished", "pruned", "pruned"]
    );
    for t in &trials[..3] {
        assert_eq!(t.5, 8);
    }
    for t in &trials[3..] {
        assert_eq!(
            t.5, 3,
            "pruned at the first epoch after min_epochs, epochs kept"
        );
        assert!(
            t.3.is_null(),
            "a pruned trial has no metric to be selected by"
        );
    }
    let table = stdout_of(facelab(ws.path()).args(["runs"]));
    assert_eq!(table.matches("pruned").count(), 2);
}

/// Each bad sweep fixture: exit code 2, and stderr naming the file, its line and the key.
/// `head.type` is a parameter like any other: each trial trains its own kind of head, with
/// cross-validated figures, and the cosine and centroid trials calibrate a threshold.
#[test]
fn a_sweep_over_head_types_trains_each_kind_with_cv_figures() {
    let ws = seed_workspace_with_folds(5);
    write(
        ws.path(),
        "experiments/sweeps/heads.yaml",
        "experiment: ../base.yaml\nmethod: grid\nparallel: 2\nmetric: {name: cv_accuracy}\n\
         parameters:\n  head.type: {values: [dense, cosine, centroid]}\n",
    );
    facelab(ws.path())
        .args(["sweep", "experiments/sweeps/heads.yaml"])
        .assert()
        .success();
    let id = sweeps_json(ws.path())[0]["id"].as_str().unwrap().to_owned();
    let report = show_json(ws.path(), &id);
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    for trial in trials {
        assert_eq!(trial["status"], "finished", "{trial}");
        assert!(trial["metric"].as_f64().unwrap() > 0.5, "{trial}");
        let kind = trial["params"]["head.type"].as_str().unwrap();
        let run_id = trial["run_id"].as_str().unwrap();
        let run: Value = json_of(facelab(ws.path()).args(["show", run_id, "--json"]));
        assert!(
            run["config_yaml"]
                .as_str()
                .unwrap()
                .contains(&format!("type: {kind}"))
                || kind == "dense",
            "{kind}: {}",
            run["config_yaml"]
        );
        let has_threshold = run["open_set"]["threshold"].is_number();
        assert_eq!(has_threshold, kind != "dense", "{kind}");
        let epochs = run["history"].as_array().unwrap().len();
        assert_eq!(epochs == 1, kind == "centroid", "{kind}: {epochs} epochs");
    }
}

/// The number after `label` in `text` (`label` ends where the number starts).
fn number_after(text: &str, label: &str) -> f64 {
    let rest = &text[text
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {text}"))
        + label.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("a number after {label} in {text}"))
}

#[test]
fn bench_sweep_keeps_new_features_and_training_out_of_the_overhead() {
    let ws = seed_workspace_with_folds(3);
    write(
        ws.path(),
        "experiments/sweeps/copies.yaml",
        "experiment: ../base.yaml\nmethod: grid\nmetric: {name: cv_accuracy}\n\
         parameters:\n  augment.copies: {values: [0, 1]}\n",
    );
    let out =
        stdout_of(facelab(ws.path()).args(["bench", "sweep", "experiments/sweeps/copies.yaml"]));
    assert!(out.contains("trials=2"), "{out}");
    let trials = number_after(&out, "+ trials ");
    let steps = number_after(&out, "s (");
    let features = number_after(&out, "training steps, ");
    let overhead_ms = number_after(&out, "steps and features: median ");
    // The second trial's one augmented copy of each image is computed during the trial, and
    // counted as features, not as overhead.
    assert!(features > 0.0 && steps > 0.0, "{out}");
    // Seconds are printed to 0.01 s: allow that rounding three times over.
    let rounding = 0.015;
    assert!(steps + features <= trials + rounding, "{out}");
    assert!(
        2.0 * overhead_ms / 1000.0 <= trials - steps - features + rounding,
        "{out}"
    );
}

#[test]
fn every_bad_sweep_fixture_exits_2_naming_file_line_and_key() {
    let fixtures = repo_root().join("tests/fixtures/bad_sweeps");
    let cases: [(&str, &[&str]); 10] = [
        ("yaml_syntax.yaml", &["yaml_syntax.yaml:2", "method"]),
        ("unknown_key.yaml", &["unknown_key.yaml:3", "metod"]),
        (
            "unknown_parameter.yaml",
            &["unknown_parameter.yaml:6", "parameters.head.hiden", "hiden"],
        ),
        (
            "log_uniform_from_zero.yaml",
            &[
                "log_uniform_from_zero.yaml:6",
                "parameters.train.optimizer.lr",
                "min > 0",
            ],
        ),
        (
            "grid_over_a_range.yaml",
            &[
                "grid_over_a_range.yaml:5",
                "parameters.head.dropout",
                "values",
            ],
        ),
        (
            "metric_without_folds.yaml",
            &[
                "metric_without_folds.yaml:3",
                "metric.name",
                "data.validation",
            ],
        ),
        (
            "random_without_trials.yaml",
            &["random_without_trials.yaml:2", "trials"],
        ),
        (
            "value_out_of_range.yaml",
            &[
                "value_out_of_range.yaml:5",
                "parameters.head.dropout",
                "1.5",
            ],
        ),
        (
            "unknown_metric.yaml",
            &["unknown_metric.yaml:3", "metric.name", "test_accuracy"],
        ),
        (
            "missing_experiment.yaml",
            &["missing_experiment.yaml:1", "experiment", "nowhere.yaml"],
        ),
    ];
    let ws = tempfile::tempdir().unwrap();
    for (file, expected) in cases {
        let assert = facelab(ws.path())
            .arg("sweep")
            .arg(fixtures.join(file))
            .assert()
            .code(2);
        let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
        for fragment in expected {
            assert!(
                stderr.contains(fragment),
                "{file}: expected {fragment:?} in: {stderr}"
            );
        }
    }
    assert!(
        sweeps_json(ws.path()).is_empty(),
        "no bad sweep is recorded"
    );
}

/// The job launchers' files (deploy/) start `facelab worker` with options the binary accepts:
/// each command, as written, runs here against an empty workspace and stops after no trials.
#[test]
fn the_slurm_and_kubernetes_files_start_a_worker_the_binary_accepts() {
    let deploy = repo_root().join("deploy");
    let manifest: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(deploy.join("kubernetes-workers.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["spec"]["completionMode"].as_str(), Some("Indexed"));
    let container = &manifest["spec"]["template"]["spec"]["containers"][0];
    assert!(container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|e| e["name"].as_str() == Some("FACELAB_STORE")));
    let k8s: Vec<String> = container["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let script = std::fs::read_to_string(deploy.join("slurm-workers.sh")).unwrap();
    let slurm: Vec<String> = script
        .lines()
        .find_map(|l| l.strip_prefix("exec facelab "))
        .expect("the script ends by exec'ing facelab")
        .split_whitespace()
        .map(|w| w.replace("\"$task_ws\"", "."))
        .collect();
    for args in [&k8s[1..], &slurm[..]] {
        let ws = tempfile::tempdir().unwrap();
        let out = stdout_of(facelab(ws.path()).args(args).args(["--max-trials", "0"]));
        assert!(out.contains("0 trials run"), "{args:?}: {out}");
    }
}
