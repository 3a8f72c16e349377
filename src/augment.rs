//! Augmented copies of training images, as Keras's `ImageDataGenerator` makes them: a random
//! rotation, shift, shear and zoom about the centre (bilinear sampling, `nearest` fill), a
//! horizontal flip with probability 0.5, and a brightness factor. Each copy is a pure function
//! of the settings, the training seed, the image's content and the copy's index, so its
//! features can be cached like any other image's.
//!
//! As with Keras's `flow_from_directory`, the transform applies to the image already at the
//! backbone's input size (224x224), in one bilinear pass; shifts are fractions of that square.
//! Pixels are rounded to 8 bits after the brightness factor (Keras rounds only when brightness
//! is on; the difference is below a grey level).

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::AugmentConfig;

/// The random draws for one augmented copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub rotation_deg: f64,
    /// Shifts in pixels along rows (down) and columns (right).
    pub shift_rows: f64,
    pub shift_cols: f64,
    pub shear_deg: f64,
    pub zoom_rows: f64,
    pub zoom_cols: f64,
    pub flip: bool,
    pub brightness: f64,
}

impl Transform {
    /// Draws a transform for copy `copy` of the image with content hash `content`.
    pub fn draw(
        spec: &AugmentConfig,
        seed: u64,
        content: &blake3::Hash,
        copy: usize,
        height: u32,
        width: u32,
    ) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.update(content.as_bytes());
        h.update(&(copy as u64).to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(*h.finalize().as_bytes());
        let mut symmetric = |half: f64| {
            if half > 0.0 {
                rng.gen_range(-half..=half)
            } else {
                0.0
            }
        };
        let rotation_deg = symmetric(spec.rotation);
        let shift_rows = symmetric(spec.height_shift) * height as f64;
        let shift_cols = symmetric(spec.width_shift) * width as f64;
        let shear_deg = symmetric(spec.shear);
        let zoom_rows = 1.0 + symmetric(spec.zoom);
        let zoom_cols = 1.0 + symmetric(spec.zoom);
        let flip = spec.horizontal_flip && rng.gen_bool(0.5);
        let [low, high] = spec.brightness;
        let brightness = if high > low {
            rng.gen_range(low..=high)
        } else {
            low
        };
        Transform {
            rotation_deg,
            shift_rows,
            shift_cols,
            shear_deg,
            zoom_rows,
            zoom_cols,
            flip,
            brightness,
        }
    }

