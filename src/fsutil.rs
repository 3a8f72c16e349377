//! Writing files so that a reader never sees half of one: every file facelab writes (trained
//! heads, cached features, fetched weights, the face cascade, captured crops, annotated images)
//! goes to a temporary file beside its target, is flushed to disk, and is then renamed into
//! place. A crash or a full disk leaves either the old file or the new one, never a torn one.

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_missing_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/a.bin");
        let e = write_atomically(&path, b"x").unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
