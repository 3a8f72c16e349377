//! The Sweeps screen: the sweeps on the left; for the selected one its trials (best first, one
//! column per parameter, test accuracy set apart as information), the best-so-far curve, a
//! parallel-coordinates plot (one vertical axis per parameter and one for the metric, a line per
//! finished trial, the best highlighted) and each parameter's importance.

use facelab::sweep::report::{SweepReport, TrialRow};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Line as CanvasLine};
use ratatui::widgets::{
    Axis, Block, Cell, Chart, Dataset, GraphType, ListItem, ListState, Paragraph, Row, Table,
    TableState,
};
use ratatui::Frame;
use serde_json::Value;

use super::{fmt4, selectable_list, short};
use crate::tui::app::App;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let [list, main] =
        Layout::horizontal([Constraint::Percentage(25), Constraint::Min(0)]).areas(area);
    render_list(frame, app, list);
    let Some(report) = app.sweeps.selected_report() else {
        let text = match app.sweeps.job.as_ref().map(|j| (&j.file, &j.outcome)) {
            Some((file, None)) => format!("starting the sweep {}...", file.display()),
            Some((file, Some(Err(e)))) => format!("the sweep {} failed: {e}", file.display()),
            _ => "No sweeps yet. On the Experiments screen, Enter on a file in experiments/sweeps/ starts one (or: facelab sweep FILE).".into(),
        };
        frame.render_widget(
            Paragraph::new(text)
                .wrap(ratatui::widgets::Wrap { trim: true })
                .block(Block::bordered().title(" trials ")),
            main,
        );
        return;
    };
    let [status, table, plots] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Percentage(40),
    ])
    .areas(main);
    render_status(frame, app, report, status);
    render_trials(frame, app, report, table);
    let [curve, parallel, importance] = Layout::horizontal([
        Constraint::Percentage(30),
        Constraint::Percentage(40),
        Constraint::Percentage(30),
    ])
    .areas(plots);
    render_best_so_far(frame, report, curve);
    render_parallel(frame, report, parallel);
    render_importance(frame, report, importance);
}

fn render_list(frame: &mut Frame, app: &App, area: Rect) {
    let items: Vec<ListItem> = app
        .sweeps
        .reports
        .iter()
        .map(|r| {
            ListItem::new(format!(
                "{} {} {}/{} {}",
                r.sweep.id,
                short(&r.sweep.name, 14),
                r.finished_trials,
                r.sweep.total_trials,
                r.status
            ))
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(app.sweeps.selected));
    frame.render_stateful_widget(selectable_list(items, " sweeps "), area, &mut state);
}

fn render_status(frame: &mut Frame, app: &App, report: &SweepReport, area: Rect) {
    let best = report
        .best_trial()
        .map_or("no trial finished yet".into(), |t| {
            format!(
                "selected: trial {} by {} {} (test {}, not used to select)",
                t.number,
                report.sweep.metric,
                fmt4(t.metric),
                fmt4(t.test_accuracy)
            )
        });
    let job = match &app.sweeps.job {
        Some(j) if j.outcome.is_none() => format!("running {}/{}  ", j.done, j.total),
        Some(j) => match &j.outcome {
            Some(Err(e)) => format!("{e}  "),
            _ => String::new(),
        },
        None => String::new(),
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::from(job).fg(Color::Cyan),
            Span::from(format!("{} {}  ", report.sweep.method, report.status)),
            Span::from(best).bold(),
        ])),
        area,
    );
}

fn render_trials(frame: &mut Frame, app: &App, report: &SweepReport, area: Rect) {
    let mut header = vec![
        "#".to_owned(),
        "status".into(),
        report.sweep.metric.clone(),
        "(test)".into(),
        "ep".into(),
    ];
    header.extend(report.keys.iter().map(|k| last_part(k).to_owned()));
    let rows: Vec<Row> = report
        .trials
        .iter()
        .map(|t| {
            let mut cells = vec![
                Cell::from(t.number.to_string()),
                Cell::from(t.status.clone()).style(status_style(&t.status)),
                Cell::from(fmt4(t.metric)),
                Cell::from(fmt4(t.test_accuracy)).fg(Color::DarkGray),
                Cell::from(t.epochs.to_string()),
            ];
            cells.extend(
                report
                    .keys
                    .iter()
                    .map(|k| Cell::from(value_text(t.params.get(k)))),
            );
            let row = Row::new(cells);
            if Some(t.number) == report.best {
                row.fg(Color::Yellow)
            } else {
                row
            }
        })
        .collect();
    let mut widths = vec![
        Constraint::Length(4),
        Constraint::Length(11),
        Constraint::Length(12),
        Constraint::Length(7),
        Constraint::Length(4),
    ];
    widths.extend(report.keys.iter().map(|_| Constraint::Min(8)));
    let table = Table::new(rows, widths)
        .header(Row::new(header).bold())
        .row_highlight_style(
            Style::new()
                .bg(Color::DarkGray)
                .add_modifier(Modifier::BOLD),
        )
        .block(Block::bordered().title(format!(
            " trials of {} (best first; (test) is information only) ",
            report.sweep.name
        )));
    let mut state = TableState::default().with_selected(Some(app.sweeps.trial));
    frame.render_stateful_widget(table, area, &mut state);
}

