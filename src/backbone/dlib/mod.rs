//! dlib's face-recognition models, read from dlib's own files and run in Rust: the serialized
//! format ([`serial`]) and the ResNet that turns a 150x150 face chip into a 128-d descriptor
//! ([`resnet`]), as the `face_recognition` package uses them, and fetching the model files once
//! per machine ([`weights`]).

pub mod resnet;
pub mod serial;
pub mod weights;

pub use resnet::{FaceResNet, CHIP_SIZE, DESCRIPTOR_DIM};
