//! The runs table (only the rows that fit are built, so 10,000 runs draw as fast as 10) and
//! the selected run's key figures beside it.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::{fmt4, fmt_duration};
use crate::tui::app::App;
use facelab::store::{RunRecord, RunStatus};

/// Below this width the side panel gives its room to the table.
const SIDE_PANEL_MIN_WIDTH: u16 = 100;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let (table_area, side) = if area.width >= SIDE_PANEL_MIN_WIDTH && app.selected_run().is_some() {
        let [t, s] = Layout::horizontal([Constraint::Min(0), Constraint::Length(34)]).areas(area);
        (t, Some(s))
    } else {
        (area, None)
    };
    let runs = app.runs.visible();
    let title = format!(
        " runs {}{} · sort: {} ",
        runs.len(),
        if app.runs.filter.is_empty() {
            String::new()
        } else {
            format!(" matching '{}'", app.runs.filter)
        },
        app.runs.sort.title()
    );
    let block = Block::bordered().title(title);
    if runs.is_empty() {
        let text = if app.runs.all.is_empty() {
            vec![
                Line::from("No runs yet."),
                Line::from(""),
                Line::from("1. Get faces into facedata/, one folder per person: the Capture screen"),
                Line::from("   (Tab), `facelab dataset import PHOTOS --person NAME`, or a copy of a dataset."),
                Line::from("2. Train: Tab to Experiments and press Enter on one,"),
                Line::from("   or run `facelab train experiments/seed.yaml` in a shell."),
            ]
        } else {
            vec![Line::from("No run matches the filter; Esc clears it.")]
        };
        frame.render_widget(
            Paragraph::new(text)
                .wrap(ratatui::widgets::Wrap { trim: false })
                .block(block),
            table_area,
        );
    } else {
        render_table(frame, app, &runs, table_area, block);
    }
    if let (Some(side), Some(run)) = (side, app.selected_run()) {
        render_side_panel(frame, run, side);
    }
}

