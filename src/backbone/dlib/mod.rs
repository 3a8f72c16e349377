//! dlib's face-recognition models, read from dlib's own files and run in Rust: the serialized
//! format ([`serial`]) and the ResNet that turns a 150x150 face chip into a 128-d descriptor
//! ([`resnet`]), as the `face_recognition` package uses them, and fetching the model files once
//! per machine ([`weights`]).

pub mod resnet;
pub mod serial;
pub mod weights;

pub use resnet::{FaceResNet, CHIP_SIZE, DESCRIPTOR_DIM};

use std::path::Path;

use image::RgbImage;

use crate::align::{face_chip, FaceBox, ShapePredictor};
use crate::error::Result;
use crate::progress::Progress;

/// `face_recognition`'s chip: 150x150 with a quarter of the face's size around it.
pub const CHIP_PADDING: f64 = 0.25;

/// dlib's face pipeline as `face_recognition` runs it: 5 landmarks in a face box, the aligned
/// chip, its 128-d descriptor.
pub struct DlibFace {
    pub predictor: ShapePredictor,
    pub net: FaceResNet,
}

impl DlibFace {
    /// Loads both models (fetched once per machine, see [`weights`]).
    pub fn obtain(models_dir: &Path, progress: &dyn Progress) -> Result<Self> {
        let net_path = weights::obtain(weights::RESNET, None, models_dir, progress)?;
        let shape_path = weights::obtain(weights::SHAPE_PREDICTOR, None, models_dir, progress)?;
        let read = |p: &Path| crate::fsutil::read_limited(p, 64 << 20);
        Ok(DlibFace {
            predictor: ShapePredictor::read(&read(&shape_path)?, &shape_path)?,
            net: resnet::read(&read(&net_path)?, &net_path)?,
        })
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
