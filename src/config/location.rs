//! Finding where a key is written in an experiment file, so every error names its line: the
//! YAML parser's own location where it has one, else a search for the dotted key path.

/// serde_norway prefixes nested errors with the key path (`train.batch_size: ...`).
pub(super) fn yaml_error_key(e: &serde_norway::Error) -> String {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((key, _)) if !key.contains(' ') => key.to_owned(),
        _ => "(document)".to_owned(),
    }
}

/// The 1-based line where a dotted key path (`train.optimizer.lr`, `head.hidden[0]`) is written:
/// each key is looked for below its parent, at line start or inside a flow mapping.
pub(super) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut found = None;
    for part in key.split('.') {
        let name = part.split('[').next().unwrap_or(part);
        let pattern = format!("{name}:");
        let hit = (from..lines.len()).find(|&i| {
            let line = lines[i].split('#').next().unwrap_or("");
            let trimmed = line.trim_start();
            trimmed.starts_with(&pattern)
                || line.contains(&format!("{{{pattern}"))
                || line.contains(&format!(" {pattern}"))
        })?;
        found = Some(hit + 1);
        from = hit;
    }
    found
}
