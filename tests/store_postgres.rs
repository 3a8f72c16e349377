//! The binary on a PostgreSQL store (`--store URL`): a run trained, listed, shown and used for
//! prediction, with nothing written to the workspace's `facelab.db`; and sweep workers
//! (`workers`). Needs a server:
//! `FACELAB_TEST_POSTGRES` (`.ci/run` starts one); without it the test says loudly that it did
//! not run, and fails under CI.

mod common;
#[path = "store_postgres/workers.rs"]
mod workers;

use common::{facelab, fresh_database, shared, stdout_of};

/// The notebook's dataset and a centroid experiment on it (trains in well under a second).
fn seed_workspace_with_centroid_experiment() -> (tempfile::TempDir, std::path::PathBuf) {
    let ws = tempfile::tempdir().unwrap();
    common::copy_dir(&shared().join("facedata/seed"), &ws.path().join("facedata"));
    let experiment = ws.path().join("centroid.yaml");
    std::fs::write(
        &experiment,
        "data: {dir: facedata, train: train, test: test}\nhead: {type: centroid, l2_normalize: true}\n",
    )
    .unwrap();
    (ws, experiment)
}

#[test]
fn a_run_lives_in_the_postgres_store_given_by_store() {
    let Some(url) = fresh_database() else { return };
    let (ws, experiment) = seed_workspace_with_centroid_experiment();
    let on_server = |args: &[&str]| {
        let mut cmd = facelab(ws.path());
        cmd.arg("--store").arg(&url).args(args);
        cmd
    };
    stdout_of(&mut on_server(&["train", experiment.to_str().unwrap()]));
    let runs: serde_json::Value =
        serde_json::from_str(&stdout_of(&mut on_server(&["runs", "--json"]))).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "finished");
    let id = runs[0]["id"].as_str().unwrap();
    let shown: serde_json::Value =
        serde_json::from_str(&stdout_of(&mut on_server(&["show", id, "--json"]))).unwrap();
    assert_eq!(shown["test_accuracy"].as_f64(), Some(1.0));
    assert_eq!(shown["confusion"]["labels"].as_array().unwrap().len(), 4);
    assert!(shown["open_set"]["threshold"].is_number());
    let predicted = stdout_of(&mut on_server(&[
        "predict",
        id,
        "facedata/test/s01",
        "--json",
    ]));
    assert!(
        predicted
            .lines()
            .all(|l| l.contains("\"predicted\":\"s01\"")),
        "{predicted}"
    );
    assert!(
        !ws.path().join("facelab.db").exists(),
        "nothing went to the workspace's own store"
    );
    // The same workspace without --store has its own, empty store.
    let local = stdout_of(facelab(ws.path()).args(["runs", "--json"]));
    assert_eq!(local.trim(), "[]");
}

#[test]
fn store_copy_moves_a_history_to_postgres_once_however_often_it_runs() {
    let Some(url) = fresh_database() else { return };
    let (ws, experiment) = seed_workspace_with_centroid_experiment();
    for _ in 0..2 {
        stdout_of(facelab(ws.path()).arg("train").arg(&experiment));
    }
    let copy = || {
        stdout_of(facelab(ws.path()).args(["store", "copy", "--from", "facelab.db", "--to", &url]))
    };
    assert!(copy().contains("2 run(s) added"));
    assert!(copy().contains("0 run(s) added"));
    let local = stdout_of(facelab(ws.path()).args(["runs", "--json"]));
    let remote = stdout_of(facelab(ws.path()).args(["--store", &url, "runs", "--json"]));
    assert_eq!(local, remote);
}
