//! Marked runs side by side: the config keys that differ (`a` shows all), their validation
//! curves overlaid, and their final figures in one table with the best of each highlighted.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Cell, Row, Table};
use ratatui::Frame;

use super::detail::{render_curves, Curve};
use super::fmt4;
use crate::tui::app::App;
use facelab::config::{differing_keys, flatten_yaml};
use facelab::train::EpochMetrics;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let runs = &app.compare.runs;
    let [configs, curves, figures] = Layout::vertical([
        Constraint::Percentage(35),
        Constraint::Percentage(40),
        Constraint::Percentage(25),
    ])
    .areas(area);

    let flat: Vec<_> = runs
        .iter()
        .map(|d| flatten_yaml(&d.run.config_yaml))
        .collect();
    let keys = if app.compare.all_keys {
        flat.iter()
            .flat_map(|c| c.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        differing_keys(&flat)
    };
    let header = Row::new(
        std::iter::once("config key".to_owned()).chain(runs.iter().map(|d| d.run.id.clone())),
    )
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = keys.iter().map(|k| {
        Row::new(
            std::iter::once(k.clone()).chain(
                flat.iter()
                    .map(|c| c.get(k).cloned().unwrap_or_else(|| "-".into())),
            ),
        )
    });
    let widths: Vec<Constraint> = std::iter::once(Constraint::Length(28))
        .chain(runs.iter().map(|_| Constraint::Min(10)))
        .collect();
    let title = match (app.compare.all_keys, keys.is_empty()) {
        (true, _) => " config (all keys; a: only differing) ",
        (false, true) => " the configs are identical (a: show all keys) ",
        (false, false) => " config keys that differ (a: all) ",
    };
    frame.render_widget(
        Table::new(rows, widths.clone())
            .header(header.clone())
            .block(Block::bordered().title(title)),
        configs,
    );

    let [loss, acc] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(curves);
    let val_loss: Vec<Curve> = runs
        .iter()
        .map(|d| {
            (
                d.run.id.as_str(),
                d.epochs.as_slice(),
                (|m: &EpochMetrics| m.val_loss) as fn(&EpochMetrics) -> Option<f64>,
            )
        })
        .collect();
    let val_acc: Vec<Curve> = runs
        .iter()
        .map(|d| {
            (
                d.run.id.as_str(),
                d.epochs.as_slice(),
                (|m: &EpochMetrics| m.val_accuracy) as fn(&EpochMetrics) -> Option<f64>,
            )
        })
        .collect();
    render_curves(frame, loss, " val_loss ", &val_loss);
    render_curves(frame, acc, " val_accuracy ", &val_acc);

    // (name, value per run, whether higher is better)
    let metrics: [(&str, Vec<Option<f64>>, bool); 5] = [
        (
            "test accuracy",
            runs.iter().map(|d| d.run.test_accuracy).collect(),
            true,
        ),
        (
            "best val accuracy",
            runs.iter().map(|d| d.run.best_val_accuracy).collect(),
            true,
        ),
        (
            "best val loss",
            runs.iter().map(|d| d.run.best_val_loss).collect(),
            false,
        ),
        (
            "final loss",
            runs.iter().map(|d| d.run.loss).collect(),
            false,
        ),
        (
            "epochs",
            runs.iter().map(|d| Some(d.run.epochs as f64)).collect(),
            false,
        ),
    ];
    let rows = metrics.iter().map(|(name, values, higher)| {
        let best = values
            .iter()
            .flatten()
            .copied()
            .fold(None, |acc: Option<f64>, v| match acc {
                Some(b) if (*higher && b >= v) || (!*higher && b <= v) => Some(b),
                _ => Some(v),
            });
        let cells = values.iter().map(|v| {
            let text = match v {
                Some(x) if x.fract() == 0.0 && *name == "epochs" => format!("{x:.0}"),
                _ => fmt4(*v),
            };
            let cell = Cell::from(text);
            if v.is_some() && *v == best && runs.len() > 1 {
                cell.style(Style::new().fg(Color::Green).add_modifier(Modifier::BOLD))
            } else {
                cell
            }
        });
        Row::new(std::iter::once(Cell::from(*name)).chain(cells))
    });
    let header =
        Row::new(std::iter::once("metric".to_owned()).chain(runs.iter().map(|d| d.run.id.clone())))
            .style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" final figures (best in green) ")),
        figures,
    );
}

#[cfg(test)]
mod tests {
    use crate::tui::app::{App, Msg, RunDetail};
    use crate::tui::view::test_support::screen_text;

    #[test]
    fn compare_shows_differing_keys_both_runs_and_legends() {
        let mut a =
            facelab::store::fixtures::finished_run("aaaa1111", "seed", 0.5, "2026-11-29T07:00:00Z");
        a.config_yaml = "name: seed\ntrain:\n  epochs: 3\n  seed: 42\n".into();
        let mut b =
            facelab::store::fixtures::finished_run("bbbb2222", "seed", 0.9, "2026-11-29T08:00:00Z");
        b.config_yaml = "name: seed\ntrain:\n  epochs: 30\n  seed: 42\n".into();
        let mut app = App::default();
        app.update(Msg::CompareLoaded(vec![
            RunDetail {
                run: a,
                epochs: Vec::new(),
                confusion: None,
                open_set: None,
            },
            RunDetail {
                run: b,
                epochs: Vec::new(),
                confusion: None,
                open_set: None,
            },
        ]));
        let text = screen_text(&app, 120, 40);
        assert!(
            text.contains("train.epochs") && text.contains("30"),
            "{text}"
        );
        assert!(
            !text.contains("train.seed"),
            "equal keys are hidden:\n{text}"
        );
        assert!(
            text.contains("aaaa1111")
                && text.contains("bbbb2222")
                && text.contains("test accuracy"),
            "{text}"
        );
        app.compare.all_keys = true;
        assert!(screen_text(&app, 120, 40).contains("train.seed"));
    }
}
