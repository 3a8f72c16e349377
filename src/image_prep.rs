//! Turning an image file into the backbone's input: decode to RGB, resize to 224x224 (squash the
//! whole image, or torchvision's shorter-side-256 + centre-crop-224), scale to [0, 1] and
//! normalise with ImageNet's mean and std, as CHW float32.
//!
//! Resizing uses `fast_image_resize`'s convolution with a bilinear filter, which, like PIL's,
//! widens the filter when shrinking (antialiasing) and rounds to 8 bits between its two passes.

use std::path::Path;

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use crate::error::{Error, Result};

/// Side of the square input the backbone takes.
pub const INPUT_SIZE: usize = 224;
/// torchvision's eval transform resizes the shorter side to this before cropping.
const CENTER_CROP_RESIZE: u32 = 256;
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How an image of any shape becomes 224x224.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// The whole image to 224x224, aspect ratio ignored (the notebook's way; best for face crops).
    Squash,
    /// Shorter side to 256, then the central 224x224 (torchvision's ImageNet eval transform).
    CenterCrop,
}

impl ResizeMode {
    pub fn name(self) -> &'static str {
        match self {
            ResizeMode::Squash => "squash",
            ResizeMode::CenterCrop => "center-crop",
        }
    }
}

impl std::str::FromStr for ResizeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "squash" => Ok(ResizeMode::Squash),
            "center-crop" => Ok(ResizeMode::CenterCrop),
            other => Err(format!(
                "unknown resize mode '{other}': use squash or center-crop"
            )),
        }
    }
}

/// A normalised `[3, 224, 224]` input.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    pub chw: Vec<f32>,
}

/// Reads and decodes the image at `path` (a regular file of at most
/// [`crate::fsutil::limits::IMAGE`] bytes).
pub fn load(path: &Path) -> Result<RgbImage> {
    let bytes = crate::fsutil::read_limited(path, crate::fsutil::limits::IMAGE)?;
    decode(path, &bytes)
}

/// Version of the decoding rules, part of every feature cache key: bump it when decoding
/// changes what an image's pixels are (2: EXIF orientation applied).
pub const DECODE_VERSION: u32 = 2;

/// Decodes an image file's bytes to RGB, upright as its EXIF orientation says (a phone photo
/// taken upright is stored sideways with a tag); `path` only names it in errors. The format is
/// read from the bytes, not the name, and the image crate's allocation limits apply. A JPEG
/// without its end marker is refused: a truncated file decodes to a partly grey image that
/// would be trained on unnoticed.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<RgbImage> {
    use image::ImageDecoder;
    let fail = |reason: String| Error::Image {
        path: path.to_owned(),
        reason,
    };
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| fail(e.to_string()))?;
    if reader.format() == Some(image::ImageFormat::Jpeg) && !has_jpeg_end(bytes) {
        return Err(fail(
            "truncated JPEG (no end-of-image marker); copy the file again".into(),
        ));
    }
    let mut decoder = reader.into_decoder().map_err(|e| fail(e.to_string()))?;
    let orientation = decoder.orientation().map_err(|e| fail(e.to_string()))?;
    let mut image = image::DynamicImage::from_decoder(decoder).map_err(|e| fail(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image.to_rgb8())
}

/// Whether a JPEG's end-of-image marker is in its last kilobyte (some writers pad after it).
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Resizes and normalises a decoded image.
pub fn prepare(image: &RgbImage, mode: ResizeMode) -> PreparedImage {
    normalise(&to_input_size(image, mode))
}

/// The image as the backbone's 224x224 square, by `mode`: the image augmentation transforms
/// (as Keras's `flow_from_directory` loads at the target size before augmenting).
pub fn to_input_size(image: &RgbImage, mode: ResizeMode) -> RgbImage {
    let side = INPUT_SIZE as u32;
    match mode {
        ResizeMode::Squash => resize(image, side, side),
        ResizeMode::CenterCrop => {
            let (w, h) = image.dimensions();
            let (rw, rh) = shorter_side_to(w, h, CENTER_CROP_RESIZE);
            let resized = resize(image, rw, rh);
            let left = python_round((rw - side) as f64 / 2.0);
            let top = python_round((rh - side) as f64 / 2.0);
            image::imageops::crop_imm(&resized, left, top, side, side).to_image()
        }
    }
}

/// torchvision's `Resize(size)`: the shorter side becomes `size`, the longer keeps the ratio
/// (truncated, as torchvision does).
fn shorter_side_to(w: u32, h: u32, size: u32) -> (u32, u32) {
    if w <= h {
        (size, (size as u64 * h as u64 / w as u64) as u32)
    } else {
        ((size as u64 * w as u64 / h as u64) as u32, size)
    }
}

