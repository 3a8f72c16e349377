//! Predicting one image with the selected run: the test images to pick from, the image itself
//! in the terminal (sixel, kitty or iTerm2 where the terminal has them, half-blocks otherwise,
//! which work over any SSH session), the predicted and true names, and the top probabilities.

use std::path::{Path, PathBuf};

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, ListItem, ListState, Paragraph};
use ratatui::Frame;
use ratatui_image::picker::Picker;
use ratatui_image::protocol::StatefulProtocol;
use ratatui_image::StatefulImage;

use super::{selectable_list, short};
use crate::text::LABEL_WIDTH;
use crate::tui::app::App;

/// The terminal's image protocol and the image being shown, kept between frames.
pub struct ImageView {
    picker: Picker,
    current: Option<(PathBuf, StatefulProtocol)>,
    /// The capture preview, by frame number.
    live: Option<(u64, StatefulProtocol)>,
    /// Where an image was drawn in this frame: a graphics protocol's escape sequences live in
    /// those cells, so the scrub of data text ([`super::scrub_unsafe_text`]) leaves them be.
    drawn: Option<Rect>,
}

impl ImageView {
    pub fn new(picker: Picker) -> Self {
        ImageView {
            picker,
            current: None,
            live: None,
            drawn: None,
        }
    }

    /// Called before a frame is drawn.
    pub fn begin_frame(&mut self) {
        self.drawn = None;
    }

    pub fn drawn_area(&self) -> Option<Rect> {
        self.drawn
    }

    /// Draws capture frame `number` into `area`.
    pub fn render_frame(
        &mut self,
        frame: &mut Frame,
        area: Rect,
        number: u64,
        image: &image::RgbImage,
    ) {
        let state = self.state_for_frame(number, image);
        frame.render_stateful_widget(StatefulImage::default(), area, state);
        self.drawn = Some(area);
    }

    /// Draws the image at `path` into `area`; false when it cannot be decoded.
    fn render_file(&mut self, frame: &mut Frame, area: Rect, path: &Path) -> bool {
        let Some(state) = self.state_for(path) else {
            return false;
        };
        frame.render_stateful_widget(StatefulImage::default(), area, state);
        self.drawn = Some(area);
        true
    }

    #[cfg(test)]
    pub fn for_tests() -> Self {
        Self::new(Picker::halfblocks())
    }

    /// The protocol state for capture frame `number`, encoding it when a new frame arrives.
    fn state_for_frame(&mut self, number: u64, frame: &image::RgbImage) -> &mut StatefulProtocol {
        if self.live.as_ref().map(|(n, _)| *n) != Some(number) {
            let image = image::DynamicImage::ImageRgb8(frame.clone());
            self.live = Some((number, self.picker.new_resize_protocol(image)));
        }
        &mut self.live.as_mut().expect("set above").1
    }

    /// The protocol state for `path`, decoding the image when it changes.
    fn state_for(&mut self, path: &Path) -> Option<&mut StatefulProtocol> {
        if self.current.as_ref().map(|(p, _)| p.as_path()) != Some(path) {
            let image = image::DynamicImage::ImageRgb8(facelab::image_prep::load(path).ok()?);
            self.current = Some((path.to_owned(), self.picker.new_resize_protocol(image)));
        }
        self.current.as_mut().map(|(_, state)| state)
    }
}

pub fn render(frame: &mut Frame, app: &App, area: Rect, images: &mut ImageView) {
    let p = &app.predict;
    let [list_area, right] =
        Layout::horizontal([Constraint::Percentage(30), Constraint::Percentage(70)]).areas(area);
    let title = match &p.run_id {
        Some(id) => format!(" test images · run {id} "),
        None => " no run selected ".into(),
    };
    let items: Vec<ListItem> = p
        .images
        .iter()
        .map(|path| ListItem::new(short_path(path)))
        .collect();
    let list = selectable_list(items, title);
    let mut state =
        ListState::default().with_selected((!p.images.is_empty()).then_some(p.selected));
    frame.render_stateful_widget(list, list_area, &mut state);

    let [picture, text] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(9)]).areas(right);
    let block = Block::bordered().title(
        p.shown
            .as_deref()
            .map_or(" image ".into(), |s| format!(" {} ", short_path(s))),
    );
    let inner = block.inner(picture);
    frame.render_widget(block, picture);
    if let Some(path) = &p.shown {
        images.render_file(frame, inner, path);
    }
    frame.render_widget(
        Paragraph::new(prediction_lines(app, text.width))
            .block(Block::bordered().title(" prediction ")),
        text,
    );
}

