//! The binary's `features`, `embed` and `bench` commands on a temporary workspace.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::weights_path;
use predicates::prelude::*;

fn facelab(workspace: &Path) -> Command {
    let mut cmd = Command::cargo_bin("facelab").unwrap();
    cmd.arg("--workspace")
        .arg(workspace)
        .env("FACELAB_WEIGHTS", weights_path());
    cmd
}

fn noise_png(path: &Path, seed: u32) {
    let mut state = seed.wrapping_mul(2654435761) | 1;
    let img = image::RgbImage::from_fn(64, 48, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn second_run_is_all_cache_hits_and_bad_files_are_reported() {
    let ws = tempfile::tempdir().unwrap();
    let data = ws.path().join("facedata");
    noise_png(&data.join("train/alice/1.png"), 1);
    noise_png(&data.join("train/alice/2.png"), 2);
    noise_png(&data.join("test/bob/1.png"), 3);
    std::fs::write(data.join("train/bob.jpg"), b"not a jpeg").unwrap();
    std::fs::write(data.join("notes.doc"), b"hello").unwrap();
    std::fs::write(data.join("README.md"), b"# faces").unwrap();

    facelab(ws.path())
        .arg("features")
        .assert()
        .success()
        .stdout(predicate::str::contains("3 computed, 0 cached, 1 skipped"))
        .stderr(predicate::str::contains("bob.jpg").and(predicate::str::contains("notes.doc")));
    let second = stdout_of(facelab(ws.path()).arg("features"));
    assert!(second.contains("0 computed, 3 cached"), "{second}");

    // Moving an image keeps its content, so its features stay cached.
    std::fs::rename(data.join("test/bob/1.png"), data.join("train/alice/3.png")).unwrap();
    let moved = stdout_of(facelab(ws.path()).arg("features"));
    assert!(moved.contains("0 computed, 3 cached"), "{moved}");

    // Editing one is a miss for that image only.
    noise_png(&data.join("train/alice/2.png"), 99);
    let edited = stdout_of(facelab(ws.path()).arg("features"));
    assert!(edited.contains("1 computed, 2 cached"), "{edited}");
}

#[test]
fn corrupt_cache_entry_is_recomputed() {
    let ws = tempfile::tempdir().unwrap();
    noise_png(&ws.path().join("facedata/carol/1.png"), 7);
    facelab(ws.path()).arg("features").assert().success();
    let entry = walkdir::WalkDir::new(ws.path().join("models/cache/features"))
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_type().is_file())
        .expect("one cache entry");
    let mut bytes = std::fs::read(entry.path()).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(entry.path(), bytes).unwrap();
    let out = stdout_of(facelab(ws.path()).arg("features"));
    assert!(
        out.contains("1 computed, 0 cached") && out.contains("1 corrupt"),
        "{out}"
    );
    let again = stdout_of(facelab(ws.path()).arg("features"));
    assert!(again.contains("0 computed, 1 cached"), "{again}");
}

#[test]
fn empty_workspace_says_what_to_do_next() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir(ws.path().join("facedata")).unwrap();
    facelab(ws.path())
        .arg("features")
        .assert()
        .success()
        .stdout(predicate::str::contains("No images under").and(predicate::str::contains("Next:")));
}

#[test]
fn embed_prints_json_lines_with_features_and_top5() {
    let ws = tempfile::tempdir().unwrap();
    let img = ws.path().join("x.png");
    noise_png(&img, 5);
    let out = stdout_of(facelab(ws.path()).args(["embed", "--top5"]).arg(&img));
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["features"].as_array().unwrap().len(), 1280);
    assert_eq!(line["top5"].as_array().unwrap().len(), 5);
    assert_eq!(line["path"], img.to_str().unwrap());
}

#[test]
fn wrong_weights_file_is_refused_with_its_checksum() {
    let ws = tempfile::tempdir().unwrap();
    let fake = ws.path().join("fake.pth");
    std::fs::write(&fake, b"not weights").unwrap();
    let img = ws.path().join("x.png");
    noise_png(&img, 5);
    Command::cargo_bin("facelab")
        .unwrap()
        .arg("--workspace")
        .arg(ws.path())
        .arg("--weights")
        .arg(&fake)
        .arg("embed")
        .arg(&img)
        .assert()
        .failure()
        .stderr(predicate::str::contains("fake.pth").and(predicate::str::contains("sha256")));
}

#[test]
fn bench_backbone_reports_ms_per_image() {
    let ws = tempfile::tempdir().unwrap();
    facelab(ws.path())
        .args(["bench", "backbone", "--batch", "2", "--runs", "1"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"batch=2: [0-9.]+ ms/image").unwrap());
}
