//! `facelab recognize` end to end: face crops of the seed people made the product's way
//! (`dataset import`, as capture makes them), a run trained on them, and frames made from the
//! held-out photos pasted into larger noisy backgrounds, played as a folder source. Every
//! frame's face must be found inside the pasted photo and named as its person; a person the run
//! was not trained on must come out unknown; bad sources and runs must be one clear line.

use std::path::{Path, PathBuf};

use facelab::capture::cascade::{find_face_cascade, to_gray, Cascade, DetectParams};
use image::{Rgb, RgbImage};
use serde_json::Value;

use super::common::{facelab, shared, stdout_of};

const PEOPLE: [&str; 4] = ["s01", "s02", "s03", "s04"];

/// A workspace whose facedata holds crops imported from the seed photos: train and test of
/// `known`, and the train photos of `strangers` under `strangers/`; and a centroid experiment
/// with an unknown threshold when there are strangers.
fn workspace_of_crops(known: &[&str], strangers: &[&str]) -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    let seed = shared().join("facedata/seed");
    let import = |dir: PathBuf, person: &str, split: &str| {
        stdout_of(
            facelab(ws.path())
                .args(["dataset", "import"])
                .arg(dir)
                .args(["--person", person, "--split", split]),
        );
    };
    for person in known {
        import(seed.join("train").join(person), person, "train");
        import(seed.join("test").join(person), person, "test");
    }
    for person in strangers {
        import(seed.join("train").join(person), person, "train");
        let from = ws.path().join("facedata/train").join(person);
        std::fs::create_dir_all(ws.path().join("facedata/strangers")).unwrap();
        std::fs::rename(&from, ws.path().join("facedata/strangers").join(person)).unwrap();
    }
    // Naming is judged closed-set; the unknown threshold is on only where strangers are.
    let open_set = if strangers.is_empty() {
        "false"
    } else {
        "true"
    };
    std::fs::write(
        ws.path().join("centroid.yaml"),
        format!(
            "data: {{dir: facedata, train: train, test: test}}\n\
             head: {{type: centroid, l2_normalize: true}}\nopen_set: {{enabled: {open_set}}}\n"
        ),
    )
    .unwrap();
    ws
}

fn train(ws: &Path) -> String {
    stdout_of(facelab(ws).args(["train", "centroid.yaml"]));
    let runs: Value =
        serde_json::from_str(&stdout_of(facelab(ws).args(["runs", "--json"]))).unwrap();
    runs[0]["id"].as_str().unwrap().to_owned()
}

/// A held-out photo pasted into a 1024x768 frame of noise.
/// Returns the frame and the pasted region `[x, y, w, h]`.
fn frame_of(photo: &Path, n: u32) -> (RgbImage, [i64; 4]) {
    let image = image::open(photo).unwrap().to_rgb8();
    let (w, h) = image.dimensions();
    let mut state = 0x2545_f491_u32.wrapping_add(n);
    let mut frame = RgbImage::from_fn(1024, 768, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let v = 60 + (state % 120) as u8;
        Rgb([v, v, v])
    });
    let (x, y) = (40 + 37 * (n % 7), 30 + 23 * (n % 9));
    assert!(x + w <= 1024 && y + h <= 768);
    image::imageops::overlay(&mut frame, &image, i64::from(x), i64::from(y));
    (
        frame,
        [i64::from(x), i64::from(y), i64::from(w), i64::from(h)],
    )
}

