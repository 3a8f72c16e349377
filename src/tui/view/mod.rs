//! Drawing the TUI: one function per screen over the [`App`] state, plus the tab bar, the
//! footer with the main keys, and the help overlay. Everything adapts to the frame size, from
//! 40x10 up; nothing here changes state except the image widget's cache.

mod capture;
mod compare;
mod detail;
mod experiments;
mod predict;
mod recognize;
mod runs;
mod sweeps;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Tabs, Wrap};
use ratatui::Frame;

pub use crate::text::short;
pub use predict::ImageView;

use super::app::{App, Prompt, Screen};

pub fn render(frame: &mut Frame, app: &App, image: &mut ImageView) {
    image.begin_frame();
    let [tabs, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_tabs(frame, app, tabs);
    match app.screen {
        Screen::Runs => runs::render(frame, app, body),
        Screen::Detail => detail::render(frame, app, body),
        Screen::Compare => compare::render(frame, app, body),
        Screen::Experiments => experiments::render(frame, app, body),
        Screen::Sweeps => sweeps::render(frame, app, body),
        Screen::Predict => predict::render(frame, app, body, image),
        Screen::Capture => capture::render(frame, app, body, image),
        Screen::Recognize => recognize::render(frame, app, body, image),
    }
    render_footer(frame, app, footer);
    if app.show_help {
        render_help(frame, app);
    }
    scrub_unsafe_text(frame.buffer_mut(), image.drawn_area());
}

/// Replaces every cell whose text would act on the terminal (a control character or a
/// bidirectional override from a label, tag, note or file name) by U+FFFD, outside the area an
/// image protocol drew in. One pass over the finished frame covers every screen and every
/// string, whichever widget drew it.
pub fn scrub_unsafe_text(buffer: &mut ratatui::buffer::Buffer, image: Option<Rect>) {
    let area = buffer.area;
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            if image.is_some_and(|r| r.contains(ratatui::layout::Position { x, y })) {
                continue;
            }
            let cell = &mut buffer[(x, y)];
            if cell.symbol().chars().any(crate::text::is_unsafe_char) {
                cell.set_symbol("\u{fffd}");
            }
        }
    }
}

fn render_tabs(frame: &mut Frame, app: &App, area: Rect) {
    let selected = match app.screen {
        Screen::Runs | Screen::Detail | Screen::Compare => 0,
        Screen::Experiments => 1,
        Screen::Sweeps => 2,
        Screen::Predict => 3,
        Screen::Capture => 4,
        Screen::Recognize => 5,
    };
    let titles = [
        "Runs",
        "Experiments",
        "Sweeps",
        "Predict",
        "Capture",
        "Recognize",
    ];
    let tabs = Tabs::new(titles)
        .select(selected)
        .highlight_style(
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        )
        .divider("|");
    let [left, right] = Layout::horizontal([Constraint::Min(0), Constraint::Length(9)]).areas(area);
    frame.render_widget(tabs, left);
    frame.render_widget(
        Paragraph::new(Span::from("facelab").bold()).right_aligned(),
        right,
    );
}

