//! The TUI end to end in a real terminal: tmux runs `facelab` on a workspace with two runs; the
//! tests open a run, compare two, capture faces from a folder, edit an experiment in an editor, and
//! quit, reading the screen with capture-pane. Each tmux session is killed when its test ends, a
//! failed one included.

mod common;

use std::path::Path;
use std::process::Command;

use common::tmux::Session;
use common::{assert_success, copy_dir, shared, weights_path};

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
    assert_success(&out);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.contains("finished;"))
        .unwrap()
        .to_owned();
    line.split_whitespace().nth(1).unwrap().to_owned()
}

/// A workspace with two of the seed's people and an empty experiments folder.
fn two_people_workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    for split in ["train", "test"] {
        for person in ["s01", "s02"] {
            copy_dir(
                &shared().join("facedata/seed").join(split).join(person),
                &ws.path().join("facedata").join(split).join(person),
            );
        }
    }
    std::fs::create_dir_all(ws.path().join("experiments")).unwrap();
    ws
}

#[test]
fn open_a_run_compare_two_and_quit_in_a_real_terminal() {
    let ws = two_people_workspace();
    let first = train(ws.path(), 2);
    let second = train(ws.path(), 4);

    let session = Session::start("facelab-runs", ws.path());
    let runs = session.wait_for(&second);
    assert!(runs.contains(&first) && runs.contains("val acc"), "{runs}");

    // The newest run is selected: open it.
    session.keys(&["Enter"]);
    let detail = session.wait_for("confusion matrix");
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
    session.keys(&["Escape", "Space", "Space", "c"]);
    let compare = session.wait_for("final figures");
    for needle in [first.as_str(), second.as_str(), "train.epochs", "val_loss"] {
        assert!(
            compare.contains(needle),
            "compare lacks {needle:?}:\n{compare}"
        );
    }

    // A run trained by another process shows up within a couple of seconds.
    session.keys(&["Escape"]);
    let third = train(ws.path(), 3);
    session.wait_for(&third);
    session.quit();
}

/// Crops the CLI saves from `photos` for a person in a fresh workspace.
fn cli_capture_count(photos: &Path) -> usize {
    let ws = tempfile::tempdir().unwrap();
    let out = Command::new(assert_cmd::cargo::cargo_bin("facelab"))
        .current_dir(ws.path())
        .args(["capture", "--person", "ref", "--source"])
        .arg(format!("dir:{}", photos.display()))
        .output()
        .unwrap();
    assert_success(&out);
    std::fs::read_dir(ws.path().join("facedata/train/ref")).map_or(0, |d| d.count())
}

#[test]
fn capture_from_a_folder_in_the_terminal_saves_what_the_cli_saves() {
    let photos = shared().join("facedata/seed/train/s01");
    let expected = cli_capture_count(&photos);
    // A folder needs no time between saves; with a camera's 300 ms interval only one or two
    // of these photos would be saved, so the comparison below tells the two rules apart.
    assert!(expected >= 3, "the CLI saved only {expected} crops");

    let ws = tempfile::tempdir().unwrap();
    let session = Session::start("facelab-capture", ws.path());
    session.wait_for("Runs");
    session.keys(&["Tab", "Tab", "Tab", "Tab"]);
    session.wait_for("source  camera:0");
    session.keys(&["n"]);
    session.type_text("eric");
    session.keys(&["Enter", "o"]);
    // The field shows camera:0; typing replaces it.
    session.type_text(&format!("dir:{}", photos.display()));
    session.keys(&["Enter"]);
    session.wait_for("source  dir:");
    session.keys(&["Enter"]);
    let done = session.wait_for("crops of eric saved");
    assert!(
        done.contains(&format!("finished: {expected} crops of eric saved")),
        "expected {expected} crops, as the CLI saves:\n{done}"
    );
    assert!(
        done.contains("not saved:"),
        "the per-gate counts are shown:\n{done}"
    );
    let saved = std::fs::read_dir(ws.path().join("facedata/train/eric"))
        .unwrap()
        .count();
    assert_eq!(saved, expected);
    session.quit();
}

/// `e` on the Experiments screen hands the terminal to $EDITOR and takes it back: the keys typed
/// meanwhile reach the editor (a script that reads a line from the terminal and appends it to
/// the file), and the UI then says whether the edited file checks out.
#[test]
fn e_edits_an_experiment_in_the_editor_and_checks_it() {
    let ws = tempfile::tempdir().unwrap();
    let experiments = ws.path().join("experiments");
    std::fs::create_dir_all(&experiments).unwrap();
    let file = experiments.join("only.yaml");
    std::fs::write(&file, "data: {dir: facedata}\n").unwrap();
    let editor = ws.path().join("edit.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nprintf 'EDITOR OPEN\\n'\nread line\nprintf '%s\\n' \"$line\" >> \"$1\"\n",
    )
    .unwrap();
    let env = format!("EDITOR='sh {}'", editor.display());
    let session = Session::start_with("facelab-edit", ws.path(), &env);
    session.wait_for("Runs");
    session.keys(&["Tab"]);
    session.wait_for("only.yaml");

    session.keys(&["e"]);
    session.wait_for("EDITOR OPEN");
    session.type_text("name: renamed");
    session.keys(&["Enter"]);
    session.wait_for("only.yaml saved; it checks out");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text, "data: {dir: facedata}\nname: renamed\n");

    session.keys(&["e"]);
    session.wait_for("EDITOR OPEN");
    session.type_text("bogus: 1");
    session.keys(&["Enter"]);
    let screen = session.wait_for("unknown field `bogus`");
    assert!(screen.contains("only.yaml"), "{screen}");
    session.quit();
}

