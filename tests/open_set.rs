//! Recognition quality on the ORL faces, through the binary: the cosine and centroid heads'
//! closed-set accuracy, and the open set with ten ORL people held out as strangers (their
//! threshold is calibrated on training people only; the strangers only measure it).

mod common;

use std::path::Path;

use common::{
    facelab, orl_workspace, orl_workspace_with_strangers, repo_root, stdout_of, train_and_show,
};
use serde_json::Value;

fn write_experiment(ws: &Path, name: &str, head: &str, train: &str) -> std::path::PathBuf {
    let path = ws.join(format!("{name}.yaml"));
    let text = format!(
        "data: {{dir: facedata, train: train, test: test}}\nhead: {head}\ntrain: {train}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn centroid(ws: &Path) -> std::path::PathBuf {
    write_experiment(
        ws,
        "centroid",
        "{type: centroid, l2_normalize: true}",
        "{seed: 42}",
    )
}

fn cosine(ws: &Path) -> std::path::PathBuf {
    write_experiment(
        ws,
        "cosine",
        "{type: cosine, l2_normalize: true}",
        "{optimizer: {name: adam, lr: 0.003}, epochs: 300, batch_size: 1000}",
    )
}

#[test]
fn cosine_and_centroid_heads_name_orl_faces_at_least_0_99() {
    let ws = orl_workspace();
    for experiment in [centroid(ws.path()), cosine(ws.path())] {
        let run = train_and_show(ws.path(), &experiment, &[]);
        let accuracy = run["test_accuracy"].as_f64().unwrap();
        eprintln!("{}: ORL 5/5 test accuracy {accuracy}", experiment.display());
        assert!(accuracy >= 0.99, "{}: {accuracy}", experiment.display());
        assert!(run["open_set"]["threshold"].is_number(), "on by default");
    }
}

#[test]
fn with_ten_orl_strangers_cosine_and_centroid_beat_dense_and_strangers_are_unknown() {
    let ws = orl_workspace_with_strangers(10);
    let recommended = repo_root().join("experiments/recommended.yaml");
    // The dense head as recommended before head types: linear, two augmented copies.
    let dense = train_and_show(
        ws.path(),
        &recommended,
        &["head.type=dense", "augment.copies=2"],
    );
    let centroid = train_and_show(ws.path(), &centroid(ws.path()), &[]);
    let cosine = train_and_show(ws.path(), &cosine(ws.path()), &[]);

    let figure = |run: &Value, name: &str| run["open_set"]["figures"][name].as_f64().unwrap();
    for (name, run) in [
        ("dense", &dense),
        ("centroid", &centroid),
        ("cosine", &cosine),
    ] {
        eprintln!(
            "{name}: closed-set {:.3}  DIR@FPIR5% {:.3}  at its threshold DIR {:.3} FPIR {:.3}",
            run["test_accuracy"].as_f64().unwrap(),
            figure(run, "dir_at_far"),
            figure(run, "dir"),
            figure(run, "fpir"),
        );
        let open_set = &run["open_set"];
        assert_eq!(open_set["known_scores"].as_array().unwrap().len(), 150);
        assert_eq!(open_set["stranger_scores"].as_array().unwrap().len(), 100);
        assert_eq!(open_set["far"].as_f64(), Some(0.05));
    }
    for (name, run) in [("centroid", &centroid), ("cosine", &cosine)] {
        assert!(
            figure(run, "dir_at_far") > figure(&dense, "dir_at_far"),
            "{name} does not beat dense at DIR@FPIR 5%"
        );
        let fpir = figure(run, "fpir");
        assert!(
            (fpir - 0.05).abs() <= 0.05,
            "{name}: FPIR {fpir} at the calibrated threshold"
        );
    }

    let id = centroid["id"].as_str().unwrap();
    let threshold = centroid["open_set"]["threshold"].as_f64().unwrap();
    let predict = |extra: &[&str], folders: &[String]| -> Vec<Value> {
        let mut cmd = facelab(ws.path());
        cmd.args(["predict", id, "--json"])
            .args(folders)
            .args(extra);
        stdout_of(&mut cmd)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let stranger_folders: Vec<String> = (31..=40)
        .map(|n| format!("facedata/strangers/s{n}"))
        .collect();
    let known_folders = ["facedata/test/s1".to_owned()];
    let strangers = predict(&[], &stranger_folders);
    assert_eq!(strangers.len(), 100);
    let unknown: Vec<&Value> = strangers.iter().filter(|p| p["unknown"] == true).collect();
    assert!(
        unknown.len() >= 90,
        "{} of 100 strangers unknown",
        unknown.len()
    );
    for p in &unknown {
        assert!(p["predicted"].is_null() && p["label"].is_null(), "{p}");
        assert!(p["score"].as_f64().unwrap() < threshold, "{p}");
        assert_eq!(p["threshold"].as_f64(), Some(threshold));
    }
    let known = predict(&[], &known_folders);
    assert!(known.iter().all(|p| p["predicted"] == "s1"), "{known:?}");

    let lenient = predict(&["--threshold", "-1"], &stranger_folders);
    assert!(lenient
        .iter()
        .all(|p| p["unknown"] == false && p["predicted"].is_string()));
    let strict = predict(&["--threshold", "1.5"], &known_folders);
    assert!(strict.iter().all(|p| p["unknown"] == true));
}