fn render_table(frame: &mut Frame, app: &App, runs: &[&RunRecord], area: Rect, block: Block) {
    let rows_fit = area.height.saturating_sub(3).max(1) as usize;
    // The window of rows that fits, placed so the selection is inside it.
    let first = app.runs.selected.saturating_sub(rows_fit - 1);
    let window = &runs[first..(first + rows_fit).min(runs.len())];
    let rows = window.iter().map(|r| {
        let mark = if app.runs.marked.contains(&r.id) {
            "*"
        } else {
            " "
        };
        Row::new(vec![
            Cell::from(mark).fg(Color::Yellow),
            Cell::from(r.id.clone()),
            Cell::from(r.experiment.clone()),
            Cell::from(r.status.as_str()).fg(status_color(r.status)),
            Cell::from(fmt4(r.best_val_accuracy)),
            Cell::from(fmt4(r.val_loss)),
            Cell::from(r.epochs.to_string()),
            Cell::from(fmt_duration(r.duration_seconds())),
            Cell::from(
                r.started_at
                    .get(..16)
                    .unwrap_or(&r.started_at)
                    .replace('T', " "),
            ),
            Cell::from(r.tags.join(",")),
        ])
    });
    let header = Row::new([
        "",
        "id",
        "experiment",
        "status",
        "val acc",
        "val loss",
        "epochs",
        "duration",
        "started",
        "tags",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(1),
        Constraint::Length(8),
        Constraint::Min(10),
        Constraint::Length(11),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(16),
        Constraint::Min(6),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(
            Style::new()
                .bg(Color::DarkGray)
                .add_modifier(Modifier::BOLD),
        );
    let mut state = TableState::default().with_selected(Some(app.runs.selected - first));
    frame.render_stateful_widget(table, area, &mut state);
}

pub fn status_color(status: RunStatus) -> Color {
    match status {
        RunStatus::Running => Color::Cyan,
        RunStatus::Finished => Color::Green,
        RunStatus::Failed => Color::Red,
        RunStatus::Interrupted => Color::Yellow,
        RunStatus::Pruned => Color::Magenta,
    }
}

fn render_side_panel(frame: &mut Frame, run: &RunRecord, area: Rect) {
    let field = |name: &str, value: String| {
        Line::from(vec![
            Span::from(format!("{name:<14}")).fg(Color::DarkGray),
            Span::from(value),
        ])
    };
    let mut lines = vec![
        field("run", run.id.clone()),
        field("experiment", run.experiment.clone()),
        field("status", run.status.as_str().into()),
        field("test accuracy", fmt4(run.test_accuracy)),
        field("best val acc", fmt4(run.best_val_accuracy)),
        field("best val loss", fmt4(run.best_val_loss)),
        field("final loss", fmt4(run.loss)),
        field("epochs", run.epochs.to_string()),
        field(
            "best epoch",
            run.best_epoch.map_or("-".into(), |e| e.to_string()),
        ),
        field("duration", fmt_duration(run.duration_seconds())),
        field("seed", run.seed.to_string()),
        field(
            "dataset",
            run.dataset_hash.get(..12).unwrap_or("").to_owned(),
        ),
        field("tags", run.tags.join(", ")),
    ];
    if let Some(notes) = &run.notes {
        lines.push(field("notes", notes.clone()));
    }
    if let Some(error) = &run.error {
        lines.push(Line::from(Span::from(error.clone()).fg(Color::Red)));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(" selected "))
            .wrap(ratatui::widgets::Wrap { trim: true }),
        area,
    );
}

#[cfg(test)]
mod tests {
    use crate::tui::app::{App, Msg};
    use crate::tui::view::test_support::screen_text;
    use facelab::store::{RunRecord, RunStatus};

    pub fn runs() -> Vec<RunRecord> {
        let yaml = "name: seed\n";
        (0..30)
            .map(|i| RunRecord {
                id: format!("{i:08x}"),
                experiment: if i % 2 == 0 {
                    "seed".into()
                } else {
                    "recommended".into()
                },
                status: if i == 3 {
                    RunStatus::Running
                } else {
                    RunStatus::Finished
                },
                started_at: format!("2026-11-{:02}T10:00:00Z", i % 28 + 1),
                ended_at: None,
                seed: 42,
                config_hash: "c".into(),
                dataset_hash: "0123456789abcdef".into(),
                weights_hash: "w".into(),
                epochs: 3,
                best_epoch: Some(2),
                loss: Some(0.2),
                accuracy: Some(0.9),
                val_loss: Some(0.3),
                val_accuracy: Some(0.8),
                best_val_loss: Some(0.25),
                best_val_accuracy: Some(0.5 + i as f64 / 100.0),
                test_accuracy: Some(0.875),
                error: None,
                tags: if i == 5 {
                    vec!["best".into()]
                } else {
                    Vec::new()
                },
                notes: None,
                selection: None,
                sweep: None,
                config_yaml: yaml.into(),
            })
            .collect()
    }

    #[test]
    fn table_shows_runs_columns_and_the_side_panel() {
        let mut app = App::default();
        app.update(Msg::RunsLoaded(runs()));
        let text = screen_text(&app, 140, 20);
        assert!(
            text.contains("val acc") && text.contains("experiment") && text.contains("tags"),
            "{text}"
        );
        assert!(text.contains("0000001b"), "newest run first:\n{text}");
        assert!(
            text.contains("test accuracy") && text.contains("0.8750"),
            "{text}"
        );
        assert!(text.contains("runs 30"), "{text}");
    }

    #[test]
    fn empty_store_says_how_to_get_runs() {
        let text = screen_text(&App::default(), 80, 24);
        assert!(
            text.contains("No runs yet") && text.contains("facelab train"),
            "{text}"
        );
    }

    #[test]
    fn small_terminals_draw_without_panicking() {
        let mut app = App::default();
        app.update(Msg::RunsLoaded(runs()));
        for (w, h) in [(40, 10), (20, 5), (80, 24), (1, 1)] {
            screen_text(&app, w, h);
        }
    }
}