/// Python's `round`, which rounds halves to even (torchvision's crop offsets use it).
fn python_round(x: f64) -> u32 {
    x.round_ties_even() as u32
}

fn resize(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    let src = Image::from_vec_u8(
        image.width(),
        image.height(),
        image.as_raw().clone(),
        PixelType::U8x3,
    )
    .expect("an RgbImage's buffer is width * height * 3 bytes");
    let mut dst = Image::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .expect("source and destination are both U8x3");
    RgbImage::from_raw(width, height, dst.into_vec()).expect("destination buffer matches its size")
}

/// Scales a 224x224 square to [0, 1] and normalises it with ImageNet's mean and std, as CHW.
pub fn normalise(square: &RgbImage) -> PreparedImage {
    assert_eq!(
        square.dimensions(),
        (INPUT_SIZE as u32, INPUT_SIZE as u32),
        "normalise takes the input-size square"
    );
    let plane = INPUT_SIZE * INPUT_SIZE;
    let mut chw = vec![0.0; 3 * plane];
    for (i, px) in square.pixels().enumerate() {
        for c in 0..3 {
            chw[c * plane + i] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    PreparedImage { chw }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wide JPEG (`width` x `height`), with an EXIF orientation tag when given.
    fn jpeg(width: u32, height: u32, orientation: Option<u16>) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, _| image::Rgb([(x * 20) as u8, 90, 40]));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut bytes)
            .encode_image(&image)
            .unwrap();
        if let Some(o) = orientation {
            // APP1 "Exif": a big-endian TIFF header and one IFD entry, tag 0x0112 (SHORT).
            let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
            exif.extend(o.to_be_bytes());
            exif.extend([0, 0, 0, 0, 0, 0]);
            let mut segment = vec![0xFF, 0xE1];
            segment.extend(((exif.len() + 2) as u16).to_be_bytes());
            segment.extend(exif);
            bytes.splice(2..2, segment);
        }
        bytes
    }

    #[test]
    fn exif_orientation_is_applied() {
        let plain = decode(Path::new("a.jpg"), &jpeg(8, 4, None)).unwrap();
        assert_eq!(plain.dimensions(), (8, 4));
        // 6: the camera was turned; the picture is shown rotated 90 degrees clockwise.
        let turned = decode(Path::new("b.jpg"), &jpeg(8, 4, Some(6))).unwrap();
        assert_eq!(turned.dimensions(), (4, 8));
    }

    #[test]
    fn a_truncated_jpeg_is_refused_and_a_misnamed_png_is_read() {
        let bytes = jpeg(64, 64, None);
        let e = decode(Path::new("cut.jpg"), &bytes[..bytes.len() - 200]).unwrap_err();
        assert!(e.to_string().contains("truncated JPEG"), "{e}");
        let mut png = Vec::new();
        RgbImage::new(3, 2)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(
            decode(Path::new("really-a-png.jpg"), &png)
                .unwrap()
                .dimensions(),
            (3, 2)
        );
    }

    #[test]
    fn shorter_side_keeps_ratio_like_torchvision() {
        assert_eq!(shorter_side_to(451, 300, 256), (384, 256));
        assert_eq!(shorter_side_to(512, 512, 256), (256, 256));
        assert_eq!(shorter_side_to(300, 451, 256), (256, 384));
    }

    #[test]
    fn crop_offsets_round_half_to_even() {
        assert_eq!(python_round(0.5), 0);
        assert_eq!(python_round(1.5), 2);
        assert_eq!(python_round(80.0), 80);
    }

    #[test]
    fn prepare_gives_normalised_chw_of_the_right_size() {
        let white = RgbImage::from_pixel(300, 200, image::Rgb([255, 255, 255]));
        for mode in [ResizeMode::Squash, ResizeMode::CenterCrop] {
            let prepared = prepare(&white, mode);
            assert_eq!(prepared.chw.len(), 3 * INPUT_SIZE * INPUT_SIZE);
            let red_plane_value = (1.0 - MEAN[0]) / STD[0];
            assert!((prepared.chw[0] - red_plane_value).abs() < 1e-6);
            let blue = prepared.chw[2 * INPUT_SIZE * INPUT_SIZE + 5];
            assert!((blue - (1.0 - MEAN[2]) / STD[2]).abs() < 1e-6);
        }
    }

    #[test]
    fn resize_mode_parses_and_names_itself() {
        for mode in [ResizeMode::Squash, ResizeMode::CenterCrop] {
            assert_eq!(mode.name().parse::<ResizeMode>().unwrap(), mode);
        }
        assert!("stretch"
            .parse::<ResizeMode>()
            .unwrap_err()
            .contains("stretch"));
    }
}
