//! A capture session: for each frame, find the largest face, check it (big enough, sharp enough,
//! not a near-copy of one already saved for this person, not too soon after the last save),
//! crop it, resize it to 224x224 and save it as a JPEG under `facedata/<split>/<person>/` with a
//! name that never overwrites another file.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;

use super::cascade::{to_gray, Cascade, DetectParams, Rect};
use super::quality::{laplacian_variance, Thumbnail};
use super::source::SourceSpec;
use crate::dataset;
use crate::error::{Error, Result};

/// Side of the saved crops, the backbone's input size.
pub const CROP_SIZE: u32 = 224;

/// Where the saved crops go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SplitChoice {
    Train,
    Test,
    /// This fraction of the crops, spread evenly through the session, goes to `test/`.
    TestFraction(f64),
}

impl std::str::FromStr for SplitChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "train" => Ok(SplitChoice::Train),
            "test" => Ok(SplitChoice::Test),
            other => match other.parse::<f64>() {
                Ok(f) if (0.0..=1.0).contains(&f) => Ok(SplitChoice::TestFraction(f)),
                _ => Err(format!(
                    "split '{other}': use train, test, or a test fraction between 0 and 1"
                )),
            },
        }
    }
}

/// Time between two saves from a camera by default, so the crops differ.
pub const CAMERA_INTERVAL: Duration = Duration::from_millis(300);

/// A session's settings; the defaults are the notebook's (15 crops) with gates users expect.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSettings {
    pub person: String,
    /// Stop after this many saved crops (`None`: until the source runs out).
    pub count: Option<usize>,
    pub split: SplitChoice,
    /// At least this long between two saves, so the crops differ.
    pub interval: Duration,
    /// Faces smaller than this (side, pixels) are skipped.
    pub min_face: u32,
    /// Crops whose Laplacian variance is below this are too blurred (0 turns the gate off).
    pub min_sharpness: f64,
    /// Crops closer than this (mean grey-level difference of thumbnails) to a saved one are
    /// near-duplicates (0 turns the gate off).
    pub duplicate_distance: f32,
    pub detect: DetectParams,
}

impl CaptureSettings {
    /// The defaults for capturing `person` from `source`: photos in a folder are different
    /// moments already, while a camera needs time between saves.
    pub fn for_source(person: &str, source: &SourceSpec) -> Self {
        CaptureSettings {
            person: person.to_owned(),
            count: Some(15),
            split: SplitChoice::Train,
            interval: if source.is_camera() {
                CAMERA_INTERVAL
            } else {
                Duration::ZERO
            },
            min_face: 80,
            min_sharpness: 15.0,
            duplicate_distance: 3.0,
            detect: DetectParams::default(),
        }
    }
}

/// What happened to one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameOutcome {
    Saved {
        path: PathBuf,
        face: Rect,
    },
    NoFace,
    TooSmall {
        face: Rect,
    },
    Blurry {
        face: Rect,
        sharpness: f64,
    },
    Duplicate {
        face: Rect,
    },
    TooSoon {
        face: Rect,
    },
    /// The target count is reached; nothing more is saved.
    Done,
}

impl FrameOutcome {
    /// The face the frame was judged on, if any (to draw its box).
    pub fn face(&self) -> Option<Rect> {
        match self {
            FrameOutcome::Saved { face, .. }
            | FrameOutcome::TooSmall { face }
            | FrameOutcome::Blurry { face, .. }
            | FrameOutcome::Duplicate { face }
            | FrameOutcome::TooSoon { face } => Some(*face),
            FrameOutcome::NoFace | FrameOutcome::Done => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            FrameOutcome::Saved { path, .. } => format!("saved {}", path.display()),
            FrameOutcome::NoFace => "no face".into(),
            FrameOutcome::TooSmall { face } => format!("face too small ({} px)", face.width),
            FrameOutcome::Blurry { sharpness, .. } => {
                format!("too blurred (sharpness {sharpness:.0})")
            }
            FrameOutcome::Duplicate { .. } => "too like a saved crop".into(),
            FrameOutcome::TooSoon { .. } => "waiting between saves".into(),
            FrameOutcome::Done => "done".into(),
        }
    }
}

/// What a session did with its frames: how many it saved and how many each gate turned away,
/// so a user whose 15 photos gave 2 crops sees why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureTally {
    pub frames: usize,
    pub saved: usize,
    pub no_face: usize,
    pub too_small: usize,
    pub blurry: usize,
    pub duplicate: usize,
    pub too_soon: usize,
}

impl CaptureTally {
    fn count(&mut self, outcome: &FrameOutcome) {
        let gate = match outcome {
            FrameOutcome::Saved { .. } => &mut self.saved,
            FrameOutcome::NoFace => &mut self.no_face,
            FrameOutcome::TooSmall { .. } => &mut self.too_small,
            FrameOutcome::Blurry { .. } => &mut self.blurry,
            FrameOutcome::Duplicate { .. } => &mut self.duplicate,
            FrameOutcome::TooSoon { .. } => &mut self.too_soon,
            FrameOutcome::Done => return,
        };
        *gate += 1;
        self.frames += 1;
    }