fn status_style(status: &str) -> Style {
    Style::new().fg(match status {
        "finished" => Color::Green,
        "running" => Color::Cyan,
        "pruned" => Color::Magenta,
        "failed" => Color::Red,
        _ => Color::Yellow,
    })
}

fn last_part(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

fn value_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|v| v.fract() != 0.0)
            .map_or(n.to_string(), |v| format!("{v:.4}")),
        Some(v) => crate::text::param_text(v),
        None => "-".into(),
    }
}

/// The best metric among trials 0..=n, for each trial number n that has a figure.
fn best_so_far(report: &SweepReport) -> Vec<(f64, f64)> {
    let mut by_number: Vec<&TrialRow> = report.trials.iter().collect();
    by_number.sort_by_key(|t| t.number);
    let maximize = report.sweep.goal != "minimize";
    let mut best: Option<f64> = None;
    by_number
        .iter()
        .filter_map(|t| {
            let m = t.metric?;
            let better = best.is_none_or(|b| if maximize { m > b } else { m < b });
            if better {
                best = Some(m);
            }
            Some((t.number as f64, best?))
        })
        .collect()
}

fn render_best_so_far(frame: &mut Frame, report: &SweepReport, area: Rect) {
    let points = best_so_far(report);
    let (low, high) = bounds(points.iter().map(|p| p.1));
    let last = points.last().map_or(1.0, |p| p.0.max(1.0));
    let chart = Chart::new(vec![Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(Color::Yellow))
        .data(&points)])
    .x_axis(
        Axis::default()
            .bounds([0.0, last])
            .labels(["0".to_owned(), format!("{last}")]),
    )
    .y_axis(
        Axis::default()
            .bounds([low, high])
            .labels([format!("{low:.2}"), format!("{high:.2}")]),
    )
    .block(Block::bordered().title(" best so far "));
    frame.render_widget(chart, area);
}

/// A little room around the values, or [0, 1] when there are none.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((high - low) * 0.05).max(1e-3);
    (low - pad, high + pad)
}

/// Where a trial's value sits on a parameter's axis, in [0, 1]: numbers by their range (in
/// the logarithm when they span more than a factor of 10 and are positive), other values by
/// their rank among the values seen.
fn axis_position(rows: &[&TrialRow], key: &str) -> Vec<f64> {
    let values: Vec<Option<&Value>> = rows.iter().map(|t| t.params.get(key)).collect();
    let numbers: Option<Vec<f64>> = values.iter().map(|v| v.and_then(Value::as_f64)).collect();
    if let Some(numbers) = numbers {
        let (low, high) = numbers
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        let log = low > 0.0 && high / low > 10.0;
        let scale = |v: f64| if log { v.ln() } else { v };
        let (low, high) = (scale(low), scale(high));
        return numbers
            .iter()
            .map(|&v| {
                if high > low {
                    (scale(v) - low) / (high - low)
                } else {
                    0.5
                }
            })
            .collect();
    }
    let mut distinct: Vec<String> = values.iter().map(|v| value_text(*v)).collect();
    distinct.sort();
    distinct.dedup();
    let span = (distinct.len().max(2) - 1) as f64;
    values
        .iter()
        .map(|v| {
            let i = distinct.binary_search(&value_text(*v)).unwrap_or(0);
            if distinct.len() < 2 {
                0.5
            } else {
                i as f64 / span
            }
        })
        .collect()
}

