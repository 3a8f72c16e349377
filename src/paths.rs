//! File names as facelab writes them out. A Linux file name is bytes and need not be UTF-8;
//! facelab handles every path as a path and only turns it into text at the edge:
//!
//! - JSON: `"path"` is the name as text, each byte that is not UTF-8 replaced by U+FFFD; a
//!   name that needed a replacement also gets `"path_hex"`, its exact bytes in hex, so nothing
//!   is lost (`bytes.fromhex(...)` in Python gives the name back).
//! - Reports that list many paths (`dataset stats --json`) use the text form only.

use std::path::{Path, PathBuf};

use serde::Serializer;

/// `path` as text, with U+FFFD for bytes that are not UTF-8.
pub fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The exact bytes of `path` in hex, when its text form lost some (not UTF-8).
pub fn hex_if_lossy(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    if path.to_str().is_some() {
        return None;
    }
    Some(
        path.as_os_str()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Puts `"path"` (and `"path_hex"` when needed) into a JSON object.
pub fn insert_json(object: &mut serde_json::Value, path: &Path) {
    object["path"] = serde_json::Value::String(lossy(path));
    if let Some(hex) = hex_if_lossy(path) {
        object["path_hex"] = serde_json::Value::String(hex);
    }
}

/// For `#[serde(serialize_with)]` on a list of paths: their text forms.
pub fn serialize_list<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}

/// For `#[serde(serialize_with)]` on a list of pairs of paths: their text forms.
pub fn serialize_pairs<S: Serializer>(
    pairs: &[(PathBuf, PathBuf)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        pairs
            .iter()
            .map(|(a, b)| (a.to_string_lossy(), b.to_string_lossy())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_utf8_name_is_written_as_it_is() {
        let mut v = serde_json::json!({});
        insert_json(&mut v, Path::new("faces/José.jpg"));
        assert_eq!(v, serde_json::json!({"path": "faces/José.jpg"}));
    }

    #[test]
    fn lists_of_paths_serialise_whatever_their_bytes() {
        #[derive(serde::Serialize)]
        struct Report {
            #[serde(serialize_with = "serialize_list")]
            files: Vec<PathBuf>,
            #[serde(serialize_with = "serialize_pairs")]
            pairs: Vec<(PathBuf, PathBuf)>,
        }
        let odd = PathBuf::from(OsStr::from_bytes(b"a\xff.jpg"));
        let report = Report {
            files: vec![odd.clone()],
            pairs: vec![(odd, "b.jpg".into())],
        };
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(
            json,
            "{\"files\":[\"a\u{fffd}.jpg\"],\"pairs\":[[\"a\u{fffd}.jpg\",\"b.jpg\"]]}"
        );
    }

    #[test]
    fn a_name_that_is_not_utf8_keeps_its_bytes_in_hex() {
        let path = Path::new(OsStr::from_bytes(b"faces/\xff\xfe.jpg"));
        let mut v = serde_json::json!({});
        insert_json(&mut v, path);
        assert_eq!(v["path"], "faces/\u{fffd}\u{fffd}.jpg");
        assert_eq!(v["path_hex"], "66616365732ffffe2e6a7067");
    }
}
