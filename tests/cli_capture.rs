//! Face detection and capture through the binary: a capture session over a folder source with
//! every gate exercised, imports, dataset stats, and bad person names; live recognition
//! (`recognize`).

mod common;
#[path = "cli_capture/recognize.rs"]
mod recognize;

use std::path::Path;

use assert_cmd::Command;
use common::shared;
use predicates::prelude::*;

fn facelab(workspace: &Path) -> Command {
    let mut cmd = Command::cargo_bin("facelab").unwrap();
    cmd.current_dir(workspace);
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

fn seed_photo(name: &str) -> std::path::PathBuf {
    shared().join("facedata/seed/train/s01").join(name)
}

#[test]
fn detect_finds_one_face_per_frontal_photo() {
    let ws = tempfile::tempdir().unwrap();
    let out = stdout(
        facelab(ws.path())
            .arg("detect")
            .arg(seed_photo("01.jpg"))
            .arg(seed_photo("06.jpg")),
    );
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let faces = v["faces"].as_array().unwrap();
        assert_eq!(faces.len(), 1, "{line}");
        let side = faces[0][2].as_i64().unwrap();
        assert!((100..400).contains(&side), "{line}");
    }
}

#[test]
fn capture_from_a_folder_applies_every_gate_and_never_overwrites() {
    let ws = tempfile::tempdir().unwrap();
    let photos = ws.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for name in ["01.jpg", "05.jpg", "06.jpg", "07.jpg"] {
        std::fs::copy(seed_photo(name), photos.join(format!("a_{name}"))).unwrap();
    }
    // The same photo again: a near-duplicate of a_01.
    std::fs::copy(seed_photo("01.jpg"), photos.join("b_copy.jpg")).unwrap();
    let original = image::open(seed_photo("06.jpg")).unwrap().to_rgb8();
    image::imageops::blur(&original, 6.0)
        .save(photos.join("c_blurred.png"))
        .unwrap();
    image::imageops::resize(&original, 160, 120, image::imageops::FilterType::Triangle)
        .save(photos.join("d_small.png"))
        .unwrap();
    image::RgbImage::from_pixel(320, 240, image::Rgb([90, 120, 150]))
        .save(photos.join("e_wall.png"))
        .unwrap();
    std::fs::write(photos.join("f_broken.jpg"), b"not a jpeg").unwrap();

    let source = format!("dir:{}", photos.display());
    let out = stdout(facelab(ws.path()).args([
        "capture", "--person", "eric", "--count", "10", "--source", &source,
    ]));
    let line_for = |name: &str| {
        out.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
            .to_owned()
    };
    assert!(
        line_for("b_copy").contains("too like a saved crop"),
        "{out}"
    );
    assert!(line_for("c_blurred").contains("too blurred"), "{out}");
    let small = line_for("d_small");
    assert!(
        small.contains("too small") || small.contains("no face"),
        "{out}"
    );
    assert!(line_for("e_wall").contains("no face"), "{out}");
    assert!(out.contains("saved 4 of 10 crops of eric"), "{out}");
    assert!(out.contains("1 unreadable files skipped"), "{out}");

    let dir = ws.path().join("facedata/train/eric");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4);
    for path in &names {
        let crop = image::open(path).unwrap();
        assert_eq!(
            (crop.width(), crop.height()),
            (224, 224),
            "{}",
            path.display()
        );
        assert_eq!(path.extension().unwrap(), "jpg");
    }

    // A second session sees the saved crops: the same photos are duplicates, nothing is replaced.
    let again = stdout(facelab(ws.path()).args([
        "capture", "--person", "eric", "--count", "2", "--source", &source,
    ]));
    assert!(again.contains("saved 0 of 2"), "{again}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
}

