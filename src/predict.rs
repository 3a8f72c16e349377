//! Naming faces with a trained run: features from the backbone (through the cache; averaged
//! with the mirror image's when the run was trained so), the run's head, softmax
//! probabilities, and "unknown" for a face whose acceptance score falls below the run's
//! calibrated threshold; and the notebook's picture of it, the predicted name drawn on the
//! image.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::backbone::Backbone;
use crate::error::{Error, Result};
use crate::features::{self, FeatureCache, FeatureRequest};
use crate::fsutil::write_atomically;
use crate::model::TrainedHead;
use crate::progress::Progress;
use crate::train::head::{acceptance_of, HeadRunner};
use crate::train::{l2_normalize_row, softmax};

/// One image's prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub path: PathBuf,
    /// The class folder name; `None` when the face is unknown.
    pub predicted: Option<String>,
    /// Its display name; `None` when the face is unknown.
    pub label: Option<String>,
    /// The best class's probability.
    pub confidence: f64,
    /// The acceptance score (the best probability, or cosine for cosine heads).
    pub score: f64,
    /// The threshold the score was held to, when the run has one (or one was given).
    pub threshold: Option<f64>,
    /// The score fell below the threshold: no known person.
    pub unknown: bool,
    /// Every class's display name and probability, most likely first.
    pub ranking: Vec<(String, f64)>,
}

impl Prediction {
    /// The display name, or "unknown".
    pub fn shown_label(&self) -> &str {
        self.label.as_deref().unwrap_or(UNKNOWN)
    }
}

/// What a face below the threshold is called.
pub const UNKNOWN: &str = "unknown";

/// Images that could not be read or decoded, with the reason.
pub type Skipped = Vec<(PathBuf, String)>;

/// Predictions for every readable image; unreadable ones come back in `skipped`. `threshold`
/// replaces the run's calibrated one.
pub fn predict(
    backbone: &Backbone,
    head: &TrainedHead,
    cache: &FeatureCache,
    paths: &[PathBuf],
    threshold: Option<f64>,
    progress: &dyn Progress,
) -> Result<(Vec<Prediction>, Skipped)> {
    head.check_backbone(backbone)?;
    let threshold = threshold.or(head.meta.open_set.map(|o| o.threshold));
    let (features, skipped) = features_of(backbone, cache, paths, head, progress)?;
    let runner = HeadRunner::new(0, 0.0);
    let mut predictions = Vec::new();
    for (path, features) in paths.iter().zip(features) {
        let Some(mut features) = features else {
            continue;
        };
        if head.meta.l2_normalize {
            l2_normalize_row(&mut features);
        }
        let logits = runner.logits(&head.params, &features);
        let score = f64::from(acceptance_of(head.params.output, &logits));
        predictions.push(rank(path, &softmax(&logits), score, threshold, head));
    }
    Ok((predictions, skipped))
}

/// Each image's features as the head was trained to take them: averaged with the mirror
/// image's when the run used `predict.flip_average`.
fn features_of(
    backbone: &Backbone,
    cache: &FeatureCache,
    paths: &[PathBuf],
    head: &TrainedHead,
    progress: &dyn Progress,
) -> Result<(Vec<Option<Vec<f32>>>, Skipped)> {
    if !head.meta.flip_average {
        let extraction = features::extract(backbone, cache, paths, head.meta.resize, progress)?;
        return Ok((extraction.features, extraction.skipped));
    }
    let requests: Vec<FeatureRequest> = paths
        .iter()
        .flat_map(|p| [FeatureRequest::plain(p), FeatureRequest::mirrored(p)])
        .collect();
    let extraction =
        features::extract_requests(backbone, cache, &requests, head.meta.resize, progress)?;
    let averaged = extraction
        .features
        .chunks_exact(2)
        .map(|pair| match pair {
            [Some(a), Some(b)] => Some(a.iter().zip(b).map(|(a, b)| (a + b) / 2.0).collect()),
            _ => None,
        })
        .collect();
    Ok((averaged, extraction.skipped))
}

fn rank(
    path: &Path,
    probabilities: &[f32],
    score: f64,
    threshold: Option<f64>,
    head: &TrainedHead,
) -> Prediction {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    let best = order[0];
    let unknown = threshold.is_some_and(|t| score < t);
    Prediction {
        path: path.to_owned(),
        predicted: (!unknown).then(|| head.meta.classes[best].clone()),
        label: (!unknown).then(|| head.meta.labels[best].clone()),
        confidence: probabilities[best] as f64,
        score,
        threshold,
        unknown,
        ranking: order
            .iter()
            .map(|&i| (head.meta.labels[i].clone(), probabilities[i] as f64))
            .collect(),
    }
}

