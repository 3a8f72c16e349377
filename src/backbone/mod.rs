//! The frozen feature extractors an experiment chooses with `backbone:`: torchvision's ImageNet
//! MobileNetV2 ([`mobilenet`], read from its `.pth` file) and dlib's face-recognition ResNet
//! ([`dlib`], with its face alignment). [`Backbone`] is what the rest of facelab uses, whichever
//! it is; [`Backbones`] loads each kind once per process, on first use. The submodules hold the
//! weights fetch ([`weights`]), the torch file reader ([`pth`] over [`pickle`]), the network
//! ([`network`]) and its kernels ([`kernels`]).

pub mod dlib;
pub mod kernels;
mod kernels_avx2;
mod kernels_depthwise;
pub mod mobilenet;
pub mod network;
pub mod pickle;
pub mod pth;
pub mod weights;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::align::FaceBox;
use crate::capture::cascade::Rect;
use crate::error::Result;
use crate::image_prep::{self, PreparedImage, ResizeMode, INPUT_SIZE};
use crate::progress::Progress;
use dlib::DlibFace;
pub use kernels::Isa;
pub use mobilenet::MobileNet;
pub use network::{CLASSES, FEATURE_DIM};

/// The largest feature vector any backbone gives (a bound for reading cache entries).
pub const MAX_FEATURE_DIM: usize = FEATURE_DIM;

/// Which network turns images into features (`backbone:` in an experiment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackboneKind {
    /// ImageNet MobileNetV2, 1280 features of the whole (resized) image: the notebook's choice.
    #[default]
    MobilenetV2,
    /// dlib's face-recognition ResNet (as `face_recognition` uses it): the face found, aligned
    /// on 5 landmarks into a 150x150 chip, 128 features.
    DlibResnet,
}

impl BackboneKind {
    pub const ALL: [BackboneKind; 2] = [BackboneKind::MobilenetV2, BackboneKind::DlibResnet];

    pub fn name(self) -> &'static str {
        match self {
            BackboneKind::MobilenetV2 => "mobilenet_v2",
            BackboneKind::DlibResnet => "dlib_resnet",
        }
    }

    pub fn feature_dim(self) -> usize {
        match self {
            BackboneKind::MobilenetV2 => FEATURE_DIM,
            BackboneKind::DlibResnet => dlib::DESCRIPTOR_DIM,
        }
    }

    pub fn is_default(&self) -> bool {
        *self == BackboneKind::default()
    }
}

impl std::str::FromStr for BackboneKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        BackboneKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| format!("unknown backbone '{s}': use mobilenet_v2 or dlib_resnet"))
    }
}

/// A loaded backbone of either kind.
pub enum Backbone {
    MobileNet(MobileNet),
    Dlib(DlibFace),
}

/// An image made ready for one backbone (only that backbone's [`Backbone::features`] takes it).
pub enum BackboneInput {
    /// MobileNetV2's normalised `[3, 224, 224]`.
    Normalised(PreparedImage),
    /// dlib's aligned 150x150 face chip.
    Chip(RgbImage),
}

impl Backbone {
    /// Finds (or fetches) the verified weights of `kind` and loads them; `explicit_weights`
    /// is MobileNetV2's `--weights` file.
    pub fn obtain(
        kind: BackboneKind,
        models_dir: &Path,
        explicit_weights: Option<&Path>,
        progress: &dyn Progress,
    ) -> Result<Self> {
        Ok(match kind {
            BackboneKind::MobilenetV2 => {
                Backbone::MobileNet(MobileNet::obtain(models_dir, explicit_weights, progress)?)
            }
            BackboneKind::DlibResnet => Backbone::Dlib(DlibFace::obtain(models_dir, progress)?),
        })
    }

    pub fn kind(&self) -> BackboneKind {
        match self {
            Backbone::MobileNet(_) => BackboneKind::MobilenetV2,
            Backbone::Dlib(_) => BackboneKind::DlibResnet,
        }
    }

    pub fn feature_dim(&self) -> usize {
        self.kind().feature_dim()
    }

    /// The identity of what computes the features: MobileNetV2's weights file's sha256; for
    /// dlib, a hash of both model files, the face detector and the face rule. Part of every
    /// feature-cache key and recorded with every head.
    pub fn weights_sha256(&self) -> &str {
        match self {
            Backbone::MobileNet(net) => net.weights_sha256(),
            Backbone::Dlib(face) => face.identity(),
        }
    }

