//! The live loop over a frame source: open it (on this thread, as cameras need), pace it to at
//! most `fps` frames per second, name each frame's faces, hand every result on, start a folder
//! over when asked to loop, and stop when told to between frames.

use std::time::{Duration, Instant};

use image::RgbImage;

use super::{FrameResult, Recognizer};
use crate::capture::source::SourceSpec;
use crate::error::{Error, Result};

/// How to play a source.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StreamOptions {
    /// At most this many frames per second (`None`: as fast as they come).
    pub fps: Option<f64>,
    /// Start a folder over when its images are used up.
    pub repeat: bool,
}

/// Plays `spec` through `recognizer` until the source ends or `on_frame` returns `false`
/// (the caller was told to stop). Returns the number of frames recognised.
pub fn stream(
    spec: &SourceSpec,
    recognizer: &mut Recognizer,
    options: StreamOptions,
    mut on_frame: impl FnMut(&RgbImage, FrameResult) -> bool,
) -> Result<u64> {
    let period = options
        .fps
        .filter(|f| f.is_finite() && *f > 0.0)
        .map(|f| Duration::from_secs_f64(1.0 / f));
    let mut frames = 0u64;
    let mut next_due = Instant::now();
    loop {
        let mut source = spec.open()?;
        let mut from_this_pass = 0u64;
        while let Some(frame) = source.next_frame()? {
            if let Some(period) = period {
                let now = Instant::now();
                if next_due > now {
                    std::thread::sleep(next_due - now);
                }
                next_due = next_due.max(now) + period;
            }
            let origin = match spec {
                SourceSpec::Camera(_) => spec.to_string(),
                SourceSpec::Folder(_) => frame.origin.clone(),
            };
            let result = recognizer.recognize(&frame.image, &origin);
            frames += 1;
            from_this_pass += 1;
            if !on_frame(&frame.image, result) {
                return Ok(frames);
            }
        }
        if from_this_pass == 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: no readable images to play; give a folder of photos (dir:PATH) or a camera (camera:0)",
                source.describe()
            )));
        }
        if !options.repeat {
            return Ok(frames);
        }
    }
}
