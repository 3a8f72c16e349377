//! Live recognition: the camera (or folder) picture in the terminal (half-blocks over SSH,
//! graphics protocols where the terminal answers) with each face boxed, green when named and
//! red when unknown; beside it the run and source, frames per second, and who is in view.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use super::ImageView;
use crate::tui::app::App;

pub fn render(frame: &mut Frame, app: &App, area: Rect, images: &mut ImageView) {
    let r = &app.recognize;
    let [side, picture] =
        Layout::horizontal([Constraint::Length(38), Constraint::Min(0)]).areas(area);
    let [settings, in_view] =
        Layout::vertical([Constraint::Length(6), Constraint::Min(0)]).areas(side);
    let state = match (r.running, r.paused) {
        (true, true) => "paused (Space resumes)".fg(Color::Yellow),
        (true, false) => "recognising".fg(Color::Green),
        (false, _) => "stopped (Enter starts)".fg(Color::DarkGray),
    };
    let lines = vec![
        Line::from(format!(
            "run     {}",
            r.run.as_deref().unwrap_or("(select one on Runs)")
        )),
        Line::from(format!("source  {}", r.source)),
        Line::from(vec!["state   ".into(), state]),
        Line::from(format!("fps     {:.1}  ({} frames)", r.fps, r.frames)),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" recognize ")),
        settings,
    );
    let mut people: Vec<Line> = if r.faces.is_empty() {
        vec![Line::from("nobody").fg(Color::DarkGray)]
    } else {
        r.faces
            .iter()
            .map(|f| {
                let (name, colour) = match &f.label {
                    Some(label) => (label.as_str(), Color::Green),
                    None => ("unknown", Color::Red),
                };
                Line::from(vec![
                    Span::from("■ ").fg(colour),
                    Span::from(format!("{name:<16}")).bold(),
                    Span::from(format!(" {:.2}  track {}", f.confidence, f.track)),
                ])
            })
            .collect()
    };
    if !r.last.is_empty() {
        people.push(Line::from(""));
        people.push(Line::from(r.last.clone()).fg(Color::DarkGray));
    }
    frame.render_widget(
        Paragraph::new(people)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" in view ")),
        in_view,
    );
    let block = Block::bordered().title(" picture ");
    let inner = block.inner(picture);
    frame.render_widget(block, picture);
    match &r.preview {
        Some((number, image)) => images.render_frame(frame, inner, *number, image),
        None => frame.render_widget(
            Paragraph::new(
                "No frames yet. o picks the source (camera:0, or dir:PATH to play a folder of photos), Enter starts with the run selected on the Runs screen.",
            )
            .wrap(Wrap { trim: true }),
            inner,
        ),
    }
}

#[cfg(test)]
mod tests {
    use facelab::recognize::FaceResult;

    use crate::tui::app::{App, Screen};
    use crate::tui::view::test_support::screen_text;

    fn face(label: Option<&str>, track: u64) -> FaceResult {
        FaceResult {
            rect: [10, 10, 40, 40],
            predicted: label.map(str::to_owned),
            label: label.map(str::to_owned),
            confidence: 0.93,
            unknown: label.is_none(),
            track,
            reused_features: false,
        }
    }

    #[test]
    fn recognize_shows_the_run_the_rate_who_is_in_view_and_the_picture() {
        let mut app = App {
            screen: Screen::Recognize,
            ..App::default()
        };
        app.recognize.run = Some("abcd1234".into());
        app.recognize.running = true;
        app.recognize.fps = 14.8;
        app.recognize.frames = 30;
        app.recognize.faces = vec![face(Some("Eric"), 1), face(None, 2)];
        app.recognize.preview = Some((
            30,
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 0])),
        ));
        let text = screen_text(&app, 120, 30);
        for needle in [
            "abcd1234",
            "camera:0",
            "recognising",
            "fps     14.8  (30 frames)",
            "Eric",
            "0.93  track 1",
            "unknown",
            "track 2",
            "Recognize",
        ] {
            assert!(text.contains(needle), "missing {needle:?}:\n{text}");
        }
        assert!(
            text.contains('▀') || text.contains('▄'),
            "picture in half-blocks:\n{text}"
        );
    }

    #[test]
    fn recognize_draws_at_any_size() {
        let mut app = App {
            screen: Screen::Recognize,
            ..App::default()
        };
        app.recognize.faces = vec![face(Some("a very long display name indeed"), 1)];
        app.recognize.preview = Some((1, image::RgbImage::new(32, 24)));
        for (w, h) in [(1, 1), (10, 3), (40, 12), (200, 60)] {
            screen_text(&app, w, h);
        }
    }
}
