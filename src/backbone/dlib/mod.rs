//! dlib's face-recognition models, read from dlib's own files and run in Rust: the serialized
//! format ([`serial`]) and the ResNet that turns a 150x150 face chip into a 128-d descriptor
//! ([`resnet`]), as the `face_recognition` package uses them, and fetching the model files once
//! per machine ([`weights`]). [`DlibFace`] also owns the rule for which face an image shows
//! (the largest the Haar cascade finds, else the image taken as a capture crop).

mod buffers;
mod forward;
pub mod resnet;
pub mod serial;
pub mod weights;
mod winograd;

pub use resnet::{FaceResNet, CHIP_SIZE, DESCRIPTOR_DIM};

use std::path::Path;

use image::RgbImage;

use crate::align::{face_chip, FaceBox, ShapePredictor};
use crate::capture::cascade::{obtain_face_cascade, to_gray, Cascade, DetectParams};
use crate::error::Result;
use crate::progress::Progress;

/// `face_recognition`'s chip: 150x150 with a quarter of the face's size around it.
pub const CHIP_PADDING: f64 = 0.25;

/// Changes whenever [`DlibFace::locate`] finds faces differently, so cached features made by
/// the old rule are not reused.
const FACE_RULE_VERSION: u32 = 2;

/// Images longer than this on either side are searched for faces at this size, and the box
/// scaled back (landmarks and chip still come from the full image): detection costs grow with
/// pixels (2.7 s for a 12-megapixel photo), and a face large enough to recognise stays large
/// enough to find.
const DETECT_MAX_SIDE: u32 = 1024;

/// dlib's face pipeline as `face_recognition` runs it: 5 landmarks in a face box, the aligned
/// chip, its 128-d descriptor; with OpenCV's Haar cascade (facelab's detector) finding the box.
pub struct DlibFace {
    pub predictor: ShapePredictor,
    pub net: FaceResNet,
    pub detector: Cascade,
    /// Hash of both models, the cascade and the face rule (see [`DlibFace::identity`]).
    identity: String,
}

/// How [`DlibFace::locate`] found an image's face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceSource {
    /// The largest face the Haar cascade found.
    Detected,
    /// None found: the image's central square, taken as a capture crop (a Haar box resized).
    WholeImage,
}

impl FaceSource {
    pub fn name(self) -> &'static str {
        match self {
            FaceSource::Detected => "detected",
            FaceSource::WholeImage => "whole image",
        }
    }
}

impl DlibFace {
    /// Loads both models (fetched once per machine, see [`weights`]) and the face cascade.
    pub fn obtain(models_dir: &Path, progress: &dyn Progress) -> Result<Self> {
        let net_path = weights::obtain(weights::RESNET, None, models_dir, progress)?;
        let shape_path = weights::obtain(weights::SHAPE_PREDICTOR, None, models_dir, progress)?;
        let cascade_path = obtain_face_cascade(None, models_dir)?;
        let read = |p: &Path| crate::fsutil::read_limited(p, 64 << 20);
        let cascade_bytes = read(&cascade_path)?;
        let mut identity = blake3::Hasher::new();
        identity.update(weights::RESNET.sha256.as_bytes());
        identity.update(weights::SHAPE_PREDICTOR.sha256.as_bytes());
        identity.update(blake3::hash(&cascade_bytes).as_bytes());
        identity.update(&FACE_RULE_VERSION.to_le_bytes());
        Ok(DlibFace {
            predictor: ShapePredictor::read(&read(&shape_path)?, &shape_path)?,
            net: resnet::read(&read(&net_path)?, &net_path)?,
            detector: Cascade::load(&cascade_path)?,
            identity: identity.finalize().to_hex().to_string(),
        })
    }

    /// What computes this pipeline's descriptors, as a hash (a feature-cache key part).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The face `image` is taken to show: the largest face the Haar cascade finds (its box
    /// mapped to dlib's, see [`FaceBox::from_haar`]; large photos are searched at
    /// [`DETECT_MAX_SIDE`]), else the image's central square taken as a capture crop, whose
    /// face is the whole crop.
    pub fn locate(&self, image: &RgbImage) -> (FaceBox, FaceSource) {
        let gray = to_gray(image);
        let (width, height) = gray.dimensions();
        let scale = f64::from(DETECT_MAX_SIDE) / f64::from(width.max(height));
        let (searched, scale) = if scale < 1.0 {
            let side = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
            let filter = image::imageops::FilterType::Triangle;
            let small = image::imageops::resize(&gray, side(width), side(height), filter);
            (small, scale)
        } else {
            (gray, 1.0)
        };
        let largest = self
            .detector
            .detect(&searched, &DetectParams::default())
            .into_iter()
            .max_by_key(|r| r.area());
        match largest {
            Some(r) => (
                FaceBox::from_haar(
                    f64::from(r.x) / scale,
                    f64::from(r.y) / scale,
                    f64::from(r.width) / scale,
                ),
                FaceSource::Detected,
            ),
            None => {
                let (w, h) = (f64::from(image.width()), f64::from(image.height()));
                let side = w.min(h);
                let (x, y) = (((w - side) / 2.0).floor(), ((h - side) / 2.0).floor());
                (FaceBox::from_haar(x, y, side), FaceSource::WholeImage)
            }
        }
    }

    /// The aligned chip of the face `image` shows (see [`DlibFace::locate`]).
    pub fn image_chip(&self, image: &RgbImage) -> RgbImage {
        self.chip(image, self.locate(image).0)
    }

    /// The aligned chip of the face in `face`.
    pub fn chip(&self, image: &RgbImage, face: FaceBox) -> RgbImage {
        let parts = self.predictor.predict(image, face);
        face_chip(image, &parts, CHIP_SIZE as u32, CHIP_PADDING)
    }

    /// The descriptor of the face in `face`.
    pub fn descriptor(&self, image: &RgbImage, face: FaceBox) -> Vec<f32> {
        self.net.descriptor(self.chip(image, face).as_raw())
    }
}
