//! Face alignment for the dlib backbone: dlib's 5-point shape predictor (an ensemble of
//! regression trees over pixel differences, Kazemi and Sullivan), read from dlib's own file, and
//! dlib's aligned face chips.

pub mod chip;
pub mod shape_predictor;

pub use chip::face_chip;
pub use shape_predictor::{FaceBox, Point, ShapePredictor};
