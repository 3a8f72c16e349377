//! Experiments on dlib's face-trained features, through the binary: `experiments/face.yaml` on
//! the ORL faces and on the seed set, `backbone` as a sweep parameter, prediction and live
//! recognition with a dlib head, and one feature cache holding both backbones' features apart.

mod common;

use std::path::Path;

use common::{copy_dir, facelab, orl_workspace, repo_root, shared, stdout_of, train_and_show};
use serde_json::Value;

/// A workspace with the notebook's seed set as its facedata/ (train/ and test/).
fn seed_workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    copy_dir(&shared().join("facedata/seed"), &ws.path().join("facedata"));
    ws
}

fn face_yaml() -> std::path::PathBuf {
    repo_root().join("experiments/face.yaml")
}

/// The run's head.json, as saved in its model folder.
fn head_json(ws: &Path, run: &str) -> Value {
    let text = std::fs::read_to_string(ws.join("models").join(run).join("head.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn face_yaml_names_orl_faces_at_least_0_99_and_every_seed_face() {
    for (set, ws, bar) in [
        ("ORL 5/5", orl_workspace(), 0.99),
        ("seed", seed_workspace(), 1.0),
    ] {
        let run = train_and_show(ws.path(), &face_yaml(), &[]);
        let accuracy = run["test_accuracy"].as_f64().unwrap();
        eprintln!("{set}: face.yaml test accuracy {accuracy}");
        assert!(accuracy >= bar, "{set}: {accuracy}");
        let id = run["id"].as_str().unwrap();
        assert!(run["config_yaml"]
            .as_str()
            .unwrap()
            .contains("backbone: dlib_resnet"));
        let head = head_json(ws.path(), id);
        assert_eq!(head["backbone"], "dlib_resnet");
        assert_eq!(head["weights_sha256"], run["weights_hash"]);
    }
}

#[test]
fn a_dlib_head_predicts_files_and_names_faces_in_a_stream() {
    let ws = seed_workspace();
    let run = train_and_show(ws.path(), &face_yaml(), &[]);
    let id = run["id"].as_str().unwrap();
    for person in ["s01", "s02", "s03", "s04"] {
        let folder = ws.path().join("facedata/test").join(person);
        let predicted = stdout_of(
            facelab(ws.path())
                .arg("predict")
                .arg(id)
                .arg(&folder)
                .arg("--json"),
        );
        let lines: Vec<Value> = predicted
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{predicted}");
        assert!(
            lines.iter().all(|p| p["predicted"] == person),
            "{predicted}"
        );

        if person == "s04" {
            continue; // its test images are capture crops (the face is the frame), not frames
        }
        let source = format!("dir:{}", folder.display());
        let frames =
            stdout_of(facelab(ws.path()).args(["recognize", id, "--json", "--source", &source]));
        let frames: Vec<Value> = frames
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(frames.len(), 3);
        for frame in &frames {
            let faces = frame["faces"].as_array().unwrap();
            assert_eq!(faces.len(), 1, "{frame}");
            assert_eq!(faces[0]["predicted"], person, "{frame}");
        }
    }
}

#[test]
fn backbone_is_a_sweep_parameter_and_each_trial_uses_its_own() {
    let ws = seed_workspace();
    let sweep = ws.path().join("backbones.yaml");
    std::fs::write(
        &sweep,
        format!(
            "name: b\nexperiment: {}\nmethod: grid\nmetric: {{name: cv_accuracy, goal: maximize}}\nparameters:\n  backbone: {{values: [mobilenet_v2, dlib_resnet]}}\n",
            face_yaml().display()
        ),
    )
    .unwrap();
    stdout_of(facelab(ws.path()).arg("sweep").arg(&sweep));
    let sweeps: Value =
        serde_json::from_str(&stdout_of(facelab(ws.path()).args(["sweeps", "--json"]))).unwrap();
    let id = sweeps[0]["id"].as_str().unwrap();
    let shown: Value = serde_json::from_str(&stdout_of(
        facelab(ws.path()).args(["sweep", "show", id, "--json"]),
    ))
    .unwrap();
    let trials = shown["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2);
    let mut weights = Vec::new();
    for trial in trials {
        assert_eq!(trial["status"], "finished", "{trial}");
        assert_eq!(trial["test_accuracy"], 1.0, "{trial}");
        let run = trial["run_id"].as_str().unwrap();
        let head = head_json(ws.path(), run);
        let backbone = trial["params"]["backbone"].as_str().unwrap();
        assert_eq!(
            head["backbone"].as_str().unwrap_or("mobilenet_v2"),
            backbone
        );
        weights.push(head["weights_sha256"].as_str().unwrap().to_owned());
    }
    assert_ne!(
        weights[0], weights[1],
        "each trial records its own backbone"
    );
}

#[test]
fn one_cache_keeps_both_backbones_features_apart() {
    let ws = seed_workspace();
    let features = |backbone: &str| {
        stdout_of(facelab(ws.path()).args(["features", "facedata/test", "--backbone", backbone]))
    };
    assert!(features("dlib_resnet").contains("12 computed, 0 cached"));
    assert!(features("mobilenet_v2").contains("12 computed, 0 cached"));
    assert!(features("dlib_resnet").contains("0 computed, 12 cached"));
    let embedded = stdout_of(facelab(ws.path()).args([
        "embed",
        "--backbone",
        "dlib_resnet",
        "facedata/test/s01/13.jpg",
    ]));
    let line: Value = serde_json::from_str(embedded.trim()).unwrap();
    assert_eq!(line["features"].as_array().unwrap().len(), 128);
    assert_eq!(line["face"], "detected");
    facelab(ws.path())
        .args([
            "embed",
            "--backbone",
            "dlib_resnet",
            "--top5",
            "facedata/test/s01/13.jpg",
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains("--top5"));
}

#[test]
fn a_large_photo_is_searched_small_and_described_as_the_original() {
    let ws = seed_workspace();
    let original = ws.path().join("facedata/test/s01/13.jpg");
    let photo = image::open(&original).unwrap().to_rgb8();
    let large = image::imageops::resize(&photo, 2560, 1920, image::imageops::FilterType::Triangle);
    let large_path = ws.path().join("large.png");
    large.save(&large_path).unwrap();
    let out = stdout_of(
        facelab(ws.path())
            .args(["embed", "--backbone", "dlib_resnet"])
            .arg(&original)
            .arg(&large_path),
    );
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|l| l["face"] == "detected"), "{out}");
    let floats = |l: &Value| -> Vec<f32> {
        let values = l["features"].as_array().unwrap();
        values.iter().map(|v| v.as_f64().unwrap() as f32).collect()
    };
    let similarity = common::cosine(&floats(&lines[0]), &floats(&lines[1]));
    assert!(similarity >= 0.99, "cosine {similarity}");
    let centre = |l: &Value| (l["box"][0].as_f64().unwrap() + l["box"][2].as_f64().unwrap()) / 2.0;
    let ratio = centre(&lines[1]) / centre(&lines[0]);
    assert!(
        (3.7..4.3).contains(&ratio),
        "the box is in the large photo's pixels: {ratio}"
    );
}
