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

/// The parser's message without what the error already says: the key path it starts with and
/// the "at line L column C" it ends with.
pub(super) fn yaml_error_message(e: &serde_norway::Error) -> String {
    let text = e.to_string();
    let key = yaml_error_key(e);
    let message = text
        .strip_prefix(&format!("{key}: "))
        .unwrap_or(&text)
        .to_owned();
    let ends_with_position = |at: usize| {
        message[at + " at line ".len()..]
            .split(" column ")
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    match message.rfind(" at line ") {
        Some(at) if ends_with_position(at) => message[..at].to_owned(),
        _ => message,
    }
}

/// The 1-based line where a dotted key path (`train.optimizer.lr`, `head.hidden[0]`) is written:
/// each key is looked for below its parent, at line start or inside a flow mapping.
pub(crate) fn line_of_key(text: &str, key: &str) -> Option<usize> {
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

/// Deepest nesting an experiment file may have (real ones nest three or four levels).
pub(super) const MAX_DEPTH: usize = 32;

/// The first line (1-based) where `text` nests deeper than [`MAX_DEPTH`], counting flow
/// brackets and block indentation, outside quotes and comments. The YAML parser takes quadratic
/// time on deep nesting, so such a file is refused before it is parsed.
pub(super) fn too_deep(text: &str) -> Option<usize> {
    let mut flow = 0usize;
    for (i, line) in text.lines().enumerate() {
        let indent = line
            .chars()
            .take_while(|c| matches!(c, ' ' | '-' | '\t'))
            .count();
        if indent > 4 * MAX_DEPTH {
            return Some(i + 1);
        }
        let mut quote = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    flow += 1;
                    if flow > MAX_DEPTH {
                        return Some(i + 1);
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
    }
    None
}
