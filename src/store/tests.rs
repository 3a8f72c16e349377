//! The store suite: a run's lifecycle, prefixes, interrupted runs and sweeps, on every backend
//! (an in-memory SQLite database, and a PostgreSQL server when `FACELAB_TEST_POSTGRES` names
//! one: `.ci/run` starts one); then SQLite's file reopening and migrations.
use super::*;
use crate::train::metrics::ConfusionMatrix;
use crate::train::open_set::OpenSetReport;

/// A fresh store on each backend. Without `FACELAB_TEST_POSTGRES`, the PostgreSQL half says so
/// loudly, and fails under CI, which must run it.
pub(super) fn backends(test: &str) -> Vec<(&'static str, RunStore)> {
    let mut stores = vec![("sqlite", RunStore::open_in_memory().unwrap())];
    match std::env::var("FACELAB_TEST_POSTGRES") {
        Ok(url) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let schema = format!("t_{test}_{}_{nanos}", std::process::id());
            stores.push(("postgres", RunStore::open_postgres(&url, Some(&schema)).unwrap()));
        }
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI must run the store suite on PostgreSQL too, but FACELAB_TEST_POSTGRES is not set (.ci/run starts a server)")
        }
        Err(_) => eprintln!(
            "NOT RUN on PostgreSQL: {test} ran on SQLite only; set FACELAB_TEST_POSTGRES (source .ci/postgres.sh && start_postgres)"
        ),
    }
    stores
}

pub(super) fn new_run(id: &str) -> NewRun {
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
    for (backend, store) in backends("a_run_goes_from_runn") {
        eprintln!("backend {backend}");
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
            head: Some(StoredHead {
                // Every byte value, so a text round trip would show.
                safetensors: (0..=255u8).collect(),
                meta_json: "{\"classes\": []}".into(),
            }),
        };
        store.finish_run("abc12345", &result).unwrap();
        assert_eq!(store.head("abc12345").unwrap(), result.head);
        assert_eq!(
            store.head("abc1").unwrap(),
            None,
            "heads are found by full id"
        );
        let report = store.open_set("abc12345").unwrap().unwrap();
        assert_eq!(Some(&report), result.open_set.as_ref());
        let row = &store
            .rows(
                "SELECT threshold, dir, fpir FROM open_set WHERE run_id = 'abc12345'",
                &[],
            )
            .unwrap()[0];
        let figures = (row.real(0), row.opt_real(1), row.opt_real(2));
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
}

