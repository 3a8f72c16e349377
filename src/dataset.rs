//! Finding the images of a dataset folder (`facedata/` holds one folder per person, optionally
//! under `train/` and `test/`). Files are listed in a stable, sorted order. Hidden files and
//! notes (`*.md`, `*.txt`, like the README datasets ship with) are passed over quietly; any
//! other file without an image extension is listed so the caller can report it.

use std::path::{Path, PathBuf};

use crate::config::Validation;
use crate::error::{Error, Result};

/// Extensions facelab reads as images (lower case).
pub const IMAGE_EXTENSIONS: [&str; 10] = [
    "jpg", "jpeg", "png", "pgm", "ppm", "bmp", "tif", "tiff", "webp", "gif",
];

/// The files under a folder, split into candidate images and everything else.
#[derive(Debug, Default, PartialEq)]
pub struct Listing {
    pub images: Vec<PathBuf>,
    pub others: Vec<PathBuf>,
}

/// Walks `dir` recursively. A missing folder is an error that names it.
pub fn list_images(dir: &Path) -> Result<Listing> {
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        ));
    }
    let mut listing = Listing::default();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_owned();
            Error::io(path, e.into())
        })?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !entry.file_type().is_file() || hidden || is_note(entry.path()) {
            continue;
        }
        let path = entry.into_path();
        if is_image_path(&path) {
            listing.images.push(path);
        } else {
            listing.others.push(path);
        }
    }
    Ok(listing)
}

/// Extensions of notes that live beside datasets and are not meant as images.
const NOTE_EXTENSIONS: [&str; 2] = ["md", "txt"];

fn is_note(path: &Path) -> bool {
    has_extension(path, &NOTE_EXTENSIONS)
}

pub fn is_image_path(path: &Path) -> bool {
    has_extension(path, &IMAGE_EXTENSIONS)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_images_sorted_and_separates_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("train/bob")).unwrap();
        std::fs::create_dir_all(root.join("train/alice")).unwrap();
        for f in [
            "train/bob/2.JPG",
            "train/bob/1.png",
            "train/alice/a.pgm",
            "README.txt",
            "train/.hidden.jpg",
            "train/bob/face.heic",
        ] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let listing = list_images(root).unwrap();
        let rel: Vec<_> = listing
            .images
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().to_owned())
            .collect();
        assert_eq!(
            rel,
            vec![
                PathBuf::from("train/alice/a.pgm"),
                PathBuf::from("train/bob/1.png"),
                PathBuf::from("train/bob/2.JPG")
            ]
        );
        assert_eq!(listing.others, vec![root.join("train/bob/face.heic")]);
    }

    #[test]
    fn missing_folder_names_it() {
        let err = list_images(Path::new("/no/such/facedata")).unwrap_err();
        assert!(err.to_string().contains("/no/such/facedata"));
    }
}

/// One image of an experiment's dataset and its class index.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledImage {
    pub path: PathBuf,
    pub class: usize,
}

/// The classes and the train/test images of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentData {
    /// Folder names, sorted: the class index is the position here.
    pub classes: Vec<String>,
    /// Display names (`data.labels`, else the folder name).
    pub labels: Vec<String>,
    pub train: Vec<LabeledImage>,
    pub test: Vec<LabeledImage>,
    /// People never trained on (`data.strangers`), their images' `class` indexing
    /// `stranger_names`: they measure how many strangers a run accepts.
    pub strangers: Vec<LabeledImage>,
    pub stranger_names: Vec<String>,
}

