//! Small text helpers shared by the CLI's tables and the TUI's screens.

/// `s` cut to `n` characters, an ellipsis marking the cut.
pub fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n.saturating_sub(1)).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(short("experiment", 20), "experiment");
        assert_eq!(short("recommended", 6), "recom…");
        assert_eq!(short("abc", 0), "…");
    }
}
