//! Small text helpers shared by the CLI's tables and the TUI's screens.

/// `s` cut to `n` characters, an ellipsis marking the cut.
pub fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n.saturating_sub(1)).chain(['…']).collect()
    }
}

/// The widest of `labels` (in characters), within `[min, max]`: the column width for class
/// names in tables, so long names are cut the same way on every screen.
pub fn label_width<S: AsRef<str>>(labels: &[S], min: usize, max: usize) -> usize {
    labels
        .iter()
        .map(|l| l.as_ref().chars().count())
        .max()
        .unwrap_or(min)
        .clamp(min, max)
}

/// Widest a class name column grows before names are cut.
pub const LABEL_WIDTH: usize = 16;

#[cfg(test)]
mod tests {
    use super::{label_width, short};

    #[test]
    fn label_width_is_the_longest_label_within_bounds() {
        assert_eq!(label_width(&["ann", "bob"], 4, 16), 4);
        assert_eq!(label_width(&["Eric Smith"], 4, 16), 10);
        assert_eq!(label_width(&["a very long display name"], 4, 16), 16);
        assert_eq!(label_width::<&str>(&[], 4, 16), 4);
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(short("experiment", 20), "experiment");
        assert_eq!(short("recommended", 6), "recom…");
        assert_eq!(short("abc", 0), "…");
    }
}