/// The main keys of the current screen, or the line being typed, or the latest status.
fn render_footer(frame: &mut Frame, app: &App, area: Rect) {
    let line = if let Some(prompt) = &app.prompt {
        prompt_line(prompt)
    } else if !app.status.is_empty() {
        Line::from(Span::from(app.status.as_str()).fg(Color::Yellow))
    } else {
        let keys = keys_for(app.screen)
            .iter()
            .take(6)
            .map(|(k, what)| format!("{k} {what}"))
            .collect::<Vec<_>>()
            .join("  ");
        Line::from(Span::from(format!("{keys}  ? help  q quit")).fg(Color::DarkGray))
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The field being typed, the cursor drawn where it is; a value that typing will replace is
/// shown reversed, as line editors mark a selection.
fn prompt_line(prompt: &Prompt) -> Line<'_> {
    let label = Span::from(prompt.field.prompt()).bold();
    let input = &prompt.input;
    if input.is_pristine() {
        return Line::from(vec![label, Span::from(input.value()).reversed()]);
    }
    let (before, after) = input.split_at_cursor();
    let mut rest = after.chars();
    let under_cursor = rest.next().map_or(" ".to_owned(), String::from);
    Line::from(vec![
        label,
        Span::from(before),
        Span::from(under_cursor).reversed(),
        Span::from(rest.as_str()),
    ])
}

/// Each screen's keys, for the footer and the help overlay.
pub fn keys_for(screen: Screen) -> &'static [(&'static str, &'static str)] {
    match screen {
        Screen::Runs => &[
            ("↑↓/jk", "move"),
            ("Enter", "open"),
            ("Space", "mark"),
            ("c", "compare marked"),
            ("/", "filter"),
            ("s", "sort"),
            ("t", "tags"),
            ("n", "notes"),
            ("d", "delete"),
            ("R", "edit config, run again"),
            ("Tab", "next screen"),
        ],
        Screen::Detail => &[
            ("R", "edit config, run again"),
            ("Esc", "back"),
            ("Tab", "next screen"),
        ],
        Screen::Compare => &[
            ("a", "all keys / differing keys"),
            ("Esc", "back"),
            ("Tab", "next screen"),
        ],
        Screen::Experiments => &[
            ("↑↓/jk", "move"),
            ("Enter", "start a run (a sweep file: the sweep)"),
            ("e", "edit in $EDITOR"),
            ("x", "cancel the run"),
            ("Esc", "back"),
            ("Tab", "next screen"),
        ],
        Screen::Sweeps => &[
            ("↑↓/jk", "trial"),
            ("←→/hl", "sweep"),
            ("Enter", "open the trial's run"),
            ("x", "stop the sweep"),
            ("Esc", "back"),
            ("Tab", "next screen"),
        ],
        Screen::Predict => &[
            ("↑↓/jk", "move"),
            ("Enter", "predict"),
            ("r", "random test image"),
            ("p", "type a path"),
            ("Esc", "back"),
            ("Tab", "next screen"),
        ],
        Screen::Capture => &[
            ("n", "person"),
            ("o", "source"),
            ("Enter", "start"),
            ("Space", "pause / resume"),
            ("s", "skip a frame"),
            ("x", "stop"),
            ("Esc", "back"),
            ("Tab", "next screen"),
        ],
        Screen::Recognize => &[
            ("o", "source"),
            ("Enter", "start"),
            ("Space", "pause / resume"),
            ("s", "save the frame"),
            ("Esc", "stop, then back"),
            ("Tab", "next screen"),
        ],
    }
}

fn render_help(frame: &mut Frame, app: &App) {
    let keys = keys_for(app.screen);
    let area = centered(frame.area(), 52, keys.len() as u16 + 6);
    let mut lines: Vec<Line> = keys
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::from(format!("{k:>8}  ")).bold(),
                Span::from(*what),
            ])
        })
        .collect();
    lines.push(Line::from(vec![
        Span::from(format!("{:>8}  ", "?")).bold(),
        Span::from("this help"),
    ]));
    lines.push(Line::from(vec![
        Span::from(format!("{:>8}  ", "q")).bold(),
        Span::from("quit"),
    ]));
    lines.push(Line::from(
        Span::from("any key closes this").fg(Color::DarkGray),
    ));
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(" keys "))
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// A bordered list whose selected row is highlighted, as every list screen shows it.
pub fn selectable_list<'a>(
    items: Vec<ratatui::widgets::ListItem<'a>>,
    title: impl Into<Line<'a>>,
) -> ratatui::widgets::List<'a> {
    ratatui::widgets::List::new(items)
        .block(Block::bordered().title(title))
        .highlight_style(
            Style::new()
                .bg(Color::DarkGray)
                .add_modifier(Modifier::BOLD),
        )
        .highlight_symbol("> ")
}