    /// The gates that turned frames away, with how many each: those that turned none away
    /// are left out.
    pub fn rejections(&self) -> Vec<(&'static str, usize)> {
        [
            ("no face", self.no_face),
            ("too small", self.too_small),
            ("blurry", self.blurry),
            ("duplicate", self.duplicate),
            ("between saves", self.too_soon),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }

    /// `15 frames: 2 saved, 6 no face, 4 too small, 3 blurry`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("{} saved", self.saved)];
        parts.extend(
            self.rejections()
                .iter()
                .map(|(what, n)| format!("{n} {what}")),
        );
        format!("{} frames: {}", self.frames, parts.join(", "))
    }
}

/// Longest person name, in characters.
const MAX_PERSON_NAME: usize = 100;

/// A person's folder name as typed, checked and normalised: letters (any script), digits,
/// spaces, `-` and `_` only, at most 100 characters, trimmed and in Unicode NFC, so `é` typed
/// as one character or as `e` plus an accent is one person, and no name can leave
/// `facedata/` or carry control characters.
pub fn person_name(name: &str) -> Result<String> {
    use unicode_normalization::UnicodeNormalization;
    let normalized: String = name.trim().nfc().collect();
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_');
    let bad = normalized.is_empty()
        || !normalized.chars().all(allowed)
        || normalized.chars().count() > MAX_PERSON_NAME;
    if bad {
        return Err(Error::InvalidArgument(format!(
            "person name {name:?}: use letters, digits, spaces, '-' or '_' (at most {MAX_PERSON_NAME} characters)"
        )));
    }
    Ok(normalized)
}

pub struct CaptureSession {
    settings: CaptureSettings,
    cascade: Cascade,
    facedata: PathBuf,
    saved_thumbnails: Vec<Thumbnail>,
    tally: CaptureTally,
    last_save: Option<Instant>,
}

impl CaptureSession {
    /// Starts a session saving into `facedata`; crops already saved for the person count for
    /// the duplicate check.
    pub fn new(facedata: &Path, settings: CaptureSettings, cascade: Cascade) -> Result<Self> {
        let settings = CaptureSettings {
            person: person_name(&settings.person)?,
            ..settings
        };
        let mut saved_thumbnails = Vec::new();
        if settings.duplicate_distance > 0.0 {
            for split in ["train", "test", ""] {
                let dir = facedata.join(split).join(&settings.person);
                if let Ok(listing) = dataset::list_images(&dir) {
                    saved_thumbnails.extend(
                        listing
                            .images
                            .iter()
                            .filter_map(|p| crate::image_prep::load(p).ok())
                            .map(|im| Thumbnail::of(&im)),
                    );
                }
            }
        }
        Ok(CaptureSession {
            settings,
            cascade,
            facedata: facedata.to_owned(),
            saved_thumbnails,
            tally: CaptureTally::default(),
            last_save: None,
        })
    }

    pub fn saved(&self) -> usize {
        self.tally.saved
    }

    pub fn tally(&self) -> CaptureTally {
        self.tally
    }

    pub fn settings(&self) -> &CaptureSettings {
        &self.settings
    }

    pub fn done(&self) -> bool {
        self.settings.count.is_some_and(|c| self.tally.saved >= c)
    }

    /// Judges one frame and saves its face if every gate passes.
    pub fn process(&mut self, frame: &RgbImage, now: Instant) -> Result<FrameOutcome> {
        let outcome = self.judge(frame, now)?;
        self.tally.count(&outcome);
        Ok(outcome)
    }

    fn judge(&mut self, frame: &RgbImage, now: Instant) -> Result<FrameOutcome> {
        if self.done() {
            return Ok(FrameOutcome::Done);
        }
        // Faces below the size gate are never saved, so the detector need not look for them
        // (the small scales are its most expensive levels).
        let params = DetectParams {
            min_size: self.settings.detect.min_size.max(self.settings.min_face),
            ..self.settings.detect
        };
        let faces = self.cascade.detect(&to_gray(frame), &params);
        let Some(face) = faces.into_iter().max_by_key(|r| r.area()) else {
            return Ok(FrameOutcome::NoFace);
        };
        if (face.width.min(face.height) as u32) < self.settings.min_face {
            return Ok(FrameOutcome::TooSmall { face });
        }
        if self
            .last_save
            .is_some_and(|t| now.duration_since(t) < self.settings.interval)
        {
            return Ok(FrameOutcome::TooSoon { face });
        }
        let crop = crop_square(frame, face);
        if self.settings.min_sharpness > 0.0 {
            let sharpness = laplacian_variance(&to_gray(&crop));
            if sharpness < self.settings.min_sharpness {
                return Ok(FrameOutcome::Blurry { face, sharpness });
            }
        }
        let thumbnail = Thumbnail::of(&crop);
        if self.settings.duplicate_distance > 0.0
            && self
                .saved_thumbnails
                .iter()
                .any(|t| t.distance(&thumbnail) < self.settings.duplicate_distance)
        {
            return Ok(FrameOutcome::Duplicate { face });
        }
        let path = self.save(&crop)?;
        self.saved_thumbnails.push(thumbnail);
        self.last_save = Some(now);
        Ok(FrameOutcome::Saved { path, face })
    }

