//! What a run trains on: the dataset's features (augmented copies included), read once and
//! then cut into the sets an experiment asks for: train and test, plus held-out validation
//! images or cross-validation folds. A sweep prepares the features once and cuts them for every
//! trial; copies of an image always stay on the training side of its own image's split.

use std::path::PathBuf;

use crate::backbone::{Backbone, Backbones};
use crate::config::{Experiment, ExperimentConfig, Validation};
use crate::dataset::{self, ExperimentData, LabeledImage};
use crate::error::Result;
use crate::features::{self, AugmentCopy, FeatureCache, FeatureRequest};
use crate::progress::Progress;
use crate::train::cv::Fold;
use crate::train::{memory, LabeledFeatures};
use crate::workspace::Workspace;

/// An experiment's dataset as features, before any split for validation.
#[derive(Debug, Clone)]
pub struct PreparedData {
    pub data: ExperimentData,
    /// Every readable training image and its augmented copies, not yet L2-normalised.
    pub train: LabeledFeatures,
    /// For each row of `train`: the index in `data.train` of the image it comes from.
    pub train_source: Vec<usize>,
    /// For each row of `train`: whether it is an augmented copy.
    pub train_is_copy: Vec<bool>,
    pub test: LabeledFeatures,
    /// The strangers' images (`y` indexes `data.stranger_names`).
    pub strangers: LabeledFeatures,
    /// The identity of the backbone that made the features (see [`Backbone::weights_sha256`]).
    pub weights_sha256: String,
    /// Hash of the class names and the plain images' contents and roles.
    pub dataset_hash: String,
    /// Images that could not be read, with the reason; runs go on without them.
    pub skipped: Vec<(PathBuf, String)>,
    /// Seconds spent listing the dataset, and reading or computing features.
    pub dataset_seconds: f64,
    pub features_seconds: f64,
}

/// Lists the dataset, checks the memory estimate and reads (or computes and caches) the features
/// with the experiment's backbone.
pub fn prepare(
    ws: &Workspace,
    experiment: &Experiment,
    backbones: &Backbones,
    memory_limit: u64,
    progress: &dyn Progress,
) -> Result<PreparedData> {
    let started = std::time::Instant::now();
    let data = ExperimentData::load(ws.root(), experiment)?;
    let judged = data.test.len() + data.strangers.len();
    memory::check(experiment, data.train.len(), judged, memory_limit)?;
    let dataset_seconds = started.elapsed().as_secs_f64();
    let backbone = backbones.get(experiment.config.backbone, progress)?;
    let cache = FeatureCache::new(ws.feature_cache_dir());
    let mut prepared = features_for(experiment, data, &backbone, &cache, progress)?;
    prepared.dataset_seconds = dataset_seconds;
    prepared.features_seconds = started.elapsed().as_secs_f64() - dataset_seconds;
    if prepared.train.is_empty() {
        return Err(experiment.error("data.dir", "no readable training images".into()));
    }
    Ok(prepared)
}

/// The sets one run trains and judges on, cut from prepared features for its experiment.
pub enum TrainingSets {
    /// No held-out validation: per-epoch validation figures come from the test set, as in
    /// the Keras notebook (`validation_data` = the test images).
    Plain {
        train: LabeledFeatures,
        test: LabeledFeatures,
    },
    /// `data.validation.fraction`: validation images held out of training.
    HeldOut {
        train: LabeledFeatures,
        val: LabeledFeatures,
        test: LabeledFeatures,
    },
    /// `data.validation.folds`: folds over `train`, then a final head on all of it.
    Folds {
        train: LabeledFeatures,
        folds: Vec<Fold>,
        test: LabeledFeatures,
    },
}

impl TrainingSets {
    pub fn test(&self) -> &LabeledFeatures {
        match self {
            TrainingSets::Plain { test, .. }
            | TrainingSets::HeldOut { test, .. }
            | TrainingSets::Folds { test, .. } => test,
        }
    }
}

/// `set` as the head takes it: L2-normalised when the head asks.
pub fn as_head_sees(config: &ExperimentConfig, set: &LabeledFeatures) -> LabeledFeatures {
    let mut set = set.clone();
    if config.head.l2_normalize {
        set.l2_normalize();
    }
    set
}