fn render_parallel(frame: &mut Frame, report: &SweepReport, area: Rect) {
    let rows: Vec<&TrialRow> = report
        .trials
        .iter()
        .filter(|t| t.metric.is_some())
        .collect();
    let mut axes: Vec<(String, Vec<f64>)> = report
        .keys
        .iter()
        .map(|k| (last_part(k).to_owned(), axis_position(&rows, k)))
        .collect();
    let metric: Vec<f64> = rows.iter().filter_map(|t| t.metric).collect();
    let (low, high) = bounds(metric.iter().copied());
    axes.push((
        report.sweep.metric.clone(),
        metric.iter().map(|m| (m - low) / (high - low)).collect(),
    ));
    let spread = (axes.len().max(2) - 1) as f64;
    let best = report.best;
    let canvas = Canvas::default()
        .block(Block::bordered().title(" parameters -> metric "))
        .marker(Marker::Braille)
        .x_bounds([0.0, spread])
        .y_bounds([-0.15, 1.0])
        .paint(|ctx| {
            for (i, _) in axes.iter().enumerate() {
                ctx.draw(&CanvasLine::new(
                    i as f64,
                    0.0,
                    i as f64,
                    1.0,
                    Color::DarkGray,
                ));
            }
            // Others first, so the best trial's line is drawn over them.
            let order = (0..rows.len())
                .filter(|&r| Some(rows[r].number) != best)
                .chain((0..rows.len()).filter(|&r| Some(rows[r].number) == best));
            for r in order {
                let color = if Some(rows[r].number) == best {
                    Color::Yellow
                } else {
                    Color::Cyan
                };
                for i in 1..axes.len() {
                    ctx.draw(&CanvasLine::new(
                        (i - 1) as f64,
                        axes[i - 1].1[r],
                        i as f64,
                        axes[i].1[r],
                        color,
                    ));
                }
            }
            ctx.layer();
            for (i, (name, _)) in axes.iter().enumerate() {
                ctx.print(i as f64, -0.15, Span::from(short(name, 8)).fg(Color::Gray));
            }
        });
    frame.render_widget(canvas, area);
}

fn render_importance(frame: &mut Frame, report: &SweepReport, area: Rect) {
    let bar_width = area.width.saturating_sub(20) as f64;
    let lines: Vec<Line> = report
        .importance
        .iter()
        .map(|(key, share)| {
            Line::from(vec![
                Span::from(format!("{:<12} {share:.2} ", short(last_part(key), 12))),
                Span::from("█".repeat((share * bar_width).round() as usize)).fg(Color::Green),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" importance ")),
        area,
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::tui::app::Msg;
    use crate::tui::view::test_support::screen_text;
    use facelab::store::SweepRecord;

    fn report() -> SweepReport {
        let trials: Vec<TrialRow> = (0..12)
            .map(|i| TrialRow {
                number: i,
                run_id: Some(format!("{i:08x}")),
                status: if i == 11 {
                    "running".into()
                } else {
                    "finished".into()
                },
                params: BTreeMap::from([
                    (
                        "train.optimizer.lr".into(),
                        Value::from(0.001 * (i + 1) as f64),
                    ),
                    (
                        "head.hidden".into(),
                        if i % 2 == 0 {
                            serde_json::json!([])
                        } else {
                            serde_json::json!([256])
                        },
                    ),
                ]),
                metric: (i != 11).then_some(0.5 + 0.04 * i as f64),
                test_accuracy: Some(0.9),
                epochs: 10,
            })
            .collect();
        let sweep = SweepRecord {
            id: "abcd1234".into(),
            name: "head-search".into(),
            file: "experiments/sweeps/s.yaml".into(),
            method: "tpe".into(),
            metric: "cv_accuracy".into(),
            goal: "maximize".into(),
            total_trials: 20,
            created_at: "2026-11-29T10:00:00Z".into(),
            dataset_hash: "d".into(),
            spec_yaml: String::new(),
            experiment_yaml: String::new(),
        };
        let mut report = SweepReport::from_trials(sweep, &[]);
        report.keys = vec!["head.hidden".into(), "train.optimizer.lr".into()];
        report.importance = BTreeMap::from([
            ("head.hidden".into(), 0.1),
            ("train.optimizer.lr".into(), 0.8),
        ]);
        report.trials = trials;
        report
            .trials
            .sort_by(|a, b| b.metric.partial_cmp(&a.metric).unwrap());
        report.best = Some(10);
        report
    }

    fn app() -> App {
        let mut app = App::default();
        app.update(Msg::SweepsLoaded(vec![report()]));
        app.screen = crate::tui::app::Screen::Sweeps;
        app
    }

    #[test]
    fn draws_at_every_size_without_panicking() {
        let app = app();
        for w in (1..=200).step_by(13).chain([200]) {
            for h in (1..=60).step_by(7).chain([60]) {
                screen_text(&app, w, h);
            }
        }
    }

    #[test]
    fn shows_trials_best_first_with_the_selection_and_the_test_column_apart() {
        let text = screen_text(&app(), 160, 40);
        assert!(
            text.contains("selected: trial 10 by cv_accuracy 0.9000"),
            "{text}"
        );
        assert!(text.contains("(test)") && text.contains("not used to select"));
        assert!(text.contains("best so far") && text.contains("importance"));
        let first = text.find("0.9000").unwrap();
        let later = text.find("0.8600").unwrap();
        assert!(first < later, "best first");
        assert!(text.contains("lr"), "{text}");
    }

    #[test]
    fn the_best_so_far_curve_never_gets_worse() {
        let points = best_so_far(&report());
        assert_eq!(points.len(), 11);
        assert!(points.windows(2).all(|w| w[1].1 >= w[0].1));
        assert_eq!(points.last().unwrap().1, 0.9);
    }
}