impl ExperimentData {
    /// Reads the dataset an experiment describes, relative to the workspace root.
    pub fn load(root: &Path, experiment: &crate::config::Experiment) -> Result<Self> {
        let data = &experiment.config.data;
        let dir = root.join(&data.dir);
        let dir_error =
            |message: String| experiment.error("data.dir", format!("{}: {message}", dir.display()));
        if !dir.is_dir() {
            return Err(dir_error(
                "no such folder; create it and add one folder of images per person".into(),
            ));
        }
        let (strangers_folder, named) = data.strangers_folder();
        let (classes, train, test) = match (&data.train, &data.test, &data.split) {
            (Some(train), Some(test), _) => {
                let train_people = person_folders(&dir.join(train), None).map_err(|m| {
                    experiment.error("data.train", format!("{}: {m}", dir.join(train).display()))
                })?;
                let test_people = person_folders(&dir.join(test), None).map_err(|m| {
                    experiment.error("data.test", format!("{}: {m}", dir.join(test).display()))
                })?;
                let classes: Vec<String> =
                    train_people.iter().map(|(name, _)| name.clone()).collect();
                if let Some((stranger, _)) =
                    test_people.iter().find(|(name, _)| !classes.contains(name))
                {
                    return Err(experiment.error(
                        "data.test",
                        format!("person '{stranger}' has test images but no training images; add a folder {}", dir.join(train).join(stranger).display()),
                    ));
                }
                let label = |people: Vec<(String, Vec<PathBuf>)>| -> Vec<LabeledImage> {
                    people
                        .into_iter()
                        .flat_map(|(name, images)| {
                            let class = classes
                                .iter()
                                .position(|c| *c == name)
                                .expect("checked above");
                            images
                                .into_iter()
                                .map(move |path| LabeledImage { path, class })
                        })
                        .collect()
                };
                let (train, test) = (label(train_people), label(test_people));
                (classes, train, test)
            }
            (_, _, Some(split)) => {
                let people = person_folders(&dir, Some(strangers_folder)).map_err(dir_error)?;
                let classes = people.iter().map(|(name, _)| name.clone()).collect();
                let (train, test) = split_people(people, split.test_fraction, split.seed);
                (classes, train, test)
            }
            _ => {
                let people = person_folders(&dir, Some(strangers_folder)).map_err(dir_error)?;
                let (classes, train) = labelled(people);
                (classes, train, Vec::new())
            }
        };
        if classes.len() < 2 {
            return Err(dir_error(format!(
                "found {} person folder(s); a classifier needs at least 2 people",
                classes.len()
            )));
        }
        if let Some(unknown) = data.labels.keys().find(|k| !classes.contains(k)) {
            return Err(experiment.error(
                "data.labels",
                format!(
                    "'{unknown}' is not a person folder (have: {})",
                    classes.join(", ")
                ),
            ));
        }
        let labels = classes
            .iter()
            .map(|c| data.labels.get(c).cloned().unwrap_or_else(|| c.clone()))
            .collect();
        let strangers_dir = dir.join(strangers_folder);
        let stranger_people = if strangers_dir.is_dir() {
            person_folders(&strangers_dir, None).map_err(|m| {
                experiment.error(
                    "data.strangers",
                    format!("{}: {m}", strangers_dir.display()),
                )
            })?
        } else if named {
            return Err(experiment.error(
                "data.strangers",
                format!(
                    "{}: no such folder; make it with one folder per stranger, or leave data.strangers out",
                    strangers_dir.display()
                ),
            ));
        } else {
            Vec::new()
        };
        if let Some((both, _)) = stranger_people.iter().find(|(n, _)| classes.contains(n)) {
            return Err(experiment.error(
                "data.strangers",
                format!("'{both}' is both a known person and a stranger in {}; a stranger must be someone the head never trains on", strangers_dir.display()),
            ));
        }
        let (stranger_names, strangers) = labelled(stranger_people);
        Ok(ExperimentData {
            classes,
            labels,
            train,
            test,
            strangers,
            stranger_names,
        })
    }

    /// The images a trained head is judged on: the test images, or, for a dataset without a
    /// test set, every image.
    pub fn evaluation_images(&self) -> Vec<PathBuf> {
        let images = if self.test.is_empty() {
            &self.train
        } else {
            &self.test
        };
        images.iter().map(|i| i.path.clone()).collect()
    }
}

/// The people's names, and their images labelled with each person's position.
fn labelled(people: Vec<(String, Vec<PathBuf>)>) -> (Vec<String>, Vec<LabeledImage>) {
    let names = people.iter().map(|(name, _)| name.clone()).collect();
    let images = people
        .into_iter()
        .enumerate()
        .flat_map(|(class, (_, images))| {
            images
                .into_iter()
                .map(move |path| LabeledImage { path, class })
        })
        .collect();
    (names, images)
}

