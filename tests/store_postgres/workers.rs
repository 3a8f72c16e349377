//! Sweep workers on a real PostgreSQL server: a 24-trial sweep queued, four `facelab worker`
//! processes claiming from it while the TUI watches the same store, one worker SIGKILLed in
//! the middle of a trial. Every trial must end done exactly once, the killed trial run again
//! by another worker once its heartbeat is older than the grace period, `runs` must list each
//! trial's run once, and the TUI must show them all without a store error. Needs
//! `FACELAB_TEST_POSTGRES` (`.ci/run` starts a server); without it the test says loudly that it
//! did not run, and fails under CI.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::common::tmux::{tmux, Session};
use super::common::{copy_dir, facelab, fresh_database, shared, stdout_of, weights_path};

const TRIALS: usize = 24;
const GRACE_SECONDS: &str = "3";

/// The notebook's dataset, a base experiment with 3 folds and enough epochs that a trial takes
/// a moment, and a random sweep of 24 trials over it.
fn workspace_with_sweep() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    copy_dir(&shared().join("facedata/seed"), &ws.path().join("facedata"));
    std::fs::create_dir_all(ws.path().join("experiments/sweeps")).unwrap();
    std::fs::write(
        ws.path().join("experiments/base.yaml"),
        "data: {dir: facedata, train: train, test: test, validation: {folds: 3}}\n\
         head: {hidden: [64], l2_normalize: true}\n\
         train: {optimizer: {name: adam, lr: 0.01}, epochs: 120, batch_size: 16}\n",
    )
    .unwrap();
    std::fs::write(
        ws.path().join("experiments/sweeps/many.yaml"),
        format!(
            "experiment: ../base.yaml\nmethod: random\ntrials: {TRIALS}\nseed: 5\n\
             metric: {{name: cv_accuracy}}\nparameters:\n  \
             train.optimizer.lr: {{min: 0.001, max: 0.1, distribution: log_uniform}}\n  \
             head.dropout: {{min: 0.0, max: 0.5}}\n"
        ),
    )
    .unwrap();
    ws
}

fn spawn_worker(ws: &Path, url: &str, log: &Path) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("facelab"))
        .current_dir(ws)
        .env("FACELAB_WEIGHTS", weights_path())
        .env("FACELAB_STORE", url)
        .args(["worker", "--idle-exit", "4", "--grace", GRACE_SECONDS])
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap()
}

/// A trial's row in the queue.
struct TrialRow {
    number: i64,
    state: String,
    worker: String,
    attempts: i64,
    run: Option<String>,
}

fn trials(db: &mut postgres::Client) -> Vec<TrialRow> {
    db.query(
        "SELECT number, state, worker, attempts, run_id FROM trials ORDER BY number",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| TrialRow {
        number: r.get(0),
        state: r.get(1),
        worker: r.get::<_, Option<String>>(2).unwrap_or_default(),
        attempts: r.get(3),
        run: r.get(4),
    })
    .collect()
}

