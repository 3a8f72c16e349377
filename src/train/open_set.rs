//! Saying "unknown" to strangers: an acceptance threshold calibrated for a false-acceptance
//! rate on people the head never saw, and the open-set figures a run reports.
//!
//! Calibration is leave-people-out on the training images only (the test set and the
//! strangers folder are never used to choose it): the people are dealt into groups (seeded);
//! for each group a head of the run's config trains on everyone else's images for the run's
//! epoch count, and the group's original images (no augmented copies) are scored by it as
//! strangers. The threshold is the lowest score that accepts at most `far` of those pooled
//! stranger scores, as InsightFace-style FAR calibration does.
//!
//! Figures, in the terms of ISO/IEC 19795-1 open-set identification:
//! - DIR (detection and identification rate) at a threshold: the share of known people's test
//!   faces that are named correctly *and* accepted;
//! - FPIR (false-positive identification rate): the share of strangers' faces accepted.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::head::HeadRunner;
use super::{fit, LabeledFeatures, TrainObserver};
use crate::config::ExperimentConfig;
use crate::error::{Error, Result};

/// At most this many groups of people are held out in turn.
const MAX_GROUPS: usize = 5;

/// The lowest threshold (accept when `score >= threshold`) under which at most `far` of
/// `strangers` are accepted: halfway between the last rejected and the first accepted score,
/// so a score a hair off either does not change the decision.
pub fn threshold_for(strangers: &[f32], far: f64) -> f64 {
    let mut sorted: Vec<f64> = strangers.iter().map(|&s| f64::from(s)).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let Some(&highest) = sorted.first() else {
        return 0.0;
    };
    let allowed = (far * sorted.len() as f64 + 1e-9).floor() as usize;
    if allowed == 0 {
        return highest + (highest.abs() * 1e-6).max(1e-9);
    }
    if allowed >= sorted.len() {
        return f64::NEG_INFINITY;
    }
    // Ties at the boundary must all be rejected, or more than `allowed` pass.
    let rejected = sorted[allowed];
    let accepted = sorted[..allowed]
        .iter()
        .rev()
        .find(|&&s| s > rejected)
        .copied();
    match accepted {
        Some(a) => (a + rejected) / 2.0,
        None => rejected + (rejected.abs() * 1e-6).max(1e-9),
    }
}

/// The share of `scores` at or above `threshold` (FPIR when they are strangers' scores).
pub fn accepted_share(scores: &[f32], threshold: f64) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    let accepted = scores
        .iter()
        .filter(|&&s| f64::from(s) >= threshold)
        .count();
    accepted as f64 / scores.len() as f64
}

/// DIR: the share of known faces named correctly and accepted at `threshold`.
pub fn detection_rate(scores: &[f32], correct: &[bool], threshold: f64) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    let hits = scores
        .iter()
        .zip(correct)
        .filter(|(&s, &ok)| ok && f64::from(s) >= threshold)
        .count();
    hits as f64 / scores.len() as f64
}

/// A run's open-set record: its threshold and every score it was judged by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSetReport {
    /// What the scores are: "probability" (softmax heads) or "cosine".
    pub score: String,
    pub far: f64,
    pub threshold: f64,
    /// Scores of held-out training people, from calibration.
    pub calibration_scores: Vec<f32>,
    /// Scores of the known people's test faces, and whether each was named correctly.
    pub known_scores: Vec<f32>,
    pub known_correct: Vec<bool>,
    /// Scores of the strangers folder's faces.
    pub stranger_scores: Vec<f32>,
}

/// The figures of an [`OpenSetReport`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OpenSetFigures {
    /// DIR at the calibrated threshold, on the test set.
    pub dir: Option<f64>,
    /// FPIR at the calibrated threshold, on the strangers folder.
    pub fpir: Option<f64>,
    /// DIR at the threshold that accepts `far` of the strangers folder: the standard
    /// DIR@FPIR, which compares heads whatever their calibration.
    pub dir_at_far: Option<f64>,
}

impl OpenSetReport {
    pub fn figures(&self) -> OpenSetFigures {
        let has_known = !self.known_scores.is_empty();
        let has_strangers = !self.stranger_scores.is_empty();
        OpenSetFigures {
            dir: has_known
                .then(|| detection_rate(&self.known_scores, &self.known_correct, self.threshold)),
            fpir: has_strangers.then(|| accepted_share(&self.stranger_scores, self.threshold)),
            dir_at_far: (has_known && has_strangers).then(|| {
                let t = threshold_for(&self.stranger_scores, self.far);
                detection_rate(&self.known_scores, &self.known_correct, t)
            }),
        }
    }
}

/// Counts of `scores` in `bins` equal bins over `[low, high]` (outside values go to the end
/// bins): the histogram `show` and the run screen draw.
pub fn histogram(scores: &[f32], bins: usize, low: f64, high: f64) -> Vec<usize> {
    let mut counts = vec![0; bins.max(1)];
    let width = (high - low).max(f64::MIN_POSITIVE);
    for &s in scores {
        let at = ((f64::from(s) - low) / width * counts.len() as f64).floor();
        let bin = (at.max(0.0) as usize).min(counts.len() - 1);
        counts[bin] += 1;
    }
    counts
}