/// The held-out photos of `people` in which the detector finds a face at 80 px (the seed's
/// s04 photos are tight crops where it mostly does not), made into frames in `dir`. Returns
/// each frame's path, person and pasted region.
fn frames(people: &[&str], dir: &Path) -> Vec<(PathBuf, String, [i64; 4])> {
    let cascade = Cascade::load(&find_face_cascade(None).unwrap()).unwrap();
    let params = DetectParams {
        min_size: 80,
        ..DetectParams::default()
    };
    let mut out = Vec::new();
    for person in people {
        let held_out = shared().join("facedata/seed/test").join(person);
        let mut photos: Vec<PathBuf> = std::fs::read_dir(held_out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        photos.sort();
        for photo in photos {
            let faces = cascade.detect(&to_gray(&image::open(&photo).unwrap().to_rgb8()), &params);
            if faces.len() != 1 {
                continue;
            }
            let (frame, region) = frame_of(&photo, out.len() as u32);
            let path = dir.join(format!("frame_{:03}.png", out.len()));
            frame.save(&path).unwrap();
            out.push((path, person.to_string(), region));
        }
    }
    out
}

fn recognize_json(ws: &Path, run: &str, frames: &Path) -> Vec<Value> {
    let source = format!("dir:{}", frames.display());
    stdout_of(facelab(ws).args(["recognize", run, "--json", "--source", &source]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_pasted_face_is_found_in_place_and_named() {
    let ws = workspace_of_crops(&PEOPLE, &[]);
    let run = train(ws.path());
    let dir = tempfile::tempdir().unwrap();
    let expected = frames(&PEOPLE, dir.path());
    assert!(
        expected.len() >= 9,
        "only {} usable held-out photos",
        expected.len()
    );
    let results = recognize_json(ws.path(), &run, dir.path());
    assert_eq!(results.len(), expected.len());
    for (n, (result, (path, person, [x, y, w, h]))) in results.iter().zip(&expected).enumerate() {
        let keys: Vec<&str> = result
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["faces", "frame", "source"], "{result}");
        assert_eq!(result["frame"], n as u64 + 1);
        assert_eq!(result["source"], path.display().to_string());
        let faces = result["faces"].as_array().unwrap();
        assert_eq!(faces.len(), 1, "{result}");
        let face = &faces[0];
        let mut keys: Vec<&str> = face
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "box",
                "confidence",
                "label",
                "predicted",
                "track",
                "unknown"
            ]
        );
        let b: Vec<i64> = face["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert!(
            b[0] >= *x && b[1] >= *y && b[0] + b[2] <= x + w && b[1] + b[3] <= y + h,
            "{path:?}: box {b:?} outside the pasted photo {:?}",
            [x, y, w, h]
        );
        assert_eq!(face["predicted"], person.as_str(), "{path:?}: {face}");
        assert_eq!(face["unknown"], false);
        assert!(face["track"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn a_person_the_run_never_saw_is_unknown() {
    let ws = workspace_of_crops(&["s01", "s02", "s04"], &["s03"]);
    let run = train(ws.path());
    let dir = tempfile::tempdir().unwrap();
    let expected = frames(&["s03"], dir.path());
    assert_eq!(
        expected.len(),
        3,
        "s03's held-out photos each show one face"
    );
    for result in recognize_json(ws.path(), &run, dir.path()) {
        let faces = result["faces"].as_array().unwrap();
        assert_eq!(faces.len(), 1, "{result}");
        assert_eq!(faces[0]["unknown"], true, "{result}");
        assert_eq!(faces[0]["predicted"], Value::Null);
        assert_eq!(faces[0]["label"], Value::Null);
    }
}

#[test]
fn bad_sources_and_runs_are_one_clear_line() {
    let ws = workspace_of_crops(&["s01", "s02", "s03"], &[]);
    let run = train(ws.path());
    let empty = tempfile::tempdir().unwrap();
    let fails = |args: &[&str], needles: &[&str]| {
        let out = facelab(ws.path())
            .arg("recognize")
            .args(args)
            .assert()
            .code(1)
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        }
        assert!(!stderr.contains("panicked"));
    };
    let source = format!("dir:{}", empty.path().display());
    fails(
        &[&run, "--source", &source],
        &["no readable images", &empty.path().display().to_string()],
    );
    fails(&[&run, "--source", "camera:9"], &["camera 9"]);
    std::fs::remove_file(ws.path().join("models").join(&run).join("head.safetensors")).unwrap();
    fails(&[&run, "--source", &source], &["head.safetensors"]);
}

#[test]
fn a_static_frame_reuses_its_tracks_features_and_a_new_crop_does_not() {
    use facelab::backbone::{Backbone, MobileNet};
    use facelab::model::TrainedHead;
    use facelab::recognize::Recognizer;

    let backbone = Backbone::MobileNet(MobileNet::load(&super::common::weights_path()).unwrap());
    let head = TrainedHead::random_for_bench(backbone.weights_sha256(), 4);
    let cascade = Cascade::load(&find_face_cascade(None).unwrap()).unwrap();
    let mut recognizer = Recognizer::new(cascade, &backbone, head, None, 80).unwrap();
    let photo = |name: &str| {
        image::open(shared().join("facedata/seed/test/s01").join(name))
            .unwrap()
            .to_rgb8()
    };
    let still = photo("13.jpg");
    let first = recognizer.recognize(&still, "a");
    let again = recognizer.recognize(&still, "a");
    assert_eq!((first.faces.len(), again.faces.len()), (1, 1));
    assert!(!first.faces[0].reused_features);
    assert!(again.faces[0].reused_features, "the same crop again");
    assert_eq!(again.faces[0].track, first.faces[0].track);
    assert_eq!(again.faces[0].confidence, first.faces[0].confidence);
    // The next photo: the face moved (another box, another crop), features computed anew.
    let moved = recognizer.recognize(&photo("14.jpg"), "b");
    assert_eq!(moved.faces.len(), 1);
    assert!(!moved.faces[0].reused_features);
}

#[test]
fn ctrl_c_ends_a_looping_stream_with_whole_lines_and_success() {
    use std::io::{BufRead, BufReader};

    let ws = workspace_of_crops(&["s01", "s02", "s03"], &[]);
    let run = train(ws.path());
    let dir = tempfile::tempdir().unwrap();
    frames(&["s01"], dir.path());
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("facelab"))
        .current_dir(ws.path())
        .env("FACELAB_WEIGHTS", super::common::weights_path())
        .args([
            "recognize",
            &run,
            "--json",
            "--loop",
            "--fps",
            "30",
            "--source",
        ])
        .arg(format!("dir:{}", dir.path().display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..6 {
        let line = lines.next().unwrap().unwrap();
        serde_json::from_str::<Value>(&line).unwrap();
    }
    let interrupt = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    // Every line after the signal is whole JSON too, and the stream ends.
    for line in lines {
        serde_json::from_str::<Value>(&line.unwrap()).unwrap();
    }
    assert!(child.wait().unwrap().success(), "Ctrl-C is a clean end");
}
