//! The experiment files and the background run started from one: a progress gauge (features,
//! then epochs), epoch rows as they finish, and how it ended.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Gauge, ListItem, ListState, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::{fmt4, selectable_list};
use crate::tui::app::App;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let [list, job] =
        Layout::horizontal([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(area);
    let items: Vec<ListItem> = app
        .experiments
        .files
        .iter()
        .map(|p| ListItem::new(p.display().to_string()))
        .collect();
    let empty = items.is_empty();
    let widget = selectable_list(items, " experiments/*.yaml ");
    let mut state =
        ListState::default().with_selected((!empty).then_some(app.experiments.selected));
    frame.render_stateful_widget(widget, list, &mut state);
    if empty {
        let hint =
            Paragraph::new("No experiment files. Add experiments/NAME.yaml (see the README).");
        frame.render_widget(
            hint,
            Rect::new(list.x + 2, list.y + 1, list.width.saturating_sub(4), 2),
        );
    }

    let Some(j) = &app.experiments.job else {
        frame.render_widget(
            Paragraph::new("Enter starts a run of the selected experiment in the background.")
                .block(Block::bordered().title(" run ")),
            job,
        );
        return;
    };
    let [head, gauge, rows] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(job);
    let mut lines = vec![Line::from(format!(
        "{}  run {}",
        j.experiment.display(),
        j.run_id.as_deref().unwrap_or("(extracting features)")
    ))];
    match &j.outcome {
        None => lines.push(Line::from("running… x cancels").fg(Color::Cyan)),
        Some(Ok(msg)) => lines.push(Line::from(msg.clone()).fg(Color::Green)),
        Some(Err(msg)) => lines.push(Line::from(msg.clone()).fg(Color::Red)),
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" run ")),
        head,
    );
    let (ratio, label) = if j.run_id.is_none() {
        let (done, total) = j.features;
        (
            if total > 0 {
                done as f64 / total as f64
            } else {
                0.0
            },
            format!("features {done}/{total}"),
        )
    } else {
        let done = j.epochs.len();
        let total = j.total_epochs.max(1);
        (done as f64 / total as f64, format!("epoch {done}/{total}"))
    };
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered())
            .gauge_style(Color::Cyan)
            .ratio(ratio.clamp(0.0, 1.0))
            .label(label),
        gauge,
    );
    let table_rows = j.epochs.iter().map(|m| {
        Row::new([
            m.epoch.to_string(),
            format!("{:.4}", m.loss),
            format!("{:.4}", m.accuracy),
            fmt4(m.val_loss),
            fmt4(m.val_accuracy),
            format!("{:.2}s", m.seconds),
        ])
    });
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new(["epoch", "loss", "accuracy", "val_loss", "val_acc", "time"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(" epochs "));
    frame.render_widget(table, rows);
}

#[cfg(test)]
mod tests {
    use crate::tui::app::experiments::JobView;
    use crate::tui::app::{App, Screen};
    use crate::tui::view::test_support::screen_text;
    use facelab::train::EpochMetrics;

    #[test]
    fn a_running_job_shows_its_gauge_and_epoch_rows() {
        let mut app = App {
            screen: Screen::Experiments,
            ..App::default()
        };
        app.experiments.files = vec![
            "experiments/seed.yaml".into(),
            "experiments/recommended.yaml".into(),
        ];
        app.experiments.job = Some(JobView {
            experiment: "experiments/seed.yaml".into(),
            run_id: Some("feed0001".into()),
            features: (60, 60),
            total_epochs: 3,
            epochs: vec![EpochMetrics {
                epoch: 1,
                loss: 0.5,
                accuracy: 0.8,
                val_loss: Some(0.4),
                val_accuracy: Some(0.9),
                seconds: 0.3,
            }],
            outcome: None,
        });
        let text = screen_text(&app, 120, 30);
        for needle in [
            "recommended.yaml",
            "feed0001",
            "epoch 1/3",
            "0.9000",
            "x cancels",
        ] {
            assert!(text.contains(needle), "missing {needle:?}:\n{text}");
        }
        app.experiments.job.as_mut().unwrap().outcome =
            Some(Err("error: bad.yaml:3: train.batch_size: 0".into()));
        assert!(screen_text(&app, 120, 30).contains("train.batch_size"));
    }
}
