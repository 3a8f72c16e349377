//! One run: its figures and resolved config, loss and accuracy curves (train and validation),
//! the test confusion matrix as a heat map with class names, and per-class precision/recall.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Row, Table};
use ratatui::Frame;

use super::{fmt4, short};
use crate::text::{label_width, open_set_summary, score_histogram, LABEL_WIDTH};
use crate::tui::app::App;
use facelab::store::StoredConfusion;
use facelab::train::open_set::OpenSetReport;
use facelab::train::EpochMetrics;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let Some(detail) = &app.detail else {
        frame.render_widget(Paragraph::new("loading…"), area);
        return;
    };
    let run = &detail.run;
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let [info, loss, acc] = Layout::horizontal([
        Constraint::Percentage(30),
        Constraint::Percentage(35),
        Constraint::Percentage(35),
    ])
    .areas(top);
    let mut lines = vec![
        Line::from(vec![
            Span::from(run.id.clone()).bold(),
            Span::from(format!("  {}  {}", run.experiment, run.status.as_str())),
        ]),
        Line::from(format!(
            "test accuracy {}  best epoch {}",
            fmt4(run.test_accuracy),
            run.best_epoch.map_or("-".into(), |e| e.to_string())
        )),
    ];
    if let Some(selection) = &run.selection {
        lines.push(Line::from(selection.summary()));
    }
    lines.push(Line::from(""));
    lines.extend(run.config_yaml.lines().map(|l| Line::from(l.to_owned())));
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" run · config ")),
        info,
    );
    render_curves(
        frame,
        loss,
        " loss ",
        &[
            ("loss", &detail.epochs, |m| Some(m.loss)),
            ("val_loss", &detail.epochs, |m| m.val_loss),
        ],
    );
    render_curves(
        frame,
        acc,
        " accuracy ",
        &[
            ("accuracy", &detail.epochs, |m| Some(m.accuracy)),
            ("val_accuracy", &detail.epochs, |m| m.val_accuracy),
        ],
    );
    let bottom = match &detail.open_set {
        Some(report) => {
            let [left, right] =
                Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                    .areas(bottom);
            render_open_set(frame, report, right);
            left
        }
        None => bottom,
    };
    match &detail.confusion {
        Some(c) => render_confusion(frame, c, bottom),
        None => frame.render_widget(
            Paragraph::new("No confusion matrix: the run has no test set or has not finished.")
                .block(Block::bordered().title(" confusion matrix ")),
            bottom,
        ),
    }
}

/// The open-set figures and the score histogram (known faces over strangers, with the
/// threshold marked), as wide as the panel allows.
fn render_open_set(frame: &mut Frame, report: &OpenSetReport, area: Rect) {
    let bins = (area.width as usize).saturating_sub(14).clamp(4, 60);
    let mut lines: Vec<Line> = open_set_summary(report)
        .into_iter()
        .map(Line::from)
        .collect();
    lines.push(Line::from(""));
    let histogram = score_histogram(report, bins);
    let colours = [Color::Green, Color::Red, Color::Yellow, Color::DarkGray];
    lines.extend(
        histogram
            .into_iter()
            .zip(colours)
            .map(|(text, colour)| Line::from(text).fg(colour)),
    );
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(Block::bordered().title(" open set · unknown faces ")),
        area,
    );
}

/// A curve: legend name, the epochs, and which figure of an epoch to plot.
pub type Curve<'a> = (
    &'a str,
    &'a [EpochMetrics],
    fn(&EpochMetrics) -> Option<f64>,
);

const CURVE_COLORS: [Color; 6] = [
    Color::Cyan,
    Color::Yellow,
    Color::Magenta,
    Color::Green,
    Color::Red,
    Color::Blue,
];

/// Line charts of several curves over epochs with a legend, scaled to fit them all.
pub fn render_curves(frame: &mut Frame, area: Rect, title: &str, curves: &[Curve]) {
    let points: Vec<Vec<(f64, f64)>> = curves
        .iter()
        .map(|(_, epochs, get)| {
            epochs
                .iter()
                .filter_map(|m| get(m).map(|v| (m.epoch as f64, v)))
                .collect()
        })
        .collect();
    let all = points.iter().flatten();
    let max_x = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let (min_y, max_y) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let (min_y, max_y) = if min_y.is_finite() {
        (min_y.min(0.0), max_y.max(min_y + 1e-6))
    } else {
        (0.0, 1.0)
    };
    let datasets = curves
        .iter()
        .zip(&points)
        .enumerate()
        .map(|(i, ((name, _, _), pts))| {
            Dataset::default()
                .name(*name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(CURVE_COLORS[i % CURVE_COLORS.len()]))
                .data(pts)
        })
        .collect();
    let chart = Chart::new(datasets)
        .block(Block::bordered().title(title.to_owned()))
        .x_axis(
            Axis::default()
                .title("epoch")
                .bounds([1.0, max_x.max(2.0)])
                .labels(["1".to_owned(), format!("{max_x:.0}")]),
        )
        .y_axis(
            Axis::default()
                .bounds([min_y, max_y])
                .labels([format!("{min_y:.2}"), format!("{max_y:.2}")]),
        )
        .legend_position(Some(ratatui::widgets::LegendPosition::TopRight))
        .hidden_legend_constraints((Constraint::Percentage(90), Constraint::Percentage(90)));
    frame.render_widget(chart, area);
}

