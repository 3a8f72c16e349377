//! Values that parse but make no sense (a negative learning rate, a batch of 0, a hidden layer
//! of 0 units), found after parsing and reported against the key that holds them.

use super::schema::{ExperimentConfig, HeadConfig, OptimizerConfig, Validation, ValidationConfig};

/// The first value that parses but makes no sense, as (key path, message).
pub(super) fn first_invalid(c: &ExperimentConfig) -> Option<(String, String)> {
    let fail = |key: &str, message: String| Some((key.to_owned(), message));
    let d = &c.data;
    if d.split.is_some() && (d.train.is_some() || d.test.is_some()) {
        return fail(
            "data.split",
            "give either data.split or data.train/data.test, not both".into(),
        );
    }
    if d.split.is_none() && d.train.is_some() != d.test.is_some() {
        let missing = if d.train.is_none() {
            "data.train"
        } else {
            "data.test"
        };
        return fail(
            missing,
            "data.train and data.test go together; add the missing one or use data.split".into(),
        );
    }
    if let Some(split) = &d.split {
        if !(split.test_fraction > 0.0 && split.test_fraction < 1.0) {
            return fail(
                "data.split.test_fraction",
                format!("{} is not between 0 and 1 (exclusive)", split.test_fraction),
            );
        }
    }
    if let Some(v) = &d.validation {
        if let Some(problem) = validation_problem(v) {
            return Some(problem);
        }
    }
    if let Some(i) = c.head.hidden.iter().position(|&h| h == 0) {
        return fail(
            &format!("head.hidden[{i}]"),
            "0 units: every hidden layer needs at least 1".into(),
        );
    }
    if !(0.0..1.0).contains(&c.head.dropout) {
        return fail(
            "head.dropout",
            format!("{} is not in [0, 1)", c.head.dropout),
        );
    }
    if let Some(problem) = head_problem(&c.head) {
        return Some(problem);
    }
    if let Some(o) = &c.open_set {
        if !(o.far > 0.0 && o.far < 1.0) {
            return fail(
                "open_set.far",
                format!(
                    "{} is not a rate between 0 and 1 (exclusive); 0.05 accepts 5% of strangers",
                    o.far
                ),
            );
        }
    }
    if let Some(name) = &d.strangers {
        let plain = !name.is_empty()
            && std::path::Path::new(name)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return fail(
                "data.strangers",
                format!("'{name}' is not a folder inside data.dir; give a name such as strangers"),
            );
        }
    }
    let t = &c.train;
    let lr = t.optimizer.lr();
    if !(lr.is_finite() && lr > 0.0) {
        return fail(
            "train.optimizer.lr",
            format!("{lr} is not a positive learning rate"),
        );
    }
    // Training runs in f32: a rate that f32 rounds to 0 or infinity is no rate at all.
    if !((lr as f32).is_finite() && lr as f32 > 0.0) {
        return fail(
            "train.optimizer.lr",
            format!("{lr:e} is outside what training's 32-bit floats hold (about 1e-38 to 3e38)"),
        );
    }
    if let Some(problem) = optimizer_problem(&t.optimizer) {
        return Some(problem);
    }
    if t.epochs == 0 {
        return fail("train.epochs", "0: train for at least 1 epoch".into());
    }
    if t.batch_size == 0 {
        return fail(
            "train.batch_size",
            "0: a batch needs at least 1 example".into(),
        );
    }
    if t.steps_per_epoch == Some(0) {
        return fail(
            "train.steps_per_epoch",
            "0: leave it out for one pass per epoch".into(),
        );
    }
    let a = &c.augment;
    for (key, value) in [
        ("augment.rotation", a.rotation),
        ("augment.width_shift", a.width_shift),
        ("augment.height_shift", a.height_shift),
        ("augment.zoom", a.zoom),
        ("augment.shear", a.shear),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            return fail(
                key,
                format!(
                    "{value} {}; ranges are given as their half-width",
                    not_a_size(value)
                ),
            );
        }
    }
    if a.zoom >= 1.0 {
        return fail(
            "augment.zoom",
            format!(
                "{} would allow zooming to 0 or below; use less than 1",
                a.zoom
            ),
        );
    }
    let [low, high] = a.brightness;
    if !(low > 0.0 && low <= high) {
        return fail(
            "augment.brightness",
            format!("[{low}, {high}] is not a range of positive factors, low first"),
        );
    }
    if let Some(es) = &c.early_stopping {
        if !(es.min_delta.is_finite() && es.min_delta >= 0.0) {
            return fail(
                "early_stopping.min_delta",
                format!("{} {}", es.min_delta, not_a_size(es.min_delta)),
            );
        }
    }
    None
}

