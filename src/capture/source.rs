//! Where frames come from: a camera through nokhwa (V4L2 on Linux), or a folder of photos
//! (for importing, for tests, and for trying capture on a machine without a camera).

use std::path::{Path, PathBuf};

use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{CameraIndex, RequestedFormat, RequestedFormatType};

use crate::dataset;
use crate::error::{Error, Result};

/// One frame and where it came from (a file name, or the camera and frame number).
#[derive(Debug, Clone)]
pub struct Frame {
    pub image: RgbImage,
    pub origin: String,
}

/// A stream of frames; `None` when it has no more (a folder that is used up).
pub trait FrameSource: Send {
    fn next_frame(&mut self) -> Result<Option<Frame>>;
    fn describe(&self) -> String;
}

/// `camera:N` or `dir:PATH`.
pub fn open(spec: &str) -> Result<Box<dyn FrameSource>> {
    match spec.split_once(':') {
        Some(("camera", index)) => {
            let index: u32 = index.parse().map_err(|_| {
                Error::InvalidArgument(format!(
                    "--source {spec}: the camera index must be a number, e.g. camera:0"
                ))
            })?;
            Ok(Box::new(CameraSource::open(index)?))
        }
        Some(("dir", path)) => Ok(Box::new(FolderSource::new(Path::new(path))?)),
        _ => Err(Error::InvalidArgument(format!(
            "--source {spec}: use camera:N (e.g. camera:0) or dir:PATH"
        ))),
    }
}

/// The images of a folder, in name order; unreadable files are skipped with a note on stderr's
/// behalf (`skipped`).
pub struct FolderSource {
    dir: PathBuf,
    paths: Vec<PathBuf>,
    next: usize,
    pub skipped: Vec<(PathBuf, String)>,
}

impl FolderSource {
    pub fn new(dir: &Path) -> Result<Self> {
        Ok(FolderSource {
            dir: dir.to_owned(),
            paths: dataset::list_images(dir)?.images,
            next: 0,
            skipped: Vec::new(),
        })
    }
}

impl FrameSource for FolderSource {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        while let Some(path) = self.paths.get(self.next).cloned() {
            self.next += 1;
            match image::open(&path) {
                Ok(image) => {
                    return Ok(Some(Frame {
                        image: image.to_rgb8(),
                        origin: path.display().to_string(),
                    }))
                }
                Err(e) => self.skipped.push((path, e.to_string())),
            }
        }
        Ok(None)
    }

    fn describe(&self) -> String {
        format!(
            "folder {} ({} images)",
            self.dir.display(),
            self.paths.len()
        )
    }
}

/// A webcam through nokhwa, at its highest frame rate, decoded to RGB.
pub struct CameraSource {
    camera: nokhwa::Camera,
    index: u32,
    frames: u64,
}

// SAFETY: nokhwa's Camera wraps a V4L2 handle that may move between threads; it is used by one
// thread at a time (the owner of the CameraSource).
unsafe impl Send for CameraSource {}

impl CameraSource {
    pub fn open(index: u32) -> Result<Self> {
        let explain = |e: nokhwa::NokhwaError| {
            Error::InvalidArgument(format!(
                "camera {index}: {e}. Is a camera connected and free (not used by another program)? \
                 Without one, capture from photos: --source dir:PATH"
            ))
        };
        let format =
            RequestedFormat::new::<RgbFormat>(RequestedFormatType::AbsoluteHighestFrameRate);
        let mut camera = nokhwa::Camera::new(CameraIndex::Index(index), format).map_err(explain)?;
        camera.open_stream().map_err(explain)?;
        Ok(CameraSource {
            camera,
            index,
            frames: 0,
        })
    }
}

impl FrameSource for CameraSource {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let index = self.index;
        let lost = |e: nokhwa::NokhwaError| Error::InvalidArgument(format!("camera {index}: {e}"));
        let buffer = self.camera.frame().map_err(lost)?;
        let decoded = buffer.decode_image::<RgbFormat>().map_err(lost)?;
        self.frames += 1;
        let (w, h) = decoded.dimensions();
        let image = RgbImage::from_raw(w, h, decoded.into_raw()).expect("decoded RGB frame");
        Ok(Some(Frame {
            image,
            origin: format!("camera {index} frame {}", self.frames),
        }))
    }

    fn describe(&self) -> String {
        format!("camera {}", self.index)
    }
}
