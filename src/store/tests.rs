//! The store on an in-memory database (and a file, for reopening): a run's lifecycle, prefixes,
//! interrupted runs, migrations.
use super::*;
use crate::train::metrics::ConfusionMatrix;
use crate::train::open_set::OpenSetReport;

fn new_run(id: &str) -> NewRun {
    NewRun {
        id: id.into(),
        experiment: "seed".into(),
        config_yaml: "name: seed\n".into(),
        config_hash: "c".into(),
        dataset_hash: "d".into(),
        weights_hash: "w".into(),
        seed: 42,
        trial: None,
    }
}

fn epoch(e: usize, val_loss: f64) -> EpochMetrics {
    EpochMetrics {
        epoch: e,
        loss: 1.0 / e as f64,
        accuracy: 0.5,
        val_loss: Some(val_loss),
        val_accuracy: Some(0.25 * e as f64),
        seconds: 0.1,
    }
}

#[test]
fn a_run_goes_from_running_to_finished_with_epochs_and_confusion() {
    let store = RunStore::open_in_memory().unwrap();
    store.create_run(&new_run("abc12345")).unwrap();
    assert_eq!(store.run("abc1").unwrap().status, RunStatus::Running);
    store.add_epoch("abc12345", &epoch(1, 0.9)).unwrap();
    store.add_epoch("abc12345", &epoch(2, 0.4)).unwrap();
    store.add_epoch("abc12345", &epoch(3, 0.6)).unwrap();
    let matrix = ConfusionMatrix::new(2, &[0, 0, 1], &[0, 1, 1]);
    let result = RunResult {
        best_epoch: Some(2),
        selection: None,
        test_accuracy: Some(matrix.accuracy()),
        confusion: Some((
            matrix,
            vec!["s01".into(), "s02".into()],
            vec!["Eric".into(), "s02".into()],
        )),
        open_set: Some(OpenSetReport {
            score: "cosine".into(),
            far: 0.05,
            threshold: 0.42,
            calibration_scores: vec![0.1, 0.3],
            known_scores: vec![0.9, 0.2, 0.7],
            known_correct: vec![true, false, true],
            stranger_scores: vec![0.5],
        }),
    };
    store.finish_run("abc12345", &result).unwrap();
    let report = store.open_set("abc12345").unwrap().unwrap();
    assert_eq!(Some(&report), result.open_set.as_ref());
    let figures: (f64, Option<f64>, Option<f64>) = store
        .conn
        .query_row(
            "SELECT threshold, dir, fpir FROM open_set WHERE run_id = 'abc12345'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(figures, (0.42, Some(2.0 / 3.0), Some(1.0)));

    let run = store.run("abc12345").unwrap();
    assert_eq!(run.status, RunStatus::Finished);
    assert_eq!((run.epochs, run.best_epoch), (3, Some(2)));
    assert_eq!(
        (run.val_loss, run.best_val_loss, run.best_val_accuracy),
        (Some(0.6), Some(0.4), Some(0.75))
    );
    assert!(run.ended_at.is_some() && run.duration_seconds().unwrap() >= 0.0);
    assert_eq!(store.epochs("abc12345").unwrap().len(), 3);
    let c = store.confusion("abc12345").unwrap().unwrap();
    assert_eq!(c.counts, vec![vec![1, 1], vec![0, 1]]);
    assert_eq!(c.labels, vec!["Eric", "s02"]);
    assert_eq!(c.precision, vec![Some(1.0), Some(0.5)]);
}

#[test]
fn prefixes_resolve_when_unique_and_deletion_cascades() {
    let store = RunStore::open_in_memory().unwrap();
    store.create_run(&new_run("aaaa1111")).unwrap();
    store.create_run(&new_run("aaaa2222")).unwrap();
    store.add_epoch("aaaa2222", &epoch(1, 0.5)).unwrap();
    assert!(matches!(store.run("aaaa"), Err(Error::RunAmbiguous { .. })));
    assert!(matches!(store.run("ffff"), Err(Error::RunNotFound(_))));
    assert_eq!(store.run("AAAA2").unwrap().id, "aaaa2222");
    store.delete_run("aaaa2222").unwrap();
    assert!(store.epochs("aaaa2222").unwrap().is_empty());
    assert_eq!(store.runs().unwrap().len(), 1);
}

#[test]
fn an_empty_short_or_wildcard_prefix_selects_no_run() {
    let store = RunStore::open_in_memory().unwrap();
    store.create_run(&new_run("aaaa1111")).unwrap();
    for bad in ["", "%", "_", "aaa", "aaa%", "a_a_", "zzzz"] {
        let e = store.run(bad).unwrap_err().to_string();
        assert!(e.contains("at least 4 hex digits"), "{bad:?}: {e}");
    }
}

#[test]
fn dead_running_runs_become_interrupted() {
    let store = RunStore::open_in_memory().unwrap();
    store.create_run(&new_run("1111aaaa")).unwrap();
    store.create_run(&new_run("dead0000")).unwrap();
    let marked = store.mark_interrupted(|id| id == "1111aaaa").unwrap();
    assert_eq!(marked, vec!["dead0000".to_owned()]);
    let dead = store.run("dead").unwrap();
    assert_eq!(dead.status, RunStatus::Interrupted);
    // No epoch was recorded: it was last known alive when it started.
    assert_eq!(dead.ended_at.as_deref(), Some(dead.started_at.as_str()));
    assert_eq!(store.run("1111").unwrap().status, RunStatus::Running);
}

#[test]
fn reopening_a_file_store_keeps_runs_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("facelab.db");
    RunStore::open(&path)
        .unwrap()
        .create_run(&new_run("keep"))
        .unwrap();
    let store = RunStore::open(&path).unwrap();
    assert_eq!(store.runs().unwrap()[0].id, "keep");
    let version: i64 = store
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version as usize, schema::MIGRATIONS.len());
}

#[test]
fn migrating_a_version_2_store_keeps_its_runs_and_their_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("facelab.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        for sql in &schema::MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO runs (id, experiment, config_yaml, config_hash, dataset_hash, weights_hash, seed, status, started_at)
             VALUES ('abcd1234', 'seed', 'name: seed', 'c', 'd', 'w', 42, 'finished', '2026-11-01T00:00:00Z');
             INSERT INTO epochs (run_id, epoch, loss, accuracy, seconds) VALUES ('abcd1234', 1, 0.5, 0.5, 0.1);",
        )
        .unwrap();
    }
    let store = RunStore::open(&path).unwrap();
    assert_eq!(store.run("abcd").unwrap().epochs, 1);
    store.create_run(&new_run("ffff0000")).unwrap();
    store
        .end_run("ffff0000", RunStatus::Pruned, "pruned at epoch 3")
        .unwrap();
    assert_eq!(store.run("ffff").unwrap().status, RunStatus::Pruned);
    store.delete_run("abcd1234").unwrap();
    let left: i64 = store
        .conn
        .query_row("SELECT COUNT(*) FROM epochs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        left, 0,
        "foreign keys are back on: deleting a run deletes its epochs"
    );
}
