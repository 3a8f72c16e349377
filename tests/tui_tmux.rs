//! The TUI end to end in a real terminal: tmux runs `facelab` on a workspace with two runs; the
//! test opens a run, compares two, and quits, reading the screen with capture-pane.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{shared, weights_path};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed (.ci/run installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls the pane until `needle` shows up, or fails with the last screen.
fn wait_for(session: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let screen = tmux(&["capture-pane", "-t", session, "-p"]);
        if screen.contains(needle) {
            return screen;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn train(ws: &Path, epochs: usize) -> String {
    let config = format!("data: {{dir: facedata, train: train, test: test}}\nhead: {{hidden: [32]}}\ntrain: {{epochs: {epochs}}}\n");
    let file = ws.join(format!("experiments/e{epochs}.yaml"));
    std::fs::write(&file, config).unwrap();
    let out = Command::new(assert_cmd::cargo::cargo_bin("facelab"))
        .current_dir(ws)
        .env("FACELAB_WEIGHTS", weights_path())
        .arg("train")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.contains("finished;"))
        .unwrap()
        .to_owned();
    line.split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
fn open_a_run_compare_two_and_quit_in_a_real_terminal() {
    let ws = tempfile::tempdir().unwrap();
    let data = ws.path().join("facedata");
    for split in ["train", "test"] {
        for person in ["s01", "s02"] {
            let from = shared().join("facedata/seed").join(split).join(person);
            let to = data.join(split).join(person);
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(&from).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    std::fs::create_dir_all(ws.path().join("experiments")).unwrap();
    let first = train(ws.path(), 2);
    let second = train(ws.path(), 4);

    let session = format!("facelab-test-{}", std::process::id());
    let command = format!(
        "cd {} && FACELAB_WEIGHTS={} {}",
        ws.path().display(),
        weights_path().display(),
        assert_cmd::cargo::cargo_bin("facelab").display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "140",
        "-y",
        "40",
        &command,
    ]);
    let runs = wait_for(&session, &second);
    assert!(runs.contains(&first) && runs.contains("val acc"), "{runs}");

    // The newest run is selected: open it.
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let detail = wait_for(&session, "confusion matrix");
    for needle in [
        second.as_str(),
        "val_loss",
        "val_accuracy",
        "s01",
        "s02",
        "precision",
    ] {
        assert!(
            detail.contains(needle),
            "detail lacks {needle:?}:\n{detail}"
        );
    }

    // Back, mark both runs, compare.
    for key in ["Escape", "Space", "Space", "c"] {
        tmux(&["send-keys", "-t", &session, key]);
        std::thread::sleep(Duration::from_millis(150));
    }
    let compare = wait_for(&session, "final figures");
    for needle in [first.as_str(), second.as_str(), "train.epochs", "val_loss"] {
        assert!(
            compare.contains(needle),
            "compare lacks {needle:?}:\n{compare}"
        );
    }

    // A run trained by another process shows up within a couple of seconds.
    tmux(&["send-keys", "-t", &session, "Escape"]);
    let third = train(ws.path(), 3);
    wait_for(&session, &third);

    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux(&["list-sessions"]).contains(&session) {
        assert!(Instant::now() < deadline, "facelab did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    }
}