#[test]
fn import_saves_one_crop_per_photo_with_a_face_and_stats_count_them() {
    let ws = tempfile::tempdir().unwrap();
    let photos = shared().join("facedata/seed/train/s02");
    let detected = stdout(
        facelab(ws.path()).arg("detect").args(
            std::fs::read_dir(&photos)
                .unwrap()
                .map(|e| e.unwrap().path()),
        ),
    );
    let with_face = detected
        .lines()
        .filter(|l| !l.contains("\"faces\":[]"))
        .count();
    assert!(with_face >= 11, "{detected}");

    let out = stdout(
        facelab(ws.path())
            .arg("dataset")
            .arg("import")
            .arg(&photos)
            .args(["--person", "maria", "--split", "test"]),
    );
    assert!(
        out.contains(&format!("saved {with_face} crops of maria")),
        "{out}"
    );
    assert_eq!(
        std::fs::read_dir(ws.path().join("facedata/test/maria"))
            .unwrap()
            .count(),
        with_face
    );

    let stats: serde_json::Value = serde_json::from_str(&stdout(
        facelab(ws.path()).args(["dataset", "stats", "--json"]),
    ))
    .unwrap();
    assert_eq!(stats["people"]["maria"]["test"], with_face);
    assert_eq!(stats["duplicates"].as_array().unwrap().len(), 0);
}

#[test]
fn person_names_that_leave_facedata_and_missing_cameras_are_clear_errors() {
    let ws = tempfile::tempdir().unwrap();
    for bad in ["../escape", "a/b", ".hidden"] {
        facelab(ws.path())
            .args(["capture", "--person", bad, "--source", "dir:."])
            .assert()
            .failure()
            .stderr(predicate::str::contains("use letters, digits, spaces"));
    }
    assert!(!ws.path().join("facedata").exists());
    facelab(ws.path())
        .args(["capture", "--person", "bob", "--source", "camera:97"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("camera 97").and(predicate::str::contains("dir:PATH")));
    facelab(ws.path())
        .args(["capture", "--person", "bob", "--source", "webcam"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("camera:N"));
}

#[test]
fn a_background_capture_streams_boxed_previews_and_obeys_stop() {
    use facelab::capture::cascade::{find_face_cascade, Cascade};
    use facelab::capture::session::CaptureSettings;
    use facelab::capture::source::SourceSpec;
    use facelab::jobs::{spawn_capture, CaptureControl, CaptureEvent};

    let ws = tempfile::tempdir().unwrap();
    let cascade = Cascade::load(&find_face_cascade(None).unwrap()).unwrap();
    let source: SourceSpec = format!("dir:{}", shared().join("facedata/seed/train/s01").display())
        .parse()
        .unwrap();
    let mut settings = CaptureSettings::for_source("eric", &source);
    settings.count = Some(2);
    let job = spawn_capture(
        ws.path().join("facedata"),
        settings,
        source.clone(),
        cascade.clone(),
    );
    let events: Vec<CaptureEvent> = job.events.iter().collect();
    let frames: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            CaptureEvent::Frame { preview, tally, .. } => Some((preview.width(), tally.saved)),
            _ => None,
        })
        .collect();
    assert!(!frames.is_empty() && frames.iter().all(|(w, _)| *w <= 320));
    // The preview carries the face's red box.
    let boxed = events.iter().any(|e| matches!(e, CaptureEvent::Frame { preview, .. } if preview.pixels().any(|p| p.0 == [255, 40, 40])));
    assert!(boxed);
    assert_eq!(events.last(), Some(&CaptureEvent::Finished(Ok(2))));
    assert_eq!(
        std::fs::read_dir(ws.path().join("facedata/train/eric"))
            .unwrap()
            .count(),
        2
    );

    // Stop ends a session before its target.
    let mut settings = CaptureSettings::for_source("maria", &source);
    settings.count = Some(100);
    let job = spawn_capture(ws.path().join("facedata"), settings, source, cascade);
    job.control.send(CaptureControl::Stop).unwrap();
    let last = job.events.iter().last().unwrap();
    assert!(
        matches!(last, CaptureEvent::Finished(Ok(n)) if n < 100),
        "{last:?}"
    );
}
