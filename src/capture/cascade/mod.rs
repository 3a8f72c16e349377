//! A Viola-Jones face detector that reads OpenCV's cascade XML files (the "new" format written
//! by `opencv_traincascade`: boosted stages of HAAR stumps or trees over a fixed window, e.g.
//! `haarcascade_frontalface_default.xml`) and reproduces `CascadeClassifier::detectMultiScale`:
//! the image is scaled down by powers of the scale factor, a 24x24 window slides over each
//! level (2-pixel steps below scale 2, skipping ahead after a first-stage rejection), every
//! window is normalised by its standard deviation, and the hits are merged with OpenCV's
//! `groupRectangles` (eps 0.2, more than `min_neighbors` hits per group, small groups inside big
//! ones dropped). No crate reads these files.
//!
//! `xml` reads the file, `evaluator` runs the stages over an integral image, `grouping` is
//! OpenCV's `groupRectangles`, `imaging` the grey conversion and resize that match OpenCV's,
//! and `locate` finds (or downloads) OpenCV's frontal-face cascade.

mod evaluator;
mod grouping;
mod imaging;
mod locate;
#[cfg(test)]
mod tests;
mod xml;

use std::path::Path;

use image::GrayImage;
use serde::Serialize;

use crate::error::{Error, Result};
use evaluator::{CompiledCascade, Integral, Verdict};
pub use grouping::group_rectangles;
pub use imaging::{resize_bilinear, to_gray};
pub use locate::{find_face_cascade, obtain_face_cascade, FACE_CASCADE_FILE, FACE_CASCADE_URL};
use xml::{Feature, Stage};

/// A detection in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

impl Rect {
    pub fn area(&self) -> i64 {
        self.width as i64 * self.height as i64
    }

    /// Intersection over union with another box.
    pub fn iou(&self, other: &Rect) -> f64 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.width).min(other.x + other.width);
        let y1 = (self.y + self.height).min(other.y + other.height);
        let inter = (x1 - x0).max(0) as i64 * (y1 - y0).max(0) as i64;
        let union = self.area() + other.area() - inter;
        if union == 0 {
            0.0
        } else {
            inter as f64 / union as f64
        }
    }
}

/// `detectMultiScale`'s parameters; the defaults are the notebook's (scale 1.3, 5 neighbours).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectParams {
    pub scale_factor: f64,
    pub min_neighbors: u32,
    /// Smallest and largest face side in pixels (`None`: no limit).
    pub min_size: u32,
    pub max_size: Option<u32>,
}

impl Default for DetectParams {
    fn default() -> Self {
        DetectParams {
            scale_factor: 1.3,
            min_neighbors: 5,
            min_size: 0,
            max_size: None,
        }
    }
}

/// A loaded cascade.
#[derive(Debug, Clone)]
pub struct Cascade {
    width: u32,
    height: u32,
    stages: Vec<Stage>,
    features: Vec<Feature>,
}

impl Cascade {
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::fsutil::read_text_limited(path, crate::fsutil::limits::CASCADE)?;
        Self::parse(&text).map_err(|reason| {
            Error::InvalidArgument(format!(
                "{}: not a cascade facelab can read: {reason}",
                path.display()
            ))
        })
    }
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let (width, height, stages, features) = xml::parse_cascade(text)?;
        Ok(Cascade {
            width,
            height,
            stages,
            features,
        })
    }

    /// Faces in a grayscale image, as OpenCV's `detectMultiScale` finds them.
    pub fn detect(&self, image: &GrayImage, params: &DetectParams) -> Vec<Rect> {
        let candidates = self.detect_ungrouped(image, params);
        group_rectangles(candidates, params.min_neighbors, GROUP_EPS)
    }

    /// Every window the cascade accepts, before grouping.
    pub fn detect_ungrouped(&self, image: &GrayImage, params: &DetectParams) -> Vec<Rect> {
        let (iw, ih) = image.dimensions();
        let max_size = params.max_size.unwrap_or(iw.max(ih));
        let mut found = Vec::new();
        let mut factor = 1.0f64;
        loop {
            let win_w = round(self.width as f64 * factor);
            let win_h = round(self.height as f64 * factor);
            let scaled_w = round(iw as f64 / factor);
            let scaled_h = round(ih as f64 / factor);
            if scaled_w < self.width as i32
                || scaled_h < self.height as i32
                || win_w > max_size as i32
                || win_h > max_size as i32
            {
                break;
            }
            if win_w >= params.min_size as i32 && win_h >= params.min_size as i32 {
                let level = resize_bilinear(image, scaled_w as u32, scaled_h as u32);
                self.scan_level(&level, factor, win_w, win_h, &mut found);
            }
            factor *= params.scale_factor;
        }
        found
    }

    fn scan_level(
        &self,
        level: &GrayImage,
        factor: f64,
        win_w: i32,
        win_h: i32,
        found: &mut Vec<Rect>,
    ) {
        let integral = Integral::new(level);
        let compiled = CompiledCascade::new(self, integral.stride);
        let step = if factor >= 2.0 { 1 } else { 2 };
        let (w, h) = level.dimensions();
        // Every position where the window fits, the last one included (OpenCV's working size
        // is taken from the integral image, one larger than the level).
        let (span_x, span_y) = (
            (w + 1).saturating_sub(self.width),
            (h + 1).saturating_sub(self.height),
        );
        if span_x == 0 || span_y == 0 {
            return;
        }
        // The furthest any window reads: its bottom-right integral entry (see `Corners::sum`).
        let last_origin = (span_y as usize - 1) * integral.stride + span_x as usize - 1;
        let window_corner = self.height as usize * integral.stride + self.width as usize;
        assert!(
            last_origin + window_corner < integral.sum.len(),
            "windows stay inside the integral image"
        );
        let mut y = 0;
        while y < span_y {
            let mut x = 0;
            while x < span_x {
                match compiled.run_at(&integral, x as usize, y as usize) {
                    Verdict::Face => found.push(Rect {
                        x: round(x as f64 * factor),
                        y: round(y as f64 * factor),
                        width: win_w,
                        height: win_h,
                    }),
                    // Rejected by the first stage: the next window is very likely no face.
                    Verdict::RejectedAtFirstStage => x += step,
                    Verdict::Rejected => {}
                }
                x += step;
            }
            y += step;
        }
    }
}

const GROUP_EPS: f64 = 0.2;

/// OpenCV's `cvRound`: half away from zero is close enough to its banker's rounding here.
pub(super) fn round(v: f64) -> i32 {
    v.round() as i32
}
