//! The worker queue on every backend: enqueueing, claiming in order, parameters drawn at claim
//! time, heartbeats, stale claims taken over, and concurrent claimers each getting distinct
//! trials (on a SQLite file and on the PostgreSQL server).
use super::tests::{backends, new_run};
use super::*;

fn queued_sweep(store: &RunStore, id: &str, trials: usize) {
    store
        .create_sweep(&SweepRecord {
            id: id.into(),
            name: "q".into(),
            file: "q.yaml".into(),
            method: "random".into(),
            metric: "cv_accuracy".into(),
            goal: "maximize".into(),
            total_trials: trials,
            created_at: String::new(),
            dataset_hash: "d".into(),
            spec_yaml: String::new(),
            experiment_yaml: String::new(),
        })
        .unwrap();
    let queued: Vec<QueuedTrial> = (0..trials)
        .map(|n| QueuedTrial {
            number: n,
            // Odd trials draw their parameters when claimed.
            params: (n % 2 == 0).then(|| (format!("{{\"n\":{n}}}"), format!("h{n}"))),
        })
        .collect();
    assert_eq!(store.queue_sweep(id, &queued).unwrap(), trials);
    assert_eq!(
        store.queue_sweep(id, &queued).unwrap(),
        0,
        "enqueuing again adds nothing"
    );
}

#[test]
fn claims_come_in_number_order_and_complete_once() {
    for (backend, store) in backends("claims_in_order") {
        eprintln!("backend {backend}");
        queued_sweep(&store, "9ee00001", 3);
        let ids = vec!["9ee00001".to_owned()];
        assert_eq!(store.open_queued_sweeps().unwrap(), ids);
        let first = store.claim_next_trial(&ids, "w1", 60.0).unwrap().unwrap();
        assert_eq!((first.number, first.attempts), (0, 1));
        assert_eq!(first.params_json.as_deref(), Some("{\"n\":0}"));
        let second = store.claim_next_trial(&ids, "w2", 60.0).unwrap().unwrap();
        assert_eq!((second.number, second.params_json.clone()), (1, None));
        assert!(
            !store
                .set_claimed_params(&second, "{\"n\":0}", "h0")
                .unwrap(),
            "trial 0 has those parameters"
        );
        assert!(store
            .set_claimed_params(&second, "{\"n\":1}", "h1")
            .unwrap());
        assert!(store.heartbeat(&second, "w2").unwrap());
        assert!(
            !store.heartbeat(&second, "w1").unwrap(),
            "w1 does not hold it"
        );
        let counts = store.queue_counts(&ids, 60.0).unwrap();
        assert_eq!(
            (counts.queued, counts.running, counts.stale, counts.done),
            (1, 2, 0, 0)
        );
        assert!(store.complete_trial(&first, "w1").unwrap());
        assert!(!store.complete_trial(&first, "w1").unwrap(), "done once");
        store.release_trial(&second, "w2").unwrap();
        let again = store.claim_next_trial(&ids, "w3", 60.0).unwrap().unwrap();
        assert_eq!(
            (again.number, again.attempts),
            (1, 2),
            "a released trial is next"
        );
        assert_eq!(again.params_json.as_deref(), Some("{\"n\":1}"));
        let last = store.claim_next_trial(&ids, "w3", 60.0).unwrap().unwrap();
        assert_eq!(last.number, 2);
        assert_eq!(store.claim_next_trial(&ids, "w4", 60.0).unwrap(), None);
        for claim in [&again, &last] {
            assert!(store.complete_trial(claim, "w3").unwrap());
        }
        assert!(store.open_queued_sweeps().unwrap().is_empty());
        assert_eq!(store.queue_counts(&ids, 60.0).unwrap().done, 3);
    }
}

#[test]
fn a_claim_whose_heartbeat_is_older_than_the_grace_is_taken_over_with_its_run_deleted() {
    for (backend, store) in backends("stale_claims") {
        eprintln!("backend {backend}");
        queued_sweep(&store, "9ee00002", 1);
        let ids = vec!["9ee00002".to_owned()];
        let dead = store.claim_next_trial(&ids, "dead", 60.0).unwrap().unwrap();
        let mut run = new_run("dead0001");
        run.trial = Some(TrialOf {
            sweep_id: "9ee00002".into(),
            number: 0,
        });
        store.create_run(&run).unwrap();
        assert_eq!(store.claim_next_trial(&ids, "alive", 60.0).unwrap(), None);
        std::thread::sleep(Duration::from_millis(50));
        let counts = store.queue_counts(&ids, 0.01).unwrap();
        assert_eq!((counts.running, counts.stale), (0, 1));
        let taken = store
            .claim_next_trial(&ids, "alive", 0.01)
            .unwrap()
            .unwrap();
        assert_eq!(taken.reclaimed_run.as_deref(), Some("dead0001"));
        assert_eq!(taken.attempts, 2);
        assert!(matches!(store.run("dead0001"), Err(Error::RunNotFound(_))));
        assert!(
            !store.heartbeat(&dead, "dead").unwrap(),
            "the old claim is gone"
        );
        assert!(!store.complete_trial(&dead, "dead").unwrap());
        assert!(store.complete_trial(&taken, "alive").unwrap());
    }
}

/// Claimers on their own connections, at once, until the queue is empty: every trial once.
fn claim_all_concurrently(open: impl Fn() -> RunStore + Sync, trials: usize) {
    let claimed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for w in 0..4 {
            let (open, claimed) = (&open, &claimed);
            scope.spawn(move || {
                let store = open();
                let ids = vec!["9ee00003".to_owned()];
                let worker = format!("w{w}");
                while let Some(claim) = store.claim_next_trial(&ids, &worker, 60.0).unwrap() {
                    assert!(store.complete_trial(&claim, &worker).unwrap());
                    claimed.lock().unwrap().push(claim.number);
                }
            });
        }
    });
    let mut claimed = claimed.into_inner().unwrap();
    claimed.sort_unstable();
    assert_eq!(claimed, (0..trials).collect::<Vec<_>>());
}

#[test]
fn concurrent_claimers_get_every_trial_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("facelab.db");
    queued_sweep(&RunStore::open(&file).unwrap(), "9ee00003", 40);
    claim_all_concurrently(|| RunStore::open(&file).unwrap(), 40);
    let server = backends("concurrent_claimers")
        .into_iter()
        .find(|(backend, _)| *backend == "postgres");
    if let Some((_, store)) = server {
        queued_sweep(&store, "9ee00003", 40);
        let schema: String = store.rows("SELECT current_schema()", &[]).unwrap()[0].text(0);
        let url = std::env::var("FACELAB_TEST_POSTGRES").unwrap();
        claim_all_concurrently(|| RunStore::open_postgres(&url, Some(&schema)).unwrap(), 40);
    }
}
