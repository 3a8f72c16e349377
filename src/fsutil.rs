//! Reading and writing files safely.
//!
//! Writing: every file facelab writes (trained heads, cached features, fetched weights, the face
//! cascade, captured crops, annotated images) goes to a temporary file beside its target, is
//! flushed to disk, and is then renamed into place. A crash or a full disk leaves either the old
//! file or the new one, never a torn one.
//!
//! Reading: every file facelab reads from a path a user or a folder gave it goes through
//! [`read_limited`], which opens regular files only (a FIFO, a device such as `/dev/zero`, or a
//! folder is refused by name instead of hanging or filling memory) and never reads more than the
//! size that kind of file can have.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, |file| file.write_all(bytes)).map_err(|why| match why {
        AtomicWriteError::Io(e) => e,
        AtomicWriteError::Fill(e) => Error::io(path, e),
    })
}

/// Why [`write_atomically_with`] failed: the file system, or the closure that fills the file
/// (whose own error is kept as it is, so callers can say which source failed).
#[derive(Debug)]
pub enum AtomicWriteError<E> {
    Io(Error),
    Fill(E),
}

/// Lets `fill` write a temporary file beside `path` (and check it, e.g. against a hash), then
/// flushes it to disk and renames it over `path`. When `fill` fails, nothing is renamed and the
/// temporary file is removed.
pub fn write_atomically_with<E>(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::result::Result<(), E>,
) -> std::result::Result<(), AtomicWriteError<E>> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |at: &Path, e: std::io::Error| AtomicWriteError::Io(Error::io(at, e));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io(dir, e))?;
    fill(temp.as_file_mut()).map_err(AtomicWriteError::Fill)?;
    temp.as_file().sync_all().map_err(|e| io(path, e))?;
    temp.persist(path).map_err(|e| io(path, e.error))?;
    Ok(())
}

/// [`write_atomically`] for writers that take a path rather than a file: `fill` writes the file
/// at a staging path beside `path` (it may replace that file by its own rename), which is then
/// flushed to disk and renamed over `path`. When `fill` fails, the staging file is removed.
pub fn write_atomically_via<E>(
    path: &Path,
    fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), AtomicWriteError<E>> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |at: &Path, e: std::io::Error| AtomicWriteError::Io(Error::io(at, e));
    let staging = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| io(dir, e))?
        .into_temp_path();
    fill(&staging).map_err(AtomicWriteError::Fill)?;
    File::open(&staging)
        .and_then(|file| file.sync_all())
        .map_err(|e| io(path, e))?;
    staging.persist(path).map_err(|e| io(path, e.error))?;
    Ok(())
}

/// Largest files of each kind facelab reads (a bound, not an expectation).
pub mod limits {
    /// An experiment file or `head.json`.
    pub const TEXT: u64 = 1 << 20;
    /// An image to decode: far above any photo, far below a machine's memory.
    pub const IMAGE: u64 = 256 << 20;
    /// A cascade XML (OpenCV's largest is about 2 MB).
    pub const CASCADE: u64 = 32 << 20;
    /// A trained head's safetensors.
    pub const HEAD: u64 = 2 << 30;
}

/// The bytes of the regular file at `path`, at most `limit` of them. A path that is not a
/// regular file (after following symlinks) is refused before it is opened, and the file is
/// opened non-blocking and checked again, so a FIFO swapped in meanwhile cannot block.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = |what: &str| {
        Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{what}, not a regular file; give the path of a file"),
            ),
        )
    };
    let kind = |meta: &std::fs::Metadata| {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_dir() {
            "a folder"
        } else if t.is_fifo() {
            "a named pipe"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "a special file"
        }
    };
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular(kind(&meta)));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular(kind(&meta)));
    }
    if meta.len() > limit {
        return Err(too_large(path, meta.len(), limit));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(path, bytes.len() as u64, limit));
    }
    Ok(bytes)
}

fn too_large(path: &Path, size: u64, limit: u64) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{size} bytes is more than this kind of file can be (at most {limit})"),
        ),
    )
}

/// [`read_limited`] as UTF-8 text.
pub fn read_text_limited(path: &Path, limit: u64) -> Result<String> {
    String::from_utf8(read_limited(path, limit)?).map_err(|_| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_by_kind_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_limited(&fifo, 100).unwrap_err().to_string();
        assert!(e.contains("named pipe") && e.contains("pipe"), "{e}");
        let e = read_limited(Path::new("/dev/zero"), 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a device"), "{e}");
        let e = read_limited(dir.path(), 100).unwrap_err().to_string();
        assert!(e.contains("a folder"), "{e}");
        let link = dir.path().join("zero-link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_limited(&link, 100)
            .unwrap_err()
            .to_string()
            .contains("a device"));
    }

    #[test]
    fn a_file_over_its_limit_is_refused_and_one_within_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        std::fs::write(&path, vec![b'x'; 101]).unwrap();
        let e = read_limited(&path, 100).unwrap_err().to_string();
        assert!(e.contains("101 bytes") && e.contains("at most 100"), "{e}");
        assert_eq!(read_limited(&path, 101).unwrap().len(), 101);
    }

    #[test]
    fn a_write_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        write_atomically(&path, b"old").unwrap();
        let result = write_atomically_with(&path, |f| {
            f.write_all(b"half").unwrap();
            Err("checksum mismatch")
        });
        assert!(matches!(
            result,
            Err(AtomicWriteError::Fill("checksum mismatch"))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_write_through_a_staging_path_replaces_the_file_or_leaves_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        write_atomically(&path, b"old").unwrap();
        // A writer that makes its own file and renames it over the staging path, as
        // safetensors' does.
        let replace = |staging: &Path, bytes: &[u8]| {
            let own = staging.with_extension("own");
            std::fs::write(&own, bytes)?;
            std::fs::rename(&own, staging)
        };
        let failed = write_atomically_via(&path, |staging| {
            replace(staging, b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(matches!(failed, Err(AtomicWriteError::Fill(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomically_via(&path, |staging| replace(staging, b"new")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/a.bin");
        let e = write_atomically(&path, b"x").unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