/// Writes annotated images into one folder, each under a name of its own.
pub struct Annotator {
    out_dir: PathBuf,
    written: std::collections::HashSet<PathBuf>,
}

impl Annotator {
    pub fn new(out_dir: &Path) -> Self {
        Annotator {
            out_dir: out_dir.to_owned(),
            written: std::collections::HashSet::new(),
        }
    }

    /// Writes the image with its predicted name and confidence drawn in the top-left corner to
    /// `out_dir/<folder>_<stem>.png` (the folder keeps `alice/01.jpg` and `bob/01.jpg` apart); a
    /// second input with the same folder and file name (`a/x/01.jpg`, `b/x/01.jpg`) gets
    /// `_2`, `_3`, ... rather than overwriting the first. Returns the written path.
    pub fn annotate(&mut self, prediction: &Prediction) -> Result<PathBuf> {
        let name = |p: Option<&std::ffi::OsStr>| p.map(|s| s.to_string_lossy().into_owned());
        let stem = name(prediction.path.file_stem()).unwrap_or_else(|| "image".into());
        let folder = name(prediction.path.parent().and_then(|p| p.file_name()));
        let base = match folder {
            Some(folder) => format!("{folder}_{stem}"),
            None => stem,
        };
        let out = (1..)
            .map(|n| match n {
                1 => self.out_dir.join(format!("{base}.png")),
                n => self.out_dir.join(format!("{base}_{n}.png")),
            })
            .find(|p| !self.written.contains(p))
            .expect("an unused name exists");
        annotate_to(prediction, &out)?;
        self.written.insert(out.clone());
        Ok(out)
    }
}

/// Writes `prediction`'s image with its name drawn on it to `out` (PNG).
fn annotate_to(prediction: &Prediction, out: &Path) -> Result<()> {
    let bytes = crate::fsutil::read_limited(&prediction.path, crate::fsutil::limits::IMAGE)?;
    let mut image = crate::image_prep::decode(&prediction.path, &bytes)?;
    let text = format!(
        "{} {:.0}%",
        prediction.shown_label(),
        prediction.confidence * 100.0
    );
    draw_label(&mut image, &text);
    save_png(&image, out)
}

/// Writes `image` as a PNG at `out` (folders made as needed), atomically.
pub fn save_png(image: &RgbImage, out: &Path) -> Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Image {
            path: out.to_owned(),
            reason: e.to_string(),
        })?;
    write_atomically(out, &png)
}

/// White 8x8-font text on a dark band, scaled with the image so it stays readable.
pub fn draw_label(image: &mut RgbImage, text: &str) {
    use font8x8::UnicodeFonts;
    let scale = (image.width() / 200).max(1);
    let glyph = 8 * scale;
    let pad = 2 * scale;
    let band_w = (text.chars().count() as u32 * glyph + 2 * pad).min(image.width());
    let band_h = (glyph + 2 * pad).min(image.height());
    for y in 0..band_h {
        for x in 0..band_w {
            let p = image.get_pixel_mut(x, y);
            *p = Rgb(p.0.map(|v| v / 4));
        }
    }
    for (i, ch) in text.chars().enumerate() {
        let Some(rows) = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
        else {
            continue;
        };
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..8u32 {
                if bits >> col & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = pad + i as u32 * glyph + col * scale + dx;
                        let y = pad + row as u32 * scale + dy;
                        if x < image.width() && y < image.height() {
                            image.put_pixel(x, y, Rgb([255, 255, 255]));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_darkens_its_band_and_draws_white_glyphs() {
        let mut image = RgbImage::from_pixel(100, 40, Rgb([200, 200, 200]));
        draw_label(&mut image, "Al");
        let white = image.pixels().filter(|p| p.0 == [255, 255, 255]).count();
        assert!(white > 10, "{white} white pixels");
        assert_eq!(image.get_pixel(0, 0).0, [50, 50, 50]);
        assert_eq!(image.get_pixel(99, 39).0, [200, 200, 200]);
    }

    #[test]
    fn two_inputs_with_the_same_folder_and_name_get_two_annotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let prediction = |path: PathBuf| Prediction {
            path,
            predicted: Some("s01".into()),
            label: Some("Eric".into()),
            confidence: 0.9,
            score: 0.9,
            threshold: None,
            unknown: false,
            ranking: Vec::new(),
        };
        let mut written = Vec::new();
        let mut annotator = Annotator::new(&dir.path().join("out"));
        for top in ["a", "b"] {
            let path = dir.path().join(top).join("x").join("01.png");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            RgbImage::new(40, 30).save(&path).unwrap();
            written.push(annotator.annotate(&prediction(path)).unwrap());
        }
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["x_01.png", "x_01_2.png"]);
        assert!(written.iter().all(|p| p.is_file()));
    }
}