/// Waits until the worker with process id `pid` is running a trial whose run has begun;
/// returns the trial's number and run id.
fn running_trial_of(db: &mut postgres::Client, pid: u32) -> (i64, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let worker = format!("%:{pid}");
    loop {
        let rows = db
            .query(
                "SELECT t.number, t.run_id FROM trials t JOIN runs r ON r.id = t.run_id
                 WHERE t.state = 'claimed' AND t.worker LIKE $1 AND r.status = 'running'",
                &[&worker],
            )
            .unwrap();
        if let Some(row) = rows.first() {
            return (row.get(0), row.get(1));
        }
        assert!(Instant::now() < deadline, "worker {pid} never ran a trial");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn four_workers_finish_every_trial_once_though_one_is_killed_mid_trial() {
    let Some(url) = fresh_database() else { return };
    let ws = workspace_with_sweep();
    let on_server = |args: &[&str]| {
        let mut cmd = facelab(ws.path());
        cmd.env("FACELAB_STORE", &url).args(args);
        cmd
    };
    let queued = stdout_of(&mut on_server(&[
        "sweep",
        "experiments/sweeps/many.yaml",
        "--queue-only",
    ]));
    assert!(
        queued.contains(&format!("{TRIALS} trials queued")),
        "{queued}"
    );
    let tui = Session::start_with("workers", ws.path(), &format!("FACELAB_STORE={url}"));
    tui.wait_for(" runs 0 ");

    let logs = tempfile::tempdir().unwrap();
    let mut workers: Vec<Child> = (0..4)
        .map(|i| spawn_worker(ws.path(), &url, &logs.path().join(format!("w{i}.out"))))
        .collect();
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let victim = workers[0].id();
    let (killed_trial, killed_run) = running_trial_of(&mut db, victim);
    workers[0].kill().unwrap(); // SIGKILL: no chance to release its claim
    workers[0].wait().unwrap();
    // The TUI is read while the workers run: no store error may ever show.
    let deadline = Instant::now() + Duration::from_secs(300);
    while workers[1..]
        .iter_mut()
        .any(|w| w.try_wait().unwrap().is_none())
    {
        let screen = tmux(&["capture-pane", "-t", tui.name(), "-p"]);
        let lower = screen.to_lowercase();
        assert!(
            !lower.contains("error") && !lower.contains("locked"),
            "the TUI showed a store problem while the workers ran:\n{screen}"
        );
        assert!(Instant::now() < deadline, "the workers did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    for worker in &mut workers[1..] {
        assert!(worker.wait().unwrap().success());
    }

    let trials = trials(&mut db);
    assert_eq!(trials.len(), TRIALS);
    let by_victim = |t: &TrialRow| t.worker.ends_with(&format!(":{victim}"));
    for t in &trials {
        assert_eq!(t.state, "done", "trial {}", t.number);
        assert!(t.run.is_some(), "trial {} has no run", t.number);
        let expected = if t.number == killed_trial { 2 } else { 1 };
        assert_eq!(t.attempts, expected, "trial {}'s claims", t.number);
    }
    let rerun = &trials[killed_trial as usize];
    assert!(
        !by_victim(rerun),
        "another worker ran the killed trial again"
    );
    assert_ne!(rerun.run.as_deref(), Some(killed_run.as_str()));

    let runs: serde_json::Value =
        serde_json::from_str(&stdout_of(&mut on_server(&["runs", "--json"]))).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(
        runs.len(),
        TRIALS,
        "one run per trial, the killed one's deleted"
    );
    assert!(runs.iter().all(|r| r["status"] == "finished"));
    let numbers: BTreeSet<u64> = runs
        .iter()
        .map(|r| r["sweep"]["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers.len(), TRIALS, "each trial listed once");

    let reported: usize = (1..4)
        .map(|i| {
            let out = std::fs::read_to_string(logs.path().join(format!("w{i}.out"))).unwrap();
            out.lines().filter(|l| l.contains(" finished ")).count()
        })
        .sum();
    let victims = trials.iter().filter(|t| by_victim(t)).count();
    assert_eq!(reported + victims, TRIALS, "no trial finished twice");

    let screen = tui.wait_for(&format!(" runs {TRIALS} "));
    assert!(!screen.to_lowercase().contains("error"), "{screen}");
    tui.quit();
}

#[test]
fn a_worker_whose_dataset_differs_refuses_the_sweep() {
    let Some(url) = fresh_database() else { return };
    let ws = workspace_with_sweep();
    let queued = stdout_of(facelab(ws.path()).env("FACELAB_STORE", &url).args([
        "sweep",
        "experiments/sweeps/many.yaml",
        "--queue-only",
    ]));
    let sweep_id = queued
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':');
    // Another machine, where one training image differs.
    let elsewhere = workspace_with_sweep();
    let person = elsewhere.path().join("facedata/train/s01");
    let image = std::fs::read_dir(&person)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(
        shared()
            .join("facedata/seed/test/s02")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
        &image,
    )
    .unwrap();
    let out = facelab(elsewhere.path())
        .env("FACELAB_STORE", &url)
        .args(["worker", "--sweep", sweep_id, "--idle-exit", "1"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(sweep_id) && stderr.contains("content hash") && stderr.contains("facedata"),
        "{stderr}"
    );
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let claimed: i64 = db
        .query_one("SELECT COUNT(*) FROM trials WHERE state <> 'queued'", &[])
        .unwrap()
        .get(0);
    assert_eq!(claimed, 0, "a refused sweep's trials stay queued");
}

#[test]
fn sigterm_puts_the_running_trial_back_in_the_queue_at_once() {
    let Some(url) = fresh_database() else { return };
    let ws = workspace_with_sweep();
    stdout_of(facelab(ws.path()).env("FACELAB_STORE", &url).args([
        "sweep",
        "experiments/sweeps/many.yaml",
        "--queue-only",
    ]));
    let logs = tempfile::tempdir().unwrap();
    // A grace period far longer than the test: only the release can free the trial in time.
    let mut worker = Command::new(assert_cmd::cargo::cargo_bin("facelab"))
        .current_dir(ws.path())
        .env("FACELAB_WEIGHTS", weights_path())
        .env("FACELAB_STORE", &url)
        .args(["worker", "--grace", "3600"])
        .stdout(std::fs::File::create(logs.path().join("out")).unwrap())
        .stderr(std::fs::File::create(logs.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let (number, run) = running_trial_of(&mut db, worker.id());
    let signal = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    assert!(worker.wait().unwrap().success(), "SIGTERM is a clean stop");
    let out = std::fs::read_to_string(logs.path().join("out")).unwrap();
    assert!(out.contains("stopped by a signal"), "{out}");
    let row = db
        .query_one(
            "SELECT t.state, r.status FROM trials t JOIN runs r ON r.id = $2 WHERE t.number = $1",
            &[&number, &run],
        )
        .unwrap();
    let (state, status): (String, String) = (row.get(0), row.get(1));
    assert_eq!((state.as_str(), status.as_str()), ("queued", "interrupted"));
}
