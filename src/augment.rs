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
        // Along an output row the sampled position moves by a fixed step (one input column per
        // output column, mirrored when flipped), so it is advanced rather than recomputed, in
        // fixed point with POSITION_BITS of fraction (the drift over a row is negligible).
        let (first_col, col_step) = if self.flip {
            ((width - 1) as f32, -1.0)
        } else {
            (0.0, 1.0)
        };
        let fixed = |v: f32| (v as f64 * (1u64 << POSITION_BITS) as f64).round() as i64;
        let (row_step, col_step) = (fixed(m[0][1] * col_step), fixed(m[1][1] * col_step));
        for (y, out_row) in out.chunks_exact_mut(3 * source.width).enumerate() {
            let row = y as f32;
            let mut in_row = fixed(m[0][0] * row + m[0][1] * first_col + m[0][2]);
            let mut in_col = fixed(m[1][0] * row + m[1][1] * first_col + m[1][2]);
            for px in out_row.chunks_exact_mut(3) {
                let value = source.sample_bilinear_nearest_fill(in_row, in_col);
                for (o, v) in px.iter_mut().zip(value) {
                    *o = if brightness == 1.0 {
                        // The weights sum to 1 << WEIGHT_BITS: round and drop the fraction.
                        ((v + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS) as u8
                    } else {
                        let scaled = v as f32 / (1u32 << WEIGHT_BITS) as f32 * brightness;
                        // Non-negative, so adding a half and truncating rounds to nearest.
                        (scaled.clamp(0.0, 255.0) + 0.5) as u8
                    };
                }
                in_row += row_step;
                in_col += col_step;
            }
        }
        RgbImage::from_raw(width, height, out).expect("the output has the input's size")
    }
}

/// Fractional bits of a sampled position (an i64 holds any image side with these).
const POSITION_BITS: u32 = 32;
/// Fractional bits of each bilinear weight, and of the product of a row and a column weight.
const FRACTION_BITS: u32 = 11;
const WEIGHT_BITS: u32 = 2 * FRACTION_BITS;

/// An RGB image's bytes, read by the transform.
struct Source<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
}

impl Source<'_> {
    /// Bilinear sample at (row, col), given in fixed point, times 1 << WEIGHT_BITS;
    /// positions outside the image take the nearest edge pixel. The weights have
    /// `FRACTION_BITS` per axis (a 2048th of a pixel), which keeps the four taps in integer
    /// arithmetic: 255 times the weights' sum, 1 << 22, fits a u32.
    #[inline]
    fn sample_bilinear_nearest_fill(&self, row: i64, col: i64) -> [u32; 3] {
        let max_row = (self.height as i64 - 1) << POSITION_BITS;
        let max_col = (self.width as i64 - 1) << POSITION_BITS;
        let (row, col) = (row.clamp(0, max_row), col.clamp(0, max_col));
        let (r0, c0) = (
            (row >> POSITION_BITS) as usize,
            (col >> POSITION_BITS) as usize,
        );
        let (r1, c1) = ((r0 + 1).min(self.height - 1), (c0 + 1).min(self.width - 1));
        // The fraction rounded to FRACTION_BITS (a carry to ONE weighs the next pixel wholly).
        const ONE: u32 = 1 << FRACTION_BITS;
        let shift = POSITION_BITS - FRACTION_BITS;
        let mask = (1i64 << POSITION_BITS) - 1;
        let fraction = |v: i64| (((v & mask) + (1 << (shift - 1))) >> shift) as u32;
        let (fr, fc) = (fraction(row), fraction(col));
        let weights = [
            (ONE - fr) * (ONE - fc),
            (ONE - fr) * fc,
            fr * (ONE - fc),
            fr * fc,
        ];
        let at = |r: usize, c: usize| -> &[u8] {
            let i = (r * self.width + c) * 3;
            &self.pixels[i..i + 3]
        };
        let taps = [at(r0, c0), at(r0, c1), at(r1, c0), at(r1, c1)];
        std::array::from_fn(|i| {
            taps.iter()
                .zip(weights)
                .map(|(tap, w)| tap[i] as u32 * w)
                .sum()
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
    // The seed is hashed as given, wherever it was written, so equal copies share an id.
    let settings = AugmentConfig {
        seed: None,
        ..spec.clone()
    };
    h.update(
        serde_json::to_string(&settings)
            .expect("settings serialise")
            .as_bytes(),
    );
    h.update(&seed.to_le_bytes());
    h.update(&(copy as u64).to_le_bytes());
    let bytes = h.finalize();
    u32::from_le_bytes(bytes.as_bytes()[..4].try_into().expect("4 bytes"))
        .clamp(1, crate::features::MIRROR_VARIANT - 1)
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

    /// The fixed-point sampling against bilinear sampling in f64 at the same positions: within
    /// one grey level everywhere, for a transform with every part (and a flip) on a textured
    /// 224x224 square.
    #[test]
    fn fixed_point_sampling_is_within_one_level_of_exact_bilinear() {
        let image = RgbImage::from_fn(224, 224, |x, y| {
            Rgb([
                ((x * 7 + y * 3) % 256) as u8,
                ((x * x / 50 + y) % 256) as u8,
                ((x ^ y) * 5 % 256) as u8,
            ])
        });
        let transform = Transform {
            rotation_deg: 23.0,
            shift_rows: 17.3,
            shift_cols: -41.7,
            shear_deg: 8.0,
            zoom_rows: 1.1,
            zoom_cols: 0.85,
            flip: true,
            brightness: 1.0,
        };
        let out = transform.apply(&image);
        let m = transform.input_position_map(224, 224);
        let exact = |row: f64, col: f64, c: usize| -> f64 {
            let row = row.clamp(0.0, 223.0);
            let col = col.clamp(0.0, 223.0);
            let (r0, c0) = (row.floor() as u32, col.floor() as u32);
            let (r1, c1) = ((r0 + 1).min(223), (c0 + 1).min(223));
            let (fr, fc) = (row - r0 as f64, col - c0 as f64);
            let p = |r: u32, cc: u32| image.get_pixel(cc, r)[c] as f64;
            let top = p(r0, c0) * (1.0 - fc) + p(r0, c1) * fc;
            let bottom = p(r1, c0) * (1.0 - fc) + p(r1, c1) * fc;
            top * (1.0 - fr) + bottom * fr
        };
        let mut worst = 0.0f64;
        for (x, y, px) in out.enumerate_pixels() {
            let (row, col) = (y as f64, (223 - x) as f64);
            let in_row = m[0][0] * row + m[0][1] * col + m[0][2];
            let in_col = m[1][0] * row + m[1][1] * col + m[1][2];
            for c in 0..3 {
                worst = worst.max((px[c] as f64 - exact(in_row, in_col, c)).abs());
            }
        }
        // Rounding to 8 bits alone is half a level; the fixed point adds a little on steep edges.
        assert!(worst <= 0.6, "largest difference {worst} grey levels");
    }
}