/// The person folders directly under `dir` (but `skip`, the strangers' folder), sorted, each
/// with its images.
fn person_folders(
    dir: &Path,
    skip: Option<&str>,
) -> std::result::Result<Vec<(String, Vec<PathBuf>)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{e}"))?;
    let mut people = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_dir() || name.starts_with('.') || Some(name.as_str()) == skip {
            continue;
        }
        let images = list_images(&entry.path())
            .map_err(|e| e.to_string())?
            .images;
        if !images.is_empty() {
            people.push((name, images));
        }
    }
    if people.is_empty() {
        return Err("no person folders with images inside; expected one folder per person (e.g. alice/01.jpg)".into());
    }
    people.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(people)
}

/// Splits each person's images at random (seeded): `test_fraction` of them, rounded and at least
/// one when a person has two or more, go to test.
fn split_people(
    people: Vec<(String, Vec<PathBuf>)>,
    test_fraction: f64,
    seed: u64,
) -> (Vec<LabeledImage>, Vec<LabeledImage>) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (class, (_, mut images)) in people.into_iter().enumerate() {
        images.shuffle(&mut rng);
        let n = images.len();
        let n_test = if n < 2 {
            0
        } else {
            ((n as f64 * test_fraction).round() as usize).clamp(1, n - 1)
        };
        for (i, path) in images.into_iter().enumerate() {
            let item = LabeledImage { path, class };
            if i < n_test {
                test.push(item);
            } else {
                train.push(item);
            }
        }
    }
    (train, test)
}

/// The validation sets drawn from `train` (indices into it), stratified per person: each
/// person's images are shuffled (seeded) and then dealt round the folds, each person starting
/// where the previous one stopped, so fold sizes differ by at most one. `Folds(k)` gives k
/// disjoint sets covering every image; `Fraction(f)` one set with `f` of each person's images
/// (rounded, at least one of a person who has two or more, never all of them).
pub fn validation_sets(
    train: &[LabeledImage],
    validation: Validation,
    seed: u64,
) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let classes = train.iter().map(|i| i.class + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (index, image) in train.iter().enumerate() {
        by_class[image.class].push(index);
    }
    match validation {
        Validation::Folds(k) => {
            let mut folds = vec![Vec::new(); k];
            let mut next = 0;
            for mut members in by_class {
                members.shuffle(&mut rng);
                for index in members {
                    folds[next % k].push(index);
                    next += 1;
                }
            }
            folds.iter_mut().for_each(|f| f.sort_unstable());
            folds
        }
        Validation::Fraction(fraction) => {
            let mut held_out = Vec::new();
            for mut members in by_class {
                members.shuffle(&mut rng);
                let n = members.len();
                let n_val = if n < 2 {
                    0
                } else {
                    ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
                };
                held_out.extend_from_slice(&members[..n_val]);
            }
            held_out.sort_unstable();
            vec![held_out]
        }
    }
}

#[cfg(test)]
mod validation_tests {
    use super::*;

    fn images(per_class: &[usize]) -> Vec<LabeledImage> {
        per_class
            .iter()
            .enumerate()
            .flat_map(|(class, &n)| {
                (0..n).map(move |i| LabeledImage {
                    path: PathBuf::from(format!("{class}/{i}.png")),
                    class,
                })
            })
            .collect()
    }

    #[test]
    fn folds_partition_the_images_evenly_and_per_person() {
        let train = images(&[5, 5, 7, 3]);
        let folds = validation_sets(&train, Validation::Folds(5), 7);
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..train.len()).collect::<Vec<_>>());
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
        // A person with 5 images has one in each of the 5 folds.
        for fold in &folds {
            assert_eq!(fold.iter().filter(|&&i| train[i].class == 0).count(), 1);
        }
        assert_eq!(folds, validation_sets(&train, Validation::Folds(5), 7));
        assert_ne!(folds, validation_sets(&train, Validation::Folds(5), 8));
    }

    #[test]
    fn a_fraction_holds_out_some_of_every_person_with_two_or_more() {
        let train = images(&[10, 2, 1]);
        let sets = validation_sets(&train, Validation::Fraction(0.2), 1);
        assert_eq!(sets.len(), 1);
        let per_class = |c| sets[0].iter().filter(|&&i| train[i].class == c).count();
        assert_eq!((per_class(0), per_class(1), per_class(2)), (2, 1, 0));
    }
}