fn prediction_lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let p = &app.predict;
    if p.run_id.is_none() {
        return vec![Line::from(
            "Select a finished run on the Runs screen, then come back (Tab).",
        )];
    }
    if p.pending {
        return vec![Line::from("predicting…").fg(Color::Cyan)];
    }
    match &p.result {
        None => vec![Line::from(
            "Enter predicts the selected image; r a random one; p types a path.",
        )],
        Some(Err(e)) => vec![Line::from(e.clone()).fg(Color::Red)],
        Some(Ok(pred)) => {
            let truth = pred
                .path
                .parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            let verdict = match &truth {
                Some(t) if pred.predicted.as_ref() == Some(t) => {
                    Span::from("  ✓ correct").fg(Color::Green)
                }
                Some(_) => Span::from("  ✗ wrong").fg(Color::Red),
                None => Span::from(""),
            };
            let mut lines = vec![
                Line::from(vec![
                    Span::from("predicted ").fg(Color::DarkGray),
                    Span::from(pred.shown_label().to_owned()).bold(),
                    Span::from(format!("  {:.1}%", pred.confidence * 100.0)),
                    Span::from(match pred.threshold {
                        Some(t) => format!("  score {:.3} / threshold {t:.3}", pred.score),
                        None => String::new(),
                    })
                    .fg(Color::DarkGray),
                    verdict,
                ]),
                Line::from(vec![
                    Span::from("true      ").fg(Color::DarkGray),
                    Span::from(truth.unwrap_or_else(|| "unknown".into())),
                ]),
            ];
            let bar_width = width.saturating_sub(30).max(5) as f64;
            for (label, prob) in pred.ranking.iter().take(5) {
                let bar = "█".repeat((prob * bar_width).round() as usize);
                lines.push(Line::from(vec![
                    Span::from(format!(
                        "{:<w$} {:>5.1}% ",
                        short(label, LABEL_WIDTH),
                        prob * 100.0,
                        w = LABEL_WIDTH
                    )),
                    Span::from(bar).fg(Color::Cyan),
                ]));
            }
            lines
        }
    }
}

/// `person/file` for an image under a person folder.
fn short_path(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    match path.parent().and_then(|d| d.file_name()) {
        Some(dir) => format!("{}/{file}", dir.to_string_lossy()),
        None => file,
    }
}

#[cfg(test)]
mod tests {
    use crate::tui::app::{App, Screen};
    use crate::tui::view::test_support::screen_text;
    use facelab::predict::Prediction;

    #[test]
    fn prediction_shows_names_image_and_probability_bars() {
        let dir = tempfile::tempdir().unwrap();
        let img_path = dir.path().join("s02").join("13.png");
        std::fs::create_dir_all(img_path.parent().unwrap()).unwrap();
        image::RgbImage::from_fn(32, 32, |x, y| {
            image::Rgb([(x * 8) as u8, (y * 8) as u8, 90])
        })
        .save(&img_path)
        .unwrap();
        let mut app = App {
            screen: Screen::Predict,
            ..App::default()
        };
        app.predict.run_id = Some("abcd1234".into());
        app.predict.images = vec![img_path.clone()];
        app.predict.shown = Some(img_path.clone());
        app.predict.result = Some(Ok(Prediction {
            path: img_path,
            predicted: Some("s02".into()),
            label: Some("Maria".into()),
            confidence: 0.93,
            score: 0.93,
            threshold: Some(0.5),
            unknown: false,
            ranking: vec![("Maria".into(), 0.93), ("Eric".into(), 0.07)],
        }));
        let text = screen_text(&app, 120, 36);
        for needle in [
            "s02/13.png",
            "Maria",
            "93.0%",
            "correct",
            "Eric",
            "█",
            "threshold 0.500",
        ] {
            assert!(text.contains(needle), "missing {needle:?}:\n{text}");
        }
        assert!(
            text.contains('▀') || text.contains('▄'),
            "the image is drawn in half-blocks:\n{text}"
        );
    }
}