/// Cuts `prepared` into the sets `experiment` asks for, normalising rows when its head does.
pub fn training_sets(experiment: &Experiment, prepared: &PreparedData) -> Result<TrainingSets> {
    let config = &experiment.config;
    let train = as_head_sees(config, &prepared.train);
    let test = as_head_sees(config, &prepared.test);
    let Some(validation) = config.data.validation.as_ref().and_then(|v| v.kind()) else {
        return Ok(TrainingSets::Plain { train, test });
    };
    let seed = config.data.validation.as_ref().map_or(0, |v| v.seed);
    let sets = dataset::validation_sets(&prepared.data.train, validation, seed);
    let mut fold_of_image = vec![None; prepared.data.train.len()];
    for (fold, images) in sets.iter().enumerate() {
        for &image in images {
            fold_of_image[image] = Some(fold);
        }
    }
    let row_fold = |row: usize| fold_of_image[prepared.train_source[row]];
    let rows_where = |keep: &dyn Fn(usize) -> bool| -> Vec<usize> {
        (0..train.len()).filter(|&row| keep(row)).collect()
    };
    let empty_split = |key: &str, what: &str| {
        experiment.error(
            key,
            format!(
                "leaves a {what} without images; the dataset has {} training images",
                prepared.data.train.len()
            ),
        )
    };
    match validation {
        Validation::Fraction(_) => {
            let val_rows = rows_where(&|r| row_fold(r).is_some() && !prepared.train_is_copy[r]);
            let train_rows = rows_where(&|r| row_fold(r).is_none());
            if val_rows.is_empty() || train_rows.is_empty() {
                return Err(empty_split(
                    "data.validation.fraction",
                    "validation or training set",
                ));
            }
            Ok(TrainingSets::HeldOut {
                val: train.subset(&val_rows),
                train: train.subset(&train_rows),
                test,
            })
        }
        Validation::Folds(k) => {
            let folds: Vec<Fold> = (0..k)
                .map(|fold| Fold {
                    train_rows: rows_where(&|r| row_fold(r) != Some(fold)),
                    val: train.subset(&rows_where(&|r| {
                        row_fold(r) == Some(fold) && !prepared.train_is_copy[r]
                    })),
                })
                .collect();
            if folds
                .iter()
                .any(|f| f.val.is_empty() || f.train_rows.is_empty())
            {
                return Err(empty_split("data.validation.folds", "fold"));
            }
            Ok(TrainingSets::Folds { train, folds, test })
        }
    }
}

fn features_for(
    experiment: &Experiment,
    data: ExperimentData,
    backbone: &Backbone,
    cache: &FeatureCache,
    progress: &dyn Progress,
) -> Result<PreparedData> {
    let c = &experiment.config;
    let plain = |img: &LabeledImage| FeatureRequest::plain(&img.path);
    /// Where a requested row goes: the training image it comes from, the test set or the
    /// strangers; `Mirror` rows are averaged into the row just before them.
    #[derive(Clone, Copy)]
    enum Role {
        Train(usize),
        Test,
        Stranger,
        Mirror,
    }
    let mut requests: Vec<(FeatureRequest, usize, Role)> = Vec::new();
    for (index, img) in data.train.iter().enumerate() {
        requests.push((plain(img), img.class, Role::Train(index)));
        for copy in 0..c.augment.copies {
            let augment = Some(AugmentCopy {
                spec: &c.augment,
                seed: c.augment_seed(),
                copy,
            });
            requests.push((
                FeatureRequest {
                    augment,
                    ..plain(img)
                },
                img.class,
                Role::Train(index),
            ));
        }
    }
    for (images, role) in [(&data.test, Role::Test), (&data.strangers, Role::Stranger)] {
        for img in images {
            requests.push((plain(img), img.class, role));
            if c.predict.flip_average {
                requests.push((FeatureRequest::mirrored(&img.path), img.class, Role::Mirror));
            }
        }
    }
    let only_requests: Vec<FeatureRequest> = requests.iter().map(|(r, _, _)| r.clone()).collect();
    let extraction =
        features::extract_requests(backbone, cache, &only_requests, c.data.resize, progress)?;

    let mut hasher = blake3::Hasher::new();
    for name in &data.classes {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
    }
    let dim = backbone.feature_dim();
    let (mut train, mut test, mut strangers) = (
        LabeledFeatures::new(dim),
        LabeledFeatures::new(dim),
        LabeledFeatures::new(dim),
    );
    let mut last_judged: Option<Role> = None;
    let (mut train_source, mut train_is_copy) = (Vec::new(), Vec::new());
    for ((request, class, role), (features, content)) in requests
        .iter()
        .zip(extraction.features.iter().zip(&extraction.content))
    {
        let is_copy = request.augment.is_some() || request.mirror;
        if !is_copy {
            if let Some(content) = content {
                let role_byte = match role {
                    Role::Train(_) => 1,
                    Role::Stranger => 2,
                    Role::Test | Role::Mirror => 0,
                };
                hasher.update(&[role_byte]);
                hasher.update(&(*class as u64).to_le_bytes());
                hasher.update(content.as_bytes());
            }
        }
        let Some(f) = features else { continue };
        match role {
            Role::Train(index) => {
                train.push(f, *class);
                train_source.push(*index);
                train_is_copy.push(is_copy);
            }
            Role::Test => test.push(f, *class),
            Role::Stranger => strangers.push(f, *class),
            Role::Mirror => {
                let set = match last_judged {
                    Some(Role::Stranger) => &mut strangers,
                    _ => &mut test,
                };
                average_into_last_row(set, f);
            }
        }
        if matches!(role, Role::Test | Role::Stranger) {
            last_judged = Some(*role);
        }
    }
    Ok(PreparedData {
        data,
        train,
        train_source,
        train_is_copy,
        test,
        strangers,
        weights_sha256: backbone.weights_sha256().to_owned(),
        dataset_hash: hasher.finalize().to_hex().to_string(),
        skipped: extraction.skipped,
        dataset_seconds: 0.0,
        features_seconds: 0.0,
    })
}