#[test]
fn prefixes_resolve_when_unique_and_deletion_cascades() {
    for (backend, store) in backends("prefixes_resolve_whe") {
        eprintln!("backend {backend}");
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
}

#[test]
fn an_empty_short_or_wildcard_prefix_selects_no_run() {
    for (backend, store) in backends("an_empty_short_or_wi") {
        eprintln!("backend {backend}");
        store.create_run(&new_run("aaaa1111")).unwrap();
        for bad in ["", "%", "_", "aaa", "aaa%", "a_a_", "zzzz"] {
            let e = store.run(bad).unwrap_err().to_string();
            assert!(e.contains("at least 4 hex digits"), "{bad:?}: {e}");
        }
    }
}

#[test]
fn dead_running_runs_become_interrupted() {
    for (backend, store) in backends("dead_running_runs_be") {
        eprintln!("backend {backend}");
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
    let version = store.rows("PRAGMA user_version", &[]).unwrap()[0].int(0);
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
    let left = store.rows("SELECT COUNT(*) FROM epochs", &[]).unwrap()[0].int(0);
    assert_eq!(
        left, 0,
        "foreign keys are back on: deleting a run deletes its epochs"
    );
}

#[test]
fn sweeps_claim_each_parameter_set_once_and_link_their_runs() {
    for (backend, store) in backends("sweeps_claim") {
        eprintln!("backend {backend}");
        let sweep = SweepRecord {
            id: "5eed0001".into(),
            name: "heads".into(),
            file: "experiments/sweeps/heads.yaml".into(),
            method: "grid".into(),
            metric: "cv_accuracy".into(),
            goal: "maximize".into(),
            total_trials: 2,
            created_at: String::new(),
            dataset_hash: "d".into(),
            spec_yaml: "name: heads\n".into(),
            experiment_yaml: "name: base\n".into(),
        };
        store.create_sweep(&sweep).unwrap();
        store.create_sweep(&sweep).unwrap();
        assert_eq!(store.sweeps().unwrap().len(), 1, "creating again resumes");
        assert_eq!(store.sweep("5eed").unwrap().name, "heads");
        assert!(store.claim_trial("5eed0001", 0, "{\"a\":1}", "h1").unwrap());
        assert!(
            !store.claim_trial("5eed0001", 1, "{\"a\":1}", "h1").unwrap(),
            "the same parameters twice"
        );
        assert!(store.claim_trial("5eed0001", 1, "{\"a\":2}", "h2").unwrap());
        assert!(store.claim_trial("5eed0001", 1, "{\"a\":3}", "h3").is_err());
        let mut run = new_run("abcd0001");
        run.trial = Some(TrialOf {
            sweep_id: "5eed0001".into(),
            number: 1,
        });
        store.create_run(&run).unwrap();
        let trials = store.trials("5eed0001").unwrap();
        assert_eq!(trials.len(), 2);
        assert_eq!(trials[0].status(), "pending");
        assert_eq!(trials[1].run.as_ref().unwrap().id, "abcd0001");
        assert_eq!(trials[1].params["a"], 2);
        let listed = store.run("abcd0001").unwrap();
        assert_eq!(listed.sweep.unwrap().number, 1);
    }
}

#[test]
fn two_processes_opening_a_fresh_postgres_store_at_once_migrate_it_once() {
    let Ok(url) = std::env::var("FACELAB_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: FACELAB_TEST_POSTGRES is not set"
        );
        eprintln!("NOT RUN: set FACELAB_TEST_POSTGRES to a PostgreSQL server to run this test");
        return;
    };
    let schema = format!(
        "t_concurrent_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            std::thread::spawn(move || RunStore::open_postgres(&url, Some(&schema)).map(|_| ()))
        })
        .collect();
    for opener in openers {
        opener.join().unwrap().unwrap();
    }
    let store = RunStore::open_postgres(&url, Some(&schema)).unwrap();
    let versions = store
        .rows("SELECT version FROM facelab_schema", &[])
        .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].int(0) as usize, pg_schema::MIGRATIONS.len());
    assert!(store.is_shared());
}

#[test]
fn copying_a_history_twice_loses_and_duplicates_nothing() {
    let source = RunStore::open_in_memory().unwrap();
    fixtures::fill_with_runs(&source, 3).unwrap();
    let sweep = SweepRecord {
        id: "5eed0002".into(),
        name: "s".into(),
        file: "s.yaml".into(),
        method: "grid".into(),
        metric: "cv_accuracy".into(),
        goal: "maximize".into(),
        total_trials: 1,
        created_at: String::new(),
        dataset_hash: "d".into(),
        spec_yaml: String::new(),
        experiment_yaml: String::new(),
    };
    source.create_sweep(&sweep).unwrap();
    source.claim_trial("5eed0002", 0, "{}", "h").unwrap();
    for (backend, target) in backends("copy_twice") {
        eprintln!("backend {backend}");
        target.create_run(&new_run("0000aaaa")).unwrap();
        let first = copy_store(&source, &target).unwrap();
        assert_eq!(first.runs_added(), 3);
        let again = copy_store(&source, &target).unwrap();
        assert!(
            again.tables.iter().all(|(_, _, added)| *added == 0),
            "{again:?}"
        );
        let runs = target.runs().unwrap();
        assert_eq!(runs.len(), 4, "the target's own run stays");
        for run in source.runs().unwrap() {
            let copied = target.run(&run.id).unwrap();
            assert_eq!(copied, run);
            assert_eq!(
                target.epochs(&run.id).unwrap(),
                source.epochs(&run.id).unwrap()
            );
        }
        assert_eq!(target.trials("5eed0002").unwrap().len(), 1);
        // And back: a store copied into a fresh one holds the same runs.
        let back = RunStore::open_in_memory().unwrap();
        copy_store(&target, &back).unwrap();
        assert_eq!(back.runs().unwrap(), target.runs().unwrap());
    }
}

#[test]
fn processes_opening_a_fresh_file_at_once_migrate_it_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("facelab.db");
        let openers: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || RunStore::open(&path).map(|_| ()))
            })
            .collect();
        for opener in openers {
            opener.join().unwrap().unwrap();
        }
        let store = RunStore::open(&path).unwrap();
        let version = store.rows("PRAGMA user_version", &[]).unwrap()[0].int(0);
        assert_eq!(version as usize, schema::MIGRATIONS.len());
    }
}