fn render_confusion(frame: &mut Frame, c: &StoredConfusion, area: Rect) {
    let [matrix, scores] =
        Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(area);
    let max = c.counts.iter().flatten().copied().max().unwrap_or(1).max(1);
    let name_width = label_width(&c.labels, 4, LABEL_WIDTH) as u16;
    // Count columns stay narrow so a matrix of many people still fits.
    let cell_width = label_width(&c.labels, 3, 6) as u16;
    let header = Row::new(
        std::iter::once(String::from("actual \\ predicted"))
            .chain(c.labels.iter().map(|l| short(l, cell_width as usize))),
    )
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = c
        .labels
        .iter()
        .zip(&c.counts)
        .enumerate()
        .map(|(i, (label, row))| {
            let cells = row.iter().enumerate().map(|(j, &n)| {
                let heat = (n as f64 / max as f64 * 200.0) as u8;
                let style = if i == j {
                    Style::new().bg(Color::Rgb(0, 40 + heat, 0))
                } else if n > 0 {
                    Style::new().bg(Color::Rgb(40 + heat, 0, 0))
                } else {
                    Style::new()
                };
                ratatui::widgets::Cell::from(format!("{n:>w$}", w = cell_width as usize))
                    .style(style.fg(Color::White))
            });
            Row::new(
                std::iter::once(
                    ratatui::widgets::Cell::from(short(label, name_width as usize)).bold(),
                )
                .chain(cells),
            )
        });
    let widths: Vec<Constraint> = std::iter::once(Constraint::Length(name_width.max(18)))
        .chain(c.labels.iter().map(|_| Constraint::Length(cell_width)))
        .collect();
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" confusion matrix (test set) ")),
        matrix,
    );

    let rows = c
        .labels
        .iter()
        .zip(c.precision.iter().zip(&c.recall))
        .map(|(label, (p, r))| {
            let f = |v: &Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
            Row::new([short(label, name_width as usize), f(p), f(r)])
        });
    let table = Table::new(
        rows,
        [
            Constraint::Min(8),
            Constraint::Length(9),
            Constraint::Length(6),
        ],
    )
    .header(
        Row::new(["class", "precision", "recall"]).style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(" per class "));
    frame.render_widget(table, scores);
}

#[cfg(test)]
mod tests {
    use crate::tui::app::{App, Msg, RunDetail};
    use crate::tui::view::test_support::screen_text;
    use facelab::store::StoredConfusion;
    use facelab::train::EpochMetrics;

    pub fn detail() -> RunDetail {
        let mut run =
            facelab::store::fixtures::finished_run("abcd1234", "seed", 0.9, "2026-11-29T07:00:00Z");
        run.config_yaml = "name: seed\ntrain:\n  epochs: 3\n".into();
        RunDetail {
            run,
            epochs: (1..=3)
                .map(|e| EpochMetrics {
                    epoch: e,
                    loss: 1.0 / e as f64,
                    accuracy: 0.3 * e as f64,
                    val_loss: Some(1.2 / e as f64),
                    val_accuracy: Some(0.25 * e as f64),
                    seconds: 0.3,
                })
                .collect(),
            confusion: Some(StoredConfusion {
                classes: vec!["s01".into(), "s02".into()],
                labels: vec!["Eric".into(), "Maria".into()],
                counts: vec![vec![3, 0], vec![1, 2]],
                precision: vec![Some(0.75), Some(1.0)],
                recall: vec![Some(1.0), Some(2.0 / 3.0)],
            }),
            open_set: None,
        }
    }

    #[test]
    fn a_run_with_a_threshold_shows_its_figures_and_histogram() {
        let mut run = detail();
        run.open_set = Some(facelab::train::open_set::OpenSetReport {
            score: "cosine".into(),
            far: 0.05,
            threshold: 0.5,
            calibration_scores: vec![0.1, 0.2, 0.3],
            known_scores: vec![0.9, 0.8, 0.7, 0.4],
            known_correct: vec![true, true, false, true],
            stranger_scores: vec![0.2, 0.3, 0.6, 0.1],
        });
        let mut app = App::default();
        app.update(Msg::DetailLoaded(Box::new(run)));
        let text = screen_text(&app, 140, 40);
        for needle in [
            "open set",
            "threshold 0.500",
            "(DIR) 0.500",
            "(FPIR) 0.250",
            "known",
            "strangers",
            "^ threshold",
            "confusion matrix",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        for (w, h) in [(40, 10), (80, 24), (20, 6)] {
            screen_text(&app, w, h);
        }
    }

    #[test]
    fn detail_shows_config_curves_legend_and_confusion_with_names() {
        let mut app = App::default();
        app.update(Msg::DetailLoaded(Box::new(detail())));
        let text = screen_text(&app, 140, 40);
        for needle in [
            "abcd1234",
            "epochs: 3",
            "val_loss",
            "val_accuracy",
            "Eric",
            "Maria",
            "precision",
            "0.750",
            "confusion matrix",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        screen_text(&app, 40, 10);
    }
}