    /// Side of the square the network itself runs on.
    pub fn input_size(&self) -> usize {
        match self {
            Backbone::MobileNet(_) => INPUT_SIZE,
            Backbone::Dlib(_) => dlib::CHIP_SIZE,
        }
    }

    /// The image that an input and its augmented copies start from: MobileNetV2's 224x224
    /// square (by `resize`, as Keras loads at the target size before augmenting); for dlib the
    /// image as it is, since it finds and aligns the face itself.
    pub fn base_image(&self, image: RgbImage, resize: ResizeMode) -> RgbImage {
        match self {
            Backbone::MobileNet(_) => image_prep::to_input_size(&image, resize),
            Backbone::Dlib(_) => image,
        }
    }

    /// The network's input from a base image (see [`Backbone::base_image`]).
    pub fn input(&self, base: &RgbImage) -> BackboneInput {
        match self {
            Backbone::MobileNet(_) => BackboneInput::Normalised(image_prep::normalise(base)),
            Backbone::Dlib(face) => BackboneInput::Chip(face.image_chip(base)),
        }
    }

    /// The network's input for the face the detector found at `face` in `frame` (mirrored left
    /// to right when asked), given its capture crop (`crop_square(frame, face)`): MobileNetV2
    /// takes the crop, as it takes the crops capture saves; dlib aligns the face in the frame
    /// itself, as its face rule does for a detected face, so the crop is not searched again.
    pub fn face_input(
        &self,
        frame: &RgbImage,
        face: Rect,
        crop: &RgbImage,
        resize: ResizeMode,
        mirror: bool,
    ) -> BackboneInput {
        let flipped = |image: &RgbImage| image::imageops::flip_horizontal(image);
        match self {
            Backbone::MobileNet(_) => {
                let crop = if mirror { flipped(crop) } else { crop.clone() };
                self.input(&self.base_image(crop, resize))
            }
            Backbone::Dlib(dlib) => {
                let (x, y, side) = (f64::from(face.x), f64::from(face.y), f64::from(face.width));
                let chip = dlib.chip(frame, FaceBox::from_haar(x, y, side));
                BackboneInput::Chip(if mirror { flipped(&chip) } else { chip })
            }
        }
    }

    /// One feature row per input, computed together.
    pub fn features(&self, inputs: &[&BackboneInput]) -> Vec<Vec<f32>> {
        const MADE_BY_ANOTHER: &str = "inputs are made by the backbone that runs them";
        match self {
            Backbone::MobileNet(net) => {
                let images: Vec<&PreparedImage> = inputs
                    .iter()
                    .map(|input| match input {
                        BackboneInput::Normalised(image) => image,
                        BackboneInput::Chip(_) => panic!("{MADE_BY_ANOTHER}"),
                    })
                    .collect();
                net.features(&images)
            }
            Backbone::Dlib(face) => {
                let chips: Vec<&[u8]> = inputs
                    .iter()
                    .map(|input| match input {
                        BackboneInput::Chip(chip) => chip.as_raw().as_slice(),
                        BackboneInput::Normalised(_) => panic!("{MADE_BY_ANOTHER}"),
                    })
                    .collect();
                face.net.descriptors(&chips)
            }
        }
    }
}

/// The backbones one process uses, each loaded on its first use and shared after (a sweep may
/// try both; a worker may meet both).
pub struct Backbones {
    models_dir: PathBuf,
    explicit_weights: Option<PathBuf>,
    loaded: Mutex<Vec<Arc<Backbone>>>,
}

impl Backbones {
    /// Nothing loaded yet; `explicit_weights` is MobileNetV2's `--weights` file.
    pub fn new(models_dir: &Path, explicit_weights: Option<&Path>) -> Self {
        Backbones {
            models_dir: models_dir.to_owned(),
            explicit_weights: explicit_weights.map(Path::to_owned),
            loaded: Mutex::new(Vec::new()),
        }
    }

    /// The backbone of `kind`, loaded now if it is the first time it is asked for.
    pub fn get(&self, kind: BackboneKind, progress: &dyn Progress) -> Result<Arc<Backbone>> {
        // Held while loading, so two threads asking at once load it once.
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(backbone) = loaded.iter().find(|b| b.kind() == kind) {
            return Ok(backbone.clone());
        }
        let backbone = Arc::new(Backbone::obtain(
            kind,
            &self.models_dir,
            self.explicit_weights.as_deref(),
            progress,
        )?);
        loaded.push(backbone.clone());
        Ok(backbone)
    }
}
