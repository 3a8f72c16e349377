//! `facelab dataset stats`: who is in `facedata/`, how many images each person has per split,
//! which images are near-duplicates of each other, and which are too small to be good crops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::quality::Thumbnail;
use crate::dataset;
use crate::error::Result;

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct DatasetStats {
    /// Images per person per split (`train`, `test`, or `-` for folders outside a split).
    pub people: BTreeMap<String, BTreeMap<String, usize>>,
    /// Pairs of one person's images that are near-copies.
    #[serde(serialize_with = "crate::paths::serialize_pairs")]
    pub duplicates: Vec<(PathBuf, PathBuf)>,
    /// Images whose shorter side is below the minimum.
    #[serde(serialize_with = "crate::paths::serialize_list")]
    pub too_small: Vec<PathBuf>,
    /// Files that could not be read as images.
    #[serde(serialize_with = "crate::paths::serialize_list")]
    pub unreadable: Vec<PathBuf>,
}

/// Surveys `facedata`; `min_side` and `duplicate_distance` are the capture gates' thresholds.
pub fn survey(facedata: &Path, min_side: u32, duplicate_distance: f32) -> Result<DatasetStats> {
    let mut stats = DatasetStats::default();
    let mut thumbs: BTreeMap<String, Vec<(PathBuf, Thumbnail)>> = BTreeMap::new();
    for path in dataset::list_images(facedata)?.images {
        let rel = path.strip_prefix(facedata).unwrap_or(&path);
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let (split, person) = match parts.as_slice() {
            [split, person, _file] if split == "train" || split == "test" => {
                (split.clone(), person.clone())
            }
            [.., person, _file] => ("-".to_owned(), person.clone()),
            _ => continue,
        };
        *stats
            .people
            .entry(person.clone())
            .or_default()
            .entry(split)
            .or_default() += 1;
        match crate::image_prep::load(&path) {
            Ok(image) => {
                if image.width().min(image.height()) < min_side {
                    stats.too_small.push(path.clone());
                }
                thumbs
                    .entry(person)
                    .or_default()
                    .push((path, Thumbnail::of(&image)));
            }
            Err(_) => stats.unreadable.push(path),
        }
    }
    for images in thumbs.values() {
        for (i, (a, ta)) in images.iter().enumerate() {
            for (b, tb) in &images[i + 1..] {
                if ta.distance(tb) < duplicate_distance {
                    stats.duplicates.push((a.clone(), b.clone()));
                }
            }
        }
    }
    Ok(stats)
}
