//! Finding OpenCV's frontal-face cascade: a given path, an installed copy, the workspace's
//! cached copy, or a download from OpenCV's repository.

use std::path::Path;

use super::Cascade;
use crate::error::{Error, Result};

/// File name of OpenCV's frontal-face cascade.
pub const FACE_CASCADE_FILE: &str = "haarcascade_frontalface_default.xml";
/// Where OpenCV publishes it, for machines that have no OpenCV installed.
pub const FACE_CASCADE_URL: &str = "https://raw.githubusercontent.com/opencv/opencv/4.x/data/haarcascades/haarcascade_frontalface_default.xml";
const INSTALL_DIRS: [&str; 4] = [
    "/usr/share/opencv4/haarcascades",
    "/usr/share/opencv/haarcascades",
    "/usr/local/share/opencv4/haarcascades",
    "/opt/homebrew/share/opencv4/haarcascades",
];

/// OpenCV's face cascade where it is installed (Debian's `opencv-data` and the usual
/// prefixes), or the explicit path when one is given.
pub fn find_face_cascade(explicit: Option<&Path>) -> Result<std::path::PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(Error::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such cascade file"),
            ))
        };
    }
    INSTALL_DIRS
        .iter()
        .map(|d| Path::new(d).join(FACE_CASCADE_FILE))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::InvalidArgument(format!("{FACE_CASCADE_FILE} is not installed")))
}

/// The face cascade, first match wins: the explicit path, an installed copy, the copy cached in
/// `models_dir`, else a download from OpenCV's repository into `models_dir` (checked to parse,
/// written atomically).
pub fn obtain_face_cascade(
    explicit: Option<&Path>,
    models_dir: &Path,
) -> Result<std::path::PathBuf> {
    if explicit.is_some() {
        return find_face_cascade(explicit);
    }
    if let Ok(installed) = find_face_cascade(None) {
        return Ok(installed);
    }
    let cached = models_dir.join(FACE_CASCADE_FILE);
    if cached.is_file() {
        return Ok(cached);
    }
    let unavailable = |why: String| {
        Error::InvalidArgument(format!(
            "cannot find {FACE_CASCADE_FILE}: not installed, not in {}, and the download failed ({why}). \
             Install OpenCV's data (Debian: apt-get install opencv-data), or pass --cascade PATH",
            models_dir.display()
        ))
    };
    let text = crate::net::agent()
        .get(FACE_CASCADE_URL)
        .call()
        .map_err(|e| unavailable(e.to_string()))?
        .body_mut()
        .read_to_string()
        .map_err(|e| unavailable(e.to_string()))?;
    Cascade::parse(&text)
        .map_err(|e| unavailable(format!("the download is not a cascade: {e}")))?;
    std::fs::create_dir_all(models_dir).map_err(|e| Error::io(models_dir, e))?;
    crate::fsutil::write_atomically(&cached, text.as_bytes())?;
    Ok(cached)
}