    /// The split of the next crop: a test fraction is spread evenly (the k-th crop goes to test
    /// when floor(k * f) steps up).
    fn next_split(&self) -> &'static str {
        match self.settings.split {
            SplitChoice::Train => "train",
            SplitChoice::Test => "test",
            SplitChoice::TestFraction(f) => {
                let k = self.tally.saved as f64;
                if ((k + 1.0) * f).floor() > (k * f).floor() {
                    "test"
                } else {
                    "train"
                }
            }
        }
    }

    fn save(&self, crop: &RgbImage) -> Result<PathBuf> {
        let dir = self
            .facedata
            .join(self.next_split())
            .join(&self.settings.person);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(crop)
            .map_err(|e| Error::Image {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        for n in 1.. {
            let path = dir.join(format!("{}_{stamp}_{n:03}.jpg", self.settings.person));
            // create_new never replaces a file; the bytes go to a temporary file first so a
            // crash leaves no half-written JPEG under the final name.
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => {
                    crate::fsutil::write_atomically(&path, &jpeg)?;
                    return Ok(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        unreachable!("the name counter is unbounded")
    }
}

/// The face box (clipped to the frame) resized to 224x224.
pub fn crop_square(frame: &RgbImage, face: Rect) -> RgbImage {
    let (fw, fh) = frame.dimensions();
    let x = face.x.clamp(0, fw as i32 - 1) as u32;
    let y = face.y.clamp(0, fh as i32 - 1) as u32;
    let w = (face.width as u32).min(fw - x).max(1);
    let h = (face.height as u32).min(fh - y).max(1);
    let region = image::imageops::crop_imm(frame, x, y, w, h).to_image();
    image::imageops::resize(
        &region,
        CROP_SIZE,
        CROP_SIZE,
        image::imageops::FilterType::Triangle,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_names_cannot_escape_facedata() {
        for bad in [
            "",
            "  ",
            "../evil",
            "a/b",
            "a\\b",
            ".hidden",
            "x:y",
            "tab\tname",
            "esc\x1b[2J",
            "a.b",
            "\u{202e}evil",
        ] {
            assert!(person_name(bad).is_err(), "{bad:?}");
        }
        for good in ["alice", "Eric Smith", "s01", "José-María_2"] {
            assert_eq!(person_name(good).unwrap(), good);
        }
    }

    #[test]
    fn the_tally_counts_each_gate_and_describes_only_those_that_acted() {
        let face = Rect {
            x: 0,
            y: 0,
            width: 90,
            height: 90,
        };
        let mut tally = CaptureTally::default();
        for outcome in [
            FrameOutcome::NoFace,
            FrameOutcome::NoFace,
            FrameOutcome::TooSmall { face },
            FrameOutcome::Blurry {
                face,
                sharpness: 3.0,
            },
            FrameOutcome::Saved {
                path: "a.jpg".into(),
                face,
            },
            FrameOutcome::Done,
        ] {
            tally.count(&outcome);
        }
        assert_eq!((tally.frames, tally.saved, tally.no_face), (5, 1, 2));
        assert_eq!(
            tally.describe(),
            "5 frames: 1 saved, 2 no face, 1 too small, 1 blurry"
        );
    }

    #[test]
    fn a_folder_needs_no_time_between_saves_and_a_camera_does() {
        let folder = CaptureSettings::for_source("ann", &"dir:/tmp/x".parse().unwrap());
        let camera = CaptureSettings::for_source("ann", &"camera:0".parse().unwrap());
        assert_eq!(folder.interval, Duration::ZERO);
        assert_eq!(camera.interval, CAMERA_INTERVAL);
    }

    #[test]
    fn person_names_are_trimmed_and_normalised_to_nfc() {
        assert_eq!(person_name("  Ann  ").unwrap(), "Ann");
        let composed = person_name("Jos\u{e9}").unwrap();
        let decomposed = person_name("Jose\u{301}").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(composed.chars().count(), 4);
    }

    #[test]
    fn split_choices_parse() {
        assert_eq!("train".parse::<SplitChoice>().unwrap(), SplitChoice::Train);
        assert_eq!(
            "0.2".parse::<SplitChoice>().unwrap(),
            SplitChoice::TestFraction(0.2)
        );
        assert!("1.5".parse::<SplitChoice>().unwrap_err().contains("1.5"));
    }

    #[test]
    fn crops_are_224_square_and_clipped_to_the_frame() {
        let frame = RgbImage::from_pixel(100, 80, image::Rgb([10, 20, 30]));
        let crop = crop_square(
            &frame,
            Rect {
                x: 70,
                y: 60,
                width: 50,
                height: 50,
            },
        );
        assert_eq!(crop.dimensions(), (CROP_SIZE, CROP_SIZE));
        assert_eq!(crop.get_pixel(5, 5).0, [10, 20, 30]);
    }
}
