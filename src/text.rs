//! Small text helpers shared by the CLI's tables and the TUI's screens, and the one rule for
//! printing text that came from data (labels, experiment names, tags, notes, file names) on a
//! terminal: control characters and bidirectional overrides are shown as visible escapes, so a
//! label can neither move the cursor, clear the screen, set the window title, nor reorder the
//! text around it. JSON output is not touched: it stays exact.

use std::borrow::Cow;

use facelab::train::open_set::{histogram, OpenSetReport};

/// Whether `c` would act on a terminal instead of being shown: C0 and C1 controls (ESC, CR,
/// BS, newlines, tabs, ...), DEL, and the bidirectional embeddings, overrides and isolates.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `s` safe to print on a terminal, each unsafe character written as its escape (`\u{1b}`).
pub fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if is_unsafe_char(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// A file name safe to print ([`clean`] of its lossy text form).
pub fn path(p: &std::path::Path) -> String {
    clean(&p.to_string_lossy()).into_owned()
}

/// Like [`clean`], keeping line breaks: for text that is meant to span lines (a config, an
/// error chain).
pub fn clean_lines(s: &str) -> String {
    s.split('\n').map(clean).collect::<Vec<_>>().join("\n")
}

/// `s` made safe ([`clean`]) and cut to `n` characters, an ellipsis marking the cut.
pub fn short(s: &str, n: usize) -> String {
    let s = clean(s);
    if s.chars().count() <= n {
        s.into_owned()
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

/// The open-set figures of a run as lines of text, for `show` and the run screen.
pub fn open_set_summary(report: &OpenSetReport) -> Vec<String> {
    let figures = report.figures();
    let mut lines = vec![format!(
        "threshold {:.3} ({} score) for {:.0}% of strangers accepted, set on {} faces of held-out training people",
        report.threshold,
        report.score,
        report.far * 100.0,
        report.calibration_scores.len()
    )];
    if let Some(dir) = figures.dir {
        lines.push(format!(
            "known faces named and accepted (DIR) {dir:.3} of {} test faces",
            report.known_scores.len()
        ));
    }
    match figures.fpir {
        Some(fpir) => lines.push(format!(
            "strangers accepted (FPIR) {fpir:.3} of {} stranger faces",
            report.stranger_scores.len()
        )),
        None => lines.push("no strangers folder: FPIR not measured".into()),
    }
    if let Some(dir) = figures.dir_at_far {
        lines.push(format!(
            "DIR at {:.0}% of these strangers accepted {dir:.3}",
            report.far * 100.0
        ));
    }
    lines
}

/// A histogram of known faces' scores over strangers' (the strangers folder, else the
/// held-out training people), as rows of bars over the same `bins` bins, and a caret under the
/// threshold's bin.
pub fn score_histogram(report: &OpenSetReport, bins: usize) -> Vec<String> {
    let (strangers, strangers_name) = if report.stranger_scores.is_empty() {
        (&report.calibration_scores, "held-out ")
    } else {
        (&report.stranger_scores, "strangers")
    };
    let all = report.known_scores.iter().chain(strangers.iter());
    let (low, high) = all.fold((report.threshold, report.threshold), |(lo, hi), &s| {
        (lo.min(f64::from(s)), hi.max(f64::from(s)))
    });
    let high = high.max(low + 1e-6);
    let bars = |scores: &[f32]| -> String {
        let counts = histogram(scores, bins, low, high);
        let most = counts.iter().copied().max().unwrap_or(0).max(1);
        counts
            .iter()
            .map(|&c| match c {
                0 => ' ',
                c => BAR_LEVELS[((c * (BAR_LEVELS.len() - 1)).div_ceil(most)).min(7)],
            })
            .collect()
    };
    let at = (((report.threshold - low) / (high - low)) * bins as f64).floor() as usize;
    vec![
        format!("known     {}", bars(&report.known_scores)),
        format!("{strangers_name} {}", bars(strangers)),
        format!("{:10}{}^ threshold", "", " ".repeat(at.min(bins - 1))),
        format!("{:10}{low:.2} .. {high:.2}", ""),
    ]
}

const BAR_LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sweep parameter's value as a person reads it: strings without JSON's quotes.
pub fn param_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{clean, clean_lines, label_width, short};

    #[test]
    fn control_and_bidi_characters_are_shown_not_obeyed() {
        assert_eq!(clean("Eric"), "Eric");
        assert_eq!(clean("a\x1b]0;pwned\x07b"), "a\\u{1b}]0;pwned\\u{7}b");
        assert_eq!(clean("x\ry\u{8}\u{202e}z"), "x\\u{d}y\\u{8}\\u{202e}z");
        assert_eq!(clean("José 李"), "José 李");
        assert_eq!(clean_lines("a: 1\nb: \x1b[2J"), "a: 1\nb: \\u{1b}[2J");
        assert_eq!(short("\x1b[2Jname", 30), "\\u{1b}[2Jname");
    }

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