/// `R` on a run copies its resolved config to the editor and trains the edited copy: the editor
/// (a script) changes the epochs from 2 to 1, and a new run with one epoch appears.
#[test]
fn capital_r_runs_an_edited_copy_of_a_runs_config() {
    let ws = two_people_workspace();
    let first = train(ws.path(), 2);
    let editor = ws.path().join("edit.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/^  epochs: 2$/  epochs: 1/' \"$1\"\n",
    )
    .unwrap();
    let env = format!("EDITOR='sh {}'", editor.display());
    let session = Session::start_with("facelab-rerun", ws.path(), &env);
    session.wait_for(&first);
    session.keys(&["R"]);
    session.wait_for("epoch 1/1");
    let out = Command::new(assert_cmd::cargo::cargo_bin("facelab"))
        .current_dir(ws.path())
        .args(["runs", "--json"])
        .output()
        .unwrap();
    assert_success(&out);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let epochs: Vec<u64> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["epochs"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs.len(), 2, "{runs}");
    assert!(epochs.contains(&1) && epochs.contains(&2), "{runs}");
    session.quit();
}

/// Enter on a sweep file on the Experiments screen runs the sweep in the background; the Sweeps
/// screen shows it and its trials table fills in as trials finish.
#[test]
fn a_sweep_started_from_experiments_fills_the_sweeps_screen() {
    let ws = two_people_workspace();
    std::fs::write(
        ws.path().join("experiments/base.yaml"),
        "data: {dir: facedata, train: train, test: test, validation: {folds: 2}}\nhead: {hidden: []}\ntrain: {epochs: 3}\n",
    )
    .unwrap();
    std::fs::create_dir_all(ws.path().join("experiments/sweeps")).unwrap();
    std::fs::write(
        ws.path().join("experiments/sweeps/tiny.yaml"),
        "experiment: ../base.yaml\nmethod: grid\nmetric: {name: cv_loss}\nparameters:\n  train.optimizer.lr: {values: [0.001, 0.01, 0.1]}\n",
    )
    .unwrap();
    let session = Session::start_with("facelab-sweep", ws.path(), "");
    session.wait_for("Runs");
    session.keys(&["Tab"]);
    session.wait_for("tiny.yaml");
    session.keys(&["Down", "Enter"]);
    let screen = session.wait_for("3/3 finished");
    assert!(screen.contains("trials of tiny"), "{screen}");
    let screen = session.wait_for("selected: trial");
    assert!(screen.matches("finished").count() >= 3, "{screen}");
    assert!(screen.contains("importance") && screen.contains("best so far"));
    session.keys(&["Enter"]);
    session.wait_for("run · config");
    session.quit();
}

/// The Recognize screen on a folder of photos: it starts with the run selected on the Runs
/// screen, shows a name in the "in view" list and the picture, pauses, saves the frame
/// annotated, stops on Esc and quits with the terminal restored.
#[test]
fn recognize_plays_a_folder_shows_a_name_pauses_saves_and_quits() {
    let ws = two_people_workspace();
    let run = train(ws.path(), 3);
    let photos = shared().join("facedata/seed/test/s01");
    let session = Session::start("facelab-recognize", ws.path());
    session.wait_for(&run);
    session.keys(&["Tab", "Tab", "Tab", "Tab", "Tab"]);
    session.wait_for(&format!("run     {run}"));
    session.keys(&["o"]);
    session.type_text(&format!("dir:{}", photos.display()));
    session.keys(&["Enter"]);
    session.wait_for("source  dir:");
    session.keys(&["Enter"]);
    let live = session.wait_for("track 1");
    assert!(
        live.contains("■ s01") || live.contains("■ s02") || live.contains("■ unknown"),
        "a face named in the list:\n{live}"
    );
    assert!(
        live.contains('▀') || live.contains('▄'),
        "the picture:\n{live}"
    );
    session.keys(&["Space"]);
    session.wait_for("paused (Space resumes)");
    session.keys(&["s"]);
    session.wait_for("saved ");
    let saved: Vec<_> = std::fs::read_dir(ws.path().join("recognized"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        saved.len() == 1 && saved[0].starts_with(&run) && saved[0].ends_with(".png"),
        "{saved:?}"
    );
    session.keys(&["Escape"]);
    session.wait_for("stopped after");
    session.quit();
}