/// Averages `features` (a mirror image's) into the last row of `set` (its image's).
fn average_into_last_row(set: &mut LabeledFeatures, features: &[f32]) {
    let start = set.x.len() - set.dim;
    for (v, m) in set.x[start..].iter_mut().zip(features) {
        *v = (*v + m) / 2.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two people with three images each, every image followed by one augmented copy; a row's
    /// first feature is its image's index and its second is 1 for a copy.
    fn prepared() -> PreparedData {
        let images: Vec<LabeledImage> = (0..6)
            .map(|i| LabeledImage {
                path: PathBuf::from(format!("p{}/{i}.png", i / 3)),
                class: i / 3,
            })
            .collect();
        let mut train = LabeledFeatures::new(2);
        let (mut train_source, mut train_is_copy) = (Vec::new(), Vec::new());
        for (index, image) in images.iter().enumerate() {
            for copy in [false, true] {
                train.push(&[index as f32, f32::from(u8::from(copy))], image.class);
                train_source.push(index);
                train_is_copy.push(copy);
            }
        }
        PreparedData {
            data: ExperimentData {
                classes: vec!["p0".into(), "p1".into()],
                labels: vec!["p0".into(), "p1".into()],
                train: images,
                test: Vec::new(),
                strangers: Vec::new(),
                stranger_names: Vec::new(),
            },
            train,
            train_source,
            train_is_copy,
            test: LabeledFeatures::new(2),
            strangers: LabeledFeatures::new(2),
            weights_sha256: String::new(),
            dataset_hash: String::new(),
            skipped: Vec::new(),
            dataset_seconds: 0.0,
            features_seconds: 0.0,
        }
    }

    fn experiment(validation: &str) -> Experiment {
        let text = format!("data: {{dir: d, validation: {validation}}}\n");
        Experiment::parse(std::path::Path::new("e.yaml"), &text).unwrap()
    }

    #[test]
    fn copies_train_only_on_folds_where_their_image_is_not_validating() {
        let prepared = prepared();
        let TrainingSets::Folds { train, folds, .. } =
            training_sets(&experiment("{folds: 3}"), &prepared).unwrap()
        else {
            panic!("not folds")
        };
        let mut validated = Vec::new();
        for fold in &folds {
            let val_images: Vec<usize> = fold.val.x.chunks(2).map(|r| r[0] as usize).collect();
            assert!(
                fold.val.x.chunks(2).all(|r| r[1] == 0.0),
                "no copies validate"
            );
            for &row in &fold.train_rows {
                let image = train.x[row * 2] as usize;
                assert!(
                    !val_images.contains(&image),
                    "image {image} trains and validates"
                );
            }
            assert_eq!(fold.train_rows.len() + 2 * val_images.len(), 12);
            validated.extend(val_images);
        }
        validated.sort_unstable();
        assert_eq!(validated, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn a_held_out_fraction_keeps_its_images_and_their_copies_out_of_training() {
        let prepared = prepared();
        let TrainingSets::HeldOut { train, val, .. } =
            training_sets(&experiment("{fraction: 0.3}"), &prepared).unwrap()
        else {
            panic!("not held out")
        };
        let val_images: Vec<f32> = val.x.chunks(2).map(|r| r[0]).collect();
        assert_eq!(val_images.len(), 2, "one of each person's three");
        assert!(train.x.chunks(2).all(|r| !val_images.contains(&r[0])));
        assert_eq!(train.len(), 8);
    }

    #[test]
    fn more_folds_than_images_is_an_error_naming_the_key() {
        let e = training_sets(&experiment("{folds: 7}"), &prepared())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("data.validation.folds") && e.contains("6 training images"),
            "{e}"
        );
    }
}