/// A rectangle of at most `width` x `height` in the middle of `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// `0.1234` or `-` for a missing figure.
pub fn fmt4(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

pub fn fmt_duration(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 60.0 => format!("{s:.1}s"),
        Some(s) if s < 3600.0 => format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64),
        Some(s) => format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        ),
    }
}

#[cfg(test)]
pub mod test_support {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;

    /// Renders `app` on a `width` x `height` test terminal and returns the screen as text.
    pub fn screen_text(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let mut image = ImageView::for_tests();
        terminal.draw(|f| render(f, app, &mut image)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::screen_text;
    use crate::tui::app::experiments::JobView;
    use crate::tui::app::{App, Msg, RunDetail, Screen};

    const EVERY_SCREEN: [Screen; 6] = [
        Screen::Runs,
        Screen::Detail,
        Screen::Compare,
        Screen::Experiments,
        Screen::Predict,
        Screen::Capture,
    ];

    fn busy_app() -> App {
        let mut app = App::default();
        let run =
            facelab::store::fixtures::finished_run("abcd1234", "seed", 0.9, "2026-11-29T07:00:00Z");
        app.update(Msg::RunsLoaded(vec![run.clone()]));
        app.update(Msg::DetailLoaded(Box::new(RunDetail {
            run: run.clone(),
            epochs: Vec::new(),
            confusion: None,
            open_set: None,
        })));
        app.update(Msg::CompareLoaded(vec![
            RunDetail {
                run: run.clone(),
                epochs: Vec::new(),
                confusion: None,
                open_set: None,
            };
            2
        ]));
        app.experiments.files = vec!["experiments/seed.yaml".into()];
        let mut job = JobView::new("experiments/seed.yaml".into());
        job.features = (3, 10);
        app.experiments.job = Some(job);
        app.capture.person = "eric".into();
        app.capture.running = true;
        app.capture.preview = Some((1, image::RgbImage::new(32, 24)));
        app.predict.run_id = Some("abcd1234".into());
        app
    }

    #[test]
    fn every_screen_draws_at_any_size_without_panicking() {
        let mut app = busy_app();
        for screen in EVERY_SCREEN {
            app.screen = screen;
            for help in [false, true] {
                app.show_help = help;
                for (w, h) in [(40, 10), (10, 4), (1, 1), (80, 24), (200, 60)] {
                    screen_text(&app, w, h);
                }
            }
        }
    }

    #[test]
    fn text_from_data_never_reaches_the_terminal_as_control_sequences() {
        let mut app = busy_app();
        let hostile = "\x1b]0;pwned\x07\x1b[2J\r\u{8}\u{202e}evil";
        let mut run = app.runs.all[0].clone();
        run.experiment = hostile.into();
        run.tags = vec![hostile.into()];
        run.notes = Some(hostile.into());
        app.update(Msg::RunsLoaded(vec![run]));
        app.status = hostile.into();
        for screen in EVERY_SCREEN {
            app.screen = screen;
            let text = screen_text(&app, 160, 40);
            assert!(
                !text
                    .lines()
                    .any(|l| l.chars().any(crate::text::is_unsafe_char)),
                "{screen:?} lets a control character through:\n{text:?}"
            );
        }
    }

    #[test]
    fn help_lists_the_keys_of_the_current_screen_and_the_footer_the_main_ones() {
        let mut app = busy_app();
        app.screen = Screen::Runs;
        let footer = screen_text(&app, 120, 30);
        assert!(
            footer.contains("Enter open") && footer.contains("? help") && footer.contains("q quit"),
            "{footer}"
        );
        app.show_help = true;
        let help = screen_text(&app, 120, 30);
        assert!(
            help.contains(" keys ") && help.contains("delete") && help.contains("compare marked"),
            "{help}"
        );
        app.screen = Screen::Experiments;
        assert!(screen_text(&app, 120, 30).contains("cancel the run"));
        app.show_help = false;
        assert!(screen_text(&app, 120, 30).contains("features 3/10"));
    }
}