/// The cosine and centroid keys' ranges.
fn head_problem(h: &HeadConfig) -> Option<(String, String)> {
    let fail = |key: &str, message: String| Some((key.to_owned(), message));
    if let Some(scale) = h.scale {
        if !(scale.is_finite() && scale > 0.0 && scale <= 1000.0) {
            return fail(
                "head.scale",
                format!("{scale} is not a positive scale up to 1000 (30 is usual)"),
            );
        }
    }
    if let Some(margin) = h.margin {
        if !(0.0..1.0).contains(&margin) {
            return fail(
                "head.margin",
                format!("{margin} is not a cosine margin in [0, 1) (0.35 is usual)"),
            );
        }
    }
    if let Some(shrinkage) = h.shrinkage {
        if !(shrinkage > 0.0 && shrinkage <= 1.0) {
            return fail(
                "head.shrinkage",
                format!(
                    "{shrinkage} is not in (0, 1]: some shrinkage keeps the covariance invertible (0.1 to 0.3 is usual)"
                ),
            );
        }
    }
    if h.embedding.is_some_and(|e| e > 65536) {
        return fail(
            "head.embedding",
            "more than 65536 units; 256 is usual, 0 uses the features as they are".into(),
        );
    }
    None
}

fn optimizer_problem(o: &OptimizerConfig) -> Option<(String, String)> {
    let bad_fraction = |key: &str, v: f64| {
        (!(0.0..1.0).contains(&v)).then(|| {
            (
                format!("train.optimizer.{key}"),
                format!("{v} is not in [0, 1)"),
            )
        })
    };
    let bad_epsilon = |v: f64| {
        (v.is_nan() || v <= 0.0).then(|| {
            (
                "train.optimizer.epsilon".to_owned(),
                format!("{v} is not positive"),
            )
        })
    };
    match *o {
        OptimizerConfig::Rmsprop { rho, epsilon, .. } => {
            bad_fraction("rho", rho).or(bad_epsilon(epsilon))
        }
        OptimizerConfig::Adam {
            beta1,
            beta2,
            epsilon,
            ..
        } => bad_fraction("beta1", beta1)
            .or(bad_fraction("beta2", beta2))
            .or(bad_epsilon(epsilon)),
        OptimizerConfig::Sgd { momentum, .. } => bad_fraction("momentum", momentum),
    }
}

/// Why a value that must be a finite, non-negative number is not.
fn not_a_size(value: f64) -> &'static str {
    if value.is_nan() {
        "is not a number"
    } else if value.is_infinite() {
        "is not finite"
    } else {
        "is negative"
    }
}

fn validation_problem(v: &ValidationConfig) -> Option<(String, String)> {
    match (v.kind(), v.folds, v.fraction) {
        (None, None, None) => Some((
            "data.validation".into(),
            "give folds (e.g. {folds: 5}) or fraction (e.g. {fraction: 0.2})".into(),
        )),
        (None, _, _) => Some((
            "data.validation".into(),
            "give either folds or fraction, not both".into(),
        )),
        (Some(Validation::Folds(k)), _, _) if k < 2 => Some((
            "data.validation.folds".into(),
            format!("{k}: cross-validation needs at least 2 folds"),
        )),
        (Some(Validation::Fraction(f)), _, _) if !(f > 0.0 && f < 1.0) => Some((
            "data.validation.fraction".into(),
            format!("{f} is not between 0 and 1 (exclusive)"),
        )),
        _ => None,
    }
}