/// The calibrated threshold and the held-out people's scores it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub threshold: f64,
    pub stranger_scores: Vec<f32>,
}

/// Leave-people-out calibration (see the module doc): `train` are the (normalised) training
/// rows, `is_copy` marks augmented copies, `config` is the run's config with its final epoch
/// count and no callbacks. The groups' heads train at once, on all cores.
pub fn calibrate(
    config: &ExperimentConfig,
    classes: usize,
    train: &LabeledFeatures,
    is_copy: &[bool],
    far: f64,
) -> Result<Calibration> {
    if classes < 3 {
        return Err(Error::InvalidArgument(format!(
            "open_set: calibrating a threshold holds some people out as strangers, which needs at least 3 people ({classes} here); turn it off with open_set: {{enabled: false}}"
        )));
    }
    let groups = people_groups(classes, config.train.seed);
    let per_group: Vec<Result<Vec<f32>>> = groups
        .par_iter()
        .map(|group| held_out_scores(config, classes, train, is_copy, group))
        .collect();
    let mut stranger_scores = Vec::new();
    for scores in per_group {
        stranger_scores.extend(scores?);
    }
    Ok(Calibration {
        threshold: threshold_for(&stranger_scores, far),
        stranger_scores,
    })
}

/// The classes dealt into at most [`MAX_GROUPS`] groups, each leaving at least two known.
fn people_groups(classes: usize, seed: u64) -> Vec<Vec<usize>> {
    let count = MAX_GROUPS.min(classes);
    let mut order: Vec<usize> = (0..classes).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut groups = vec![Vec::new(); count];
    for (i, class) in order.into_iter().enumerate() {
        groups[i % count].push(class);
    }
    groups
}

/// Scores of `group`'s original images under a head trained on everyone else.
fn held_out_scores(
    config: &ExperimentConfig,
    classes: usize,
    train: &LabeledFeatures,
    is_copy: &[bool],
    group: &[usize],
) -> Result<Vec<f32>> {
    let known: Vec<usize> = (0..classes).filter(|c| !group.contains(c)).collect();
    let mut new_index = vec![usize::MAX; classes];
    for (i, &class) in known.iter().enumerate() {
        new_index[class] = i;
    }
    let mut known_rows = LabeledFeatures::new(train.dim);
    let mut stranger_rows = Vec::new();
    for (row, &class) in train.y.iter().enumerate() {
        let features = &train.x[row * train.dim..(row + 1) * train.dim];
        if new_index[class] != usize::MAX {
            known_rows.push(features, new_index[class]);
        } else if !is_copy[row] {
            stranger_rows.extend_from_slice(features);
        }
    }
    let outcome = fit(config, known.len(), &known_rows, None, &mut Quiet)?;
    Ok(HeadRunner::new(0, 0.0).acceptance(&outcome.params, &stranger_rows))
}

/// Hears nothing: calibration's heads are not the run's.
struct Quiet;

impl TrainObserver for Quiet {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_accepts_at_most_the_target_share() {
        let strangers: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let t = threshold_for(&strangers, 0.05);
        assert_eq!(accepted_share(&strangers, t), 0.05);
        assert!(t > 0.94 && t < 0.95, "{t}");
        let t = threshold_for(&strangers, 0.001);
        assert_eq!(accepted_share(&strangers, t), 0.0);
    }

    #[test]
    fn tied_scores_at_the_boundary_are_all_rejected() {
        let strangers = [0.9, 0.5, 0.5, 0.5, 0.1];
        let t = threshold_for(&strangers, 0.5);
        assert_eq!(accepted_share(&strangers, t), 0.2);
    }

    #[test]
    fn dir_counts_only_correct_and_accepted_faces() {
        let scores = [0.9, 0.8, 0.3, 0.95];
        let correct = [true, false, true, true];
        assert_eq!(detection_rate(&scores, &correct, 0.5), 0.5);
    }

    #[test]
    fn figures_follow_the_report() {
        let report = OpenSetReport {
            score: "cosine".into(),
            far: 0.25,
            threshold: 0.5,
            calibration_scores: vec![0.1, 0.6],
            known_scores: vec![0.9, 0.7, 0.4, 0.8],
            known_correct: vec![true, true, true, false],
            stranger_scores: vec![0.2, 0.55, 0.3, 0.75],
        };
        let f = report.figures();
        assert_eq!(f.dir, Some(0.5));
        assert_eq!(f.fpir, Some(0.5));
        // Threshold on strangers for 25%: between 0.55 and 0.75, so 0.9 and 0.7 are hits
        // (0.8 is accepted but named wrongly).
        assert_eq!(f.dir_at_far, Some(0.5));
    }

    #[test]
    fn a_histogram_puts_every_score_in_a_bin() {
        let counts = histogram(&[0.0, 0.1, 0.5, 0.99, 1.0, 1.5, -1.0], 4, 0.0, 1.0);
        assert_eq!(counts, [3, 0, 1, 3]);
    }

    #[test]
    fn groups_cover_every_person_once() {
        let groups = people_groups(12, 3);
        assert_eq!(groups.len(), 5);
        let mut all: Vec<usize> = groups.concat();
        all.sort_unstable();
        assert_eq!(all, (0..12).collect::<Vec<_>>());
        assert_eq!(people_groups(3, 1).len(), 3);
    }
}
