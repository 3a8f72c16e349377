//! Capturing a person's face crops: the camera (or folder) preview with the detected face boxed,
//! drawn in the terminal (half-blocks over SSH), the saved count against the target, what
//! happened to the last frame, and how many frames each gate turned away.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};
use ratatui::Frame;

use super::ImageView;
use crate::tui::app::App;

pub fn render(frame: &mut Frame, app: &App, area: Rect, images: &mut ImageView) {
    let c = &app.capture;
    let [side, preview] =
        Layout::horizontal([Constraint::Length(38), Constraint::Min(0)]).areas(area);
    let [settings, gauge, last] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(side);
    let state = match (c.running, c.paused) {
        (true, true) => "paused (Space resumes)".fg(Color::Yellow),
        (true, false) => "capturing".fg(Color::Green),
        (false, _) => "stopped (Enter starts)".fg(Color::DarkGray),
    };
    let person = if c.person.is_empty() {
        "(press n to name)".to_owned()
    } else {
        c.person.clone()
    };
    let lines = vec![
        Line::from(format!("person  {person}")),
        Line::from(format!("source  {}", c.source)),
        Line::from(format!(
            "saves   facedata/train/{}/",
            if c.person.is_empty() {
                "…"
            } else {
                &c.person
            }
        )),
        Line::from(vec!["state   ".into(), state]),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" capture ")),
        settings,
    );
    let target = c.target.unwrap_or(15).max(1);
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered())
            .gauge_style(Color::Green)
            .ratio((c.tally.saved as f64 / target as f64).min(1.0))
            .label(format!("{} / {target} saved", c.tally.saved)),
        gauge,
    );
    let mut report = vec![Line::from(c.last.clone())];
    if c.tally.frames > 0 {
        report.push(Line::from(""));
        report.push(Line::from(format!(
            "{} frames, {} saved; not saved:",
            c.tally.frames, c.tally.saved
        )));
        report.extend(
            c.tally
                .rejections()
                .into_iter()
                .map(|(why, n)| Line::from(format!("  {why:<14}{n:>5}")).fg(Color::DarkGray)),
        );
    }
    frame.render_widget(
        Paragraph::new(report)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" last frame ")),
        last,
    );

    let block = Block::bordered().title(" preview ");
    let inner = block.inner(preview);
    frame.render_widget(block, preview);
    match &c.preview {
        Some((number, image)) => images.render_frame(frame, inner, *number, image),
        None => frame.render_widget(
            Paragraph::new("No frames yet. n names the person, o picks the source (camera:0, or dir:PATH for photos), Enter starts.").wrap(Wrap { trim: true }),
            inner,
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::tui::app::{App, Screen};
    use crate::tui::view::test_support::screen_text;

    #[test]
    fn capture_shows_person_counter_outcome_and_the_preview() {
        let mut app = App {
            screen: Screen::Capture,
            ..App::default()
        };
        app.capture.person = "eric".into();
        app.capture.running = true;
        app.capture.tally = facelab::capture::session::CaptureTally {
            frames: 15,
            saved: 3,
            no_face: 7,
            too_small: 5,
            ..Default::default()
        };
        app.capture.target = Some(15);
        app.capture.last = "too blurred (sharpness 9)".into();
        app.capture.preview = Some((
            1,
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 0])),
        ));
        let text = screen_text(&app, 120, 30);
        for needle in [
            "eric",
            "camera:0",
            "3 / 15 saved",
            "too blurred",
            "15 frames, 3 saved; not saved:",
            "no face           7",
            "too small         5",
            "capturing",
            "Capture",
        ] {
            assert!(text.contains(needle), "missing {needle:?}:\n{text}");
        }
        assert!(
            text.contains('▀') || text.contains('▄'),
            "preview drawn in half-blocks:\n{text}"
        );
    }
}
