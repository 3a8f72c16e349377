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
///
/// Not `Send`: a camera handle may be tied to the thread that opened it (AVFoundation's is), so
/// a source is opened on the thread that reads it (see [`SourceSpec::open`]).
pub trait FrameSource {
    fn next_frame(&mut self) -> Result<Option<Frame>>;
    fn describe(&self) -> String;
    /// Files passed over because they could not be read, with the reason.
    fn skipped(&self) -> &[(PathBuf, String)] {
        &[]
    }
}

/// Where frames come from, as a user writes it: `camera:N` or `dir:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Camera(u32),
    Folder(PathBuf),
}

impl SourceSpec {
    /// A camera streams one moment after another, so its frames need time between saves;
    /// photos in a folder are different moments already.
    pub fn is_camera(&self) -> bool {
        matches!(self, SourceSpec::Camera(_))
    }

    /// Opens the source; call it on the thread that will read the frames.
    pub fn open(&self) -> Result<Box<dyn FrameSource>> {
        match self {
            SourceSpec::Camera(index) => Ok(Box::new(CameraSource::open(*index)?)),
            SourceSpec::Folder(dir) => Ok(Box::new(FolderSource::new(dir)?)),
        }
    }
}

impl std::str::FromStr for SourceSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        match spec.trim().split_once(':') {
            Some(("camera", index)) => index.parse().map(SourceSpec::Camera).map_err(|_| {
                Error::InvalidArgument(format!(
                    "source {spec:?}: the camera index must be a number, e.g. camera:0"
                ))
            }),
            Some(("dir", path)) if !path.is_empty() => Ok(SourceSpec::Folder(PathBuf::from(path))),
            _ => Err(Error::InvalidArgument(format!(
                "source {spec:?}: use camera:N (e.g. camera:0) or dir:PATH"
            ))),
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Camera(index) => write!(f, "camera:{index}"),
            SourceSpec::Folder(dir) => write!(f, "dir:{}", dir.display()),
        }
    }
}

/// The images of a folder, in name order; unreadable files are passed over and listed in
/// [`FrameSource::skipped`].
pub struct FolderSource {
    dir: PathBuf,
    paths: Vec<PathBuf>,
    next: usize,
    skipped: Vec<(PathBuf, String)>,
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
            match crate::image_prep::load(&path) {
                Ok(image) => {
                    return Ok(Some(Frame {
                        image,
                        origin: path.display().to_string(),
                    }))
                }
                Err(e) => self.skipped.push((path, e.reason())),
            }
        }
        Ok(None)
    }

    fn skipped(&self) -> &[(PathBuf, String)] {
        &self.skipped
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for text in ["camera:0", "camera:12", "dir:/tmp/photos", "dir:a b/c"] {
            let spec: SourceSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
        assert!("camera:0".parse::<SourceSpec>().unwrap().is_camera());
        assert!(!"dir:x".parse::<SourceSpec>().unwrap().is_camera());
    }

    #[test]
    fn bad_specs_name_the_value_and_the_forms() {
        for bad in ["camera:x", "camera:0dir:/tmp", "dir:", "webcam", ""] {
            let e = bad.parse::<SourceSpec>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
