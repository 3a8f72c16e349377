//! Finding the images of a dataset folder (`facedata/` holds one folder per person, optionally
//! under `train/` and `test/`). Files are listed in a stable, sorted order. Hidden files and
//! notes (`*.md`, `*.txt`, like the README datasets ship with) are passed over quietly; any
//! other file without an image extension is listed so the caller can report it.

use std::path::{Path, PathBuf};

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