    /// The 2x3 map from an output pixel (row, col) to the input position it samples, composed
    /// as Keras's `apply_affine_transform`: rotation, shift, shear, zoom, about the centre.
    fn input_position_map(&self, height: u32, width: u32) -> [[f64; 3]; 2] {
        let (t, s) = (self.rotation_deg.to_radians(), self.shear_deg.to_radians());
        let rotation = [
            [t.cos(), -t.sin(), 0.0],
            [t.sin(), t.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ];
        let shift = [
            [1.0, 0.0, self.shift_rows],
            [0.0, 1.0, self.shift_cols],
            [0.0, 0.0, 1.0],
        ];
        let shear = [[1.0, -s.sin(), 0.0], [0.0, s.cos(), 0.0], [0.0, 0.0, 1.0]];
        let zoom = [
            [self.zoom_rows, 0.0, 0.0],
            [0.0, self.zoom_cols, 0.0],
            [0.0, 0.0, 1.0],
        ];
        let (cr, cc) = (height as f64 / 2.0 - 0.5, width as f64 / 2.0 - 0.5);
        let to_centre = [[1.0, 0.0, cr], [0.0, 1.0, cc], [0.0, 0.0, 1.0]];
        let from_centre = [[1.0, 0.0, -cr], [0.0, 1.0, -cc], [0.0, 0.0, 1.0]];
        let m = [to_centre, rotation, shift, shear, zoom, from_centre]
            .into_iter()
            .reduce(|a, b| matmul3(&a, &b))
            .expect("six matrices");
        [m[0], m[1]]
    }

    /// Applies the transform to an image (in facelab, the 224x224 input square).
    pub fn apply(&self, image: &RgbImage) -> RgbImage {
        let (width, height) = image.dimensions();
        let m = self
            .input_position_map(height, width)
            .map(|row| row.map(|v| v as f32));
        let source = Source {
            pixels: image.as_raw(),
            width: width as usize,
            height: height as usize,
        };
        let mut out = vec![0u8; image.as_raw().len()];
        let brightness = self.brightness as f32;
        for (y, out_row) in out.chunks_exact_mut(3 * source.width).enumerate() {
            let row = y as f32;
            for (x, px) in out_row.chunks_exact_mut(3).enumerate() {
                let col = if self.flip { source.width - 1 - x } else { x } as f32;
                let in_row = m[0][0] * row + m[0][1] * col + m[0][2];
                let in_col = m[1][0] * row + m[1][1] * col + m[1][2];
                let value = source.sample_bilinear_nearest_fill(in_row, in_col);
                for (o, v) in px.iter_mut().zip(value) {
                    *o = (v * brightness).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        RgbImage::from_raw(width, height, out).expect("the output has the input's size")
    }
}

/// An RGB image's bytes, read by the transform.
struct Source<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
}

impl Source<'_> {
    /// Bilinear sample at (row, col); positions outside the image take the nearest edge pixel.
    fn sample_bilinear_nearest_fill(&self, row: f32, col: f32) -> [f32; 3] {
        let row = row.clamp(0.0, (self.height - 1) as f32);
        let col = col.clamp(0.0, (self.width - 1) as f32);
        // Both are non-negative here, so truncation is the floor.
        let (r0, c0) = (row as usize, col as usize);
        let (r1, c1) = ((r0 + 1).min(self.height - 1), (c0 + 1).min(self.width - 1));
        let (fr, fc) = (row - r0 as f32, col - c0 as f32);
        let at = |r: usize, c: usize| (r * self.width + c) * 3;
        let (p00, p01, p10, p11) = (at(r0, c0), at(r0, c1), at(r1, c0), at(r1, c1));
        let px = self.pixels;
        std::array::from_fn(|i| {
            let top = px[p00 + i] as f32 * (1.0 - fc) + px[p01 + i] as f32 * fc;
            let bottom = px[p10 + i] as f32 * (1.0 - fc) + px[p11 + i] as f32 * fc;
            top * (1.0 - fr) + bottom * fr
        })
    }
}

fn matmul3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// Version of how a copy is made, part of every copy's variant id: bump it when the same
/// draws give different pixels (2: transformed at the input size, after resizing).
pub const AUGMENT_VERSION: u32 = 2;

/// The feature-cache variant of copy `copy` under these settings and seed (never 0, which is
/// the unaugmented image).
pub fn variant_id(spec: &AugmentConfig, seed: u64, copy: usize) -> u32 {
    let mut h = blake3::Hasher::new();
    h.update(&AUGMENT_VERSION.to_le_bytes());
    h.update(
        serde_json::to_string(spec)
            .expect("settings serialise")
            .as_bytes(),
    );
    h.update(&seed.to_le_bytes());
    h.update(&(copy as u64).to_le_bytes());
    let bytes = h.finalize();
    u32::from_le_bytes(bytes.as_bytes()[..4].try_into().expect("4 bytes")).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn gradient_image() -> RgbImage {
        RgbImage::from_fn(40, 30, |x, y| Rgb([(x * 6) as u8, (y * 8) as u8, 100]))
    }

    fn identity() -> Transform {
        Transform {
            rotation_deg: 0.0,
            shift_rows: 0.0,
            shift_cols: 0.0,
            shear_deg: 0.0,
            zoom_rows: 1.0,
            zoom_cols: 1.0,
            flip: false,
            brightness: 1.0,
        }
    }

    #[test]
    fn identity_keeps_the_image_and_flip_mirrors_it() {
        let img = gradient_image();
        assert_eq!(identity().apply(&img), img);
        let flipped = Transform {
            flip: true,
            ..identity()
        }
        .apply(&img);
        assert_eq!(flipped.get_pixel(0, 5), img.get_pixel(39, 5));
    }

    #[test]
    fn shift_moves_content_and_fills_with_the_nearest_edge() {
        let img = gradient_image();
        // Keras's shift is where the output samples from: +5 columns shows content from the right.
        let shifted = Transform {
            shift_cols: 5.0,
            ..identity()
        }
        .apply(&img);
        assert_eq!(shifted.get_pixel(10, 3), img.get_pixel(15, 3));
        assert_eq!(shifted.get_pixel(39, 3), img.get_pixel(39, 3));
    }

    #[test]
    fn rotation_by_180_degrees_turns_the_image_over() {
        let img = gradient_image();
        let turned = Transform {
            rotation_deg: 180.0,
            ..identity()
        }
        .apply(&img);
        assert_eq!(turned.get_pixel(0, 0), img.get_pixel(39, 29));
        assert_eq!(turned.get_pixel(39, 0), img.get_pixel(0, 29));
    }

    #[test]
    fn brightness_scales_and_saturates() {
        let img = gradient_image();
        let bright = Transform {
            brightness: 2.0,
            ..identity()
        }
        .apply(&img);
        assert_eq!(bright.get_pixel(1, 1).0, [12, 16, 200]);
        assert_eq!(bright.get_pixel(39, 1).0[0], 255);
    }

    #[test]
    fn draws_are_deterministic_within_range_and_differ_per_copy() {
        let spec = AugmentConfig {
            copies: 2,
            rotation: 45.0,
            width_shift: 0.3,
            height_shift: 0.3,
            horizontal_flip: true,
            ..AugmentConfig::default()
        };
        let content = blake3::hash(b"face");
        let a = Transform::draw(&spec, 42, &content, 0, 100, 80);
        assert_eq!(a, Transform::draw(&spec, 42, &content, 0, 100, 80));
        assert_ne!(a, Transform::draw(&spec, 42, &content, 1, 100, 80));
        assert!(
            a.rotation_deg.abs() <= 45.0
                && a.shift_rows.abs() <= 30.0
                && a.shift_cols.abs() <= 24.0
        );
        assert_eq!((a.zoom_rows, a.brightness), (1.0, 1.0));
        assert_ne!(variant_id(&spec, 42, 0), variant_id(&spec, 42, 1));
        assert_ne!(variant_id(&spec, 42, 0), 0);
    }

    #[test]
    fn copies_made_before_version_2_have_other_variant_ids() {
        let spec = AugmentConfig {
            copies: 1,
            rotation: 10.0,
            ..AugmentConfig::default()
        };
        // Version 1's id: the same hash without the version in front.
        let mut h = blake3::Hasher::new();
        h.update(serde_json::to_string(&spec).unwrap().as_bytes());
        h.update(&42u64.to_le_bytes());
        h.update(&0u64.to_le_bytes());
        let version_1 = u32::from_le_bytes(h.finalize().as_bytes()[..4].try_into().unwrap()).max(1);
        assert_ne!(variant_id(&spec, 42, 0), version_1);
    }
}
