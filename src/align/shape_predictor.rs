//! dlib's shape predictor (`shape_predictor_5_face_landmarks.dat`), read from dlib's file and
//! run as dlib runs it (`dlib/image_processing/shape_predictor.h`):
//! - the shape starts as the mean shape, in box-normalised coordinates ((0,0) at the box's top
//!   left, (1,1) at its bottom right);
//! - each of the 15 cascades reads its feature pixels, each an anchor landmark plus an offset
//!   that is carried by the similarity transform from the mean shape to the current shape, then
//!   mapped into the image (a pixel outside the image reads 0; a pixel is the rounded point; its
//!   value is the mean of R, G and B, truncated, as dlib's `get_pixel_intensity`);
//! - each of the cascade's 500 trees walks from the root, going left when
//!   `value[idx1] - value[idx2] > threshold`, and adds its leaf's shape offset;
//! - the final shape is mapped into the image.
//!
//! The file: version 1, the mean shape (a column matrix), the forests (per cascade, per tree:
//! the splits `(idx1, idx2, threshold)` and the leaf offsets), the feature pixels' anchors and
//! offsets, all in dlib's serialization (see `backbone::dlib::serial`).

use std::path::Path;

use image::RgbImage;

use crate::backbone::dlib::serial::Reader;
use crate::error::Result;

/// A point in image coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

struct Split {
    idx1: usize,
    idx2: usize,
    threshold: f32,
}

struct Tree {
    splits: Vec<Split>,
    /// One shape offset per leaf, each `[2 * parts]`.
    leaves: Vec<Vec<f32>>,
}

struct Cascade {
    trees: Vec<Tree>,
    anchors: Vec<usize>,
    /// Offsets from the anchors, in the mean shape's coordinates.
    deltas: Vec<[f32; 2]>,
}

/// A loaded shape predictor.
pub struct ShapePredictor {
    /// `[x0, y0, x1, y1, ...]`, box-normalised.
    mean: Vec<f32>,
    cascades: Vec<Cascade>,
}

/// A face box as dlib takes it: inclusive left, top, right, bottom.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
}

/// Where dlib's HOG detector would put the box of a face that the Haar cascade found at
/// `(x, y, side)`: the centre moved by (0.014, 0.080) of the side and the side scaled by 0.836.
/// Fitted (means of the per-face ratios) on the 10 seed test photos where both detectors find
/// one face; the ratios' standard deviations are 0.031, 0.043 and 0.076. The shape predictor
/// was trained on HOG boxes, so it is given boxes like them.
pub const HAAR_TO_DLIB: (f64, f64, f64) = (0.014, 0.080, 0.836);

impl FaceBox {
    /// dlib's box for a face the Haar cascade found at `x`, `y` with side `side` (see
    /// [`HAAR_TO_DLIB`]); for a capture crop (the Haar box resized to the whole image), pass the
    /// whole image.
    pub fn from_haar(x: f64, y: f64, side: f64) -> FaceBox {
        let (dx, dy, scale) = HAAR_TO_DLIB;
        let (cx, cy) = (
            x + (side - 1.0) / 2.0 + dx * side,
            y + (side - 1.0) / 2.0 + dy * side,
        );
        let half = (scale * side - 1.0) / 2.0;
        FaceBox {
            left: cx - half,
            top: cy - half,
            right: cx + half,
            bottom: cy + half,
        }
    }
}

impl ShapePredictor {
    /// Reads dlib's file.
    pub fn read(bytes: &[u8], path: &Path) -> Result<ShapePredictor> {
        let mut r = Reader::new(bytes, path);
        let version = r.int()?;
        if version != 1 {
            return Err(r.error(format!("shape predictor version {version}")));
        }
        let mean = read_column(&mut r)?;
        if mean.is_empty() || mean.len() % 2 != 0 || mean.len() > 2 * 1000 {
            return Err(r.error(format!("a mean shape of {} values", mean.len())));
        }
        let cascades_count = r.count("cascades", 100)?;
        let mut forests = Vec::with_capacity(cascades_count);
        for _ in 0..cascades_count {
            let trees = r.count("trees", 10_000)?;
            let mut forest = Vec::with_capacity(trees);
            for _ in 0..trees {
                forest.push(read_tree(&mut r, mean.len())?);
            }
            forests.push(forest);
        }
        let anchor_sets = r.count("anchor sets", 100)?;
        let mut anchors = Vec::with_capacity(anchor_sets);
        for _ in 0..anchor_sets {
            let n = r.count("feature pixels", 100_000)?;
            let set = (0..n)
                .map(|_| r.count("anchor", mean.len() / 2 - 1))
                .collect::<Result<Vec<_>>>()?;
            anchors.push(set);
        }
        let delta_sets = r.count("offset sets", 100)?;
        let mut deltas = Vec::with_capacity(delta_sets);
        for _ in 0..delta_sets {
            let n = r.count("feature pixels", 100_000)?;
            let set = (0..n)
                .map(|_| Ok([r.float()? as f32, r.float()? as f32]))
                .collect::<Result<Vec<_>>>()?;
            deltas.push(set);
        }
        if anchors.len() != forests.len() || deltas.len() != forests.len() {
            return Err(r.error("feature pixels for a different number of cascades"));
        }
        let mut cascades = Vec::new();
        for ((trees, anchors), deltas) in forests.into_iter().zip(anchors).zip(deltas) {
            let pixels = anchors.len();
            if deltas.len() != pixels
                || trees
                    .iter()
                    .flat_map(|t| &t.splits)
                    .any(|s| s.idx1 >= pixels || s.idx2 >= pixels)
            {
                return Err(r.error("a split reads a feature pixel the cascade does not have"));
            }
            cascades.push(Cascade {
                trees,
                anchors,
                deltas,
            });
        }
        Ok(ShapePredictor { mean, cascades })
    }

    /// The landmarks of the face in `face` (dlib's order; for the 5-point model: the right
    /// eye's outer and inner corners, the left eye's outer and inner corners, the nose base).
    pub fn predict(&self, image: &RgbImage, face: FaceBox) -> Vec<Point> {
        let to_image = BoxTransform::new(face);
        let mut shape = self.mean.clone();
        let mut values = Vec::new();
        for cascade in &self.cascades {
            let m = similarity(&self.mean, &shape);
            values.clear();
            values.extend(cascade.anchors.iter().zip(&cascade.deltas).map(|(&a, d)| {
                let x = m[0] * d[0] + m[1] * d[1] + shape[2 * a];
                let y = m[2] * d[0] + m[3] * d[1] + shape[2 * a + 1];
                let (px, py) = to_image.apply(f64::from(x), f64::from(y));
                intensity(image, px.round(), py.round())
            }));
            for tree in &cascade.trees {
                let leaf = tree.leaf(&values);
                for (s, d) in shape.iter_mut().zip(leaf) {
                    *s += d;
                }
            }
        }
        shape
            .chunks_exact(2)
            .map(|p| {
                let (x, y) = to_image.apply(f64::from(p[0]), f64::from(p[1]));
                Point { x, y }
            })
            .collect()
    }
}

impl Tree {
    fn leaf(&self, values: &[f32]) -> &[f32] {
        let mut i = 0;
        while i < self.splits.len() {
            let s = &self.splits[i];
            i = if values[s.idx1] - values[s.idx2] > s.threshold {
                2 * i + 1
            } else {
                2 * i + 2
            };
        }
        &self.leaves[i - self.splits.len()]
    }
}

/// A column matrix: rows and columns (dlib writes them negated), then the values.
fn read_column(r: &mut Reader) -> Result<Vec<f32>> {
    let rows = r.int()?.unsigned_abs();
    let cols = r.int()?.unsigned_abs();
    if cols != 1 || rows > 100_000 {
        return Err(r.error(format!(
            "a {rows}x{cols} matrix where a column was expected"
        )));
    }
    (0..rows).map(|_| Ok(r.float()? as f32)).collect()
}

fn read_tree(r: &mut Reader, parts2: usize) -> Result<Tree> {
    let n = r.count("splits", 1 << 16)?;
    let splits = (0..n)
        .map(|_| {
            Ok(Split {
                idx1: r.count("feature index", 1 << 20)?,
                idx2: r.count("feature index", 1 << 20)?,
                threshold: r.float()? as f32,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let leaves_count = r.count("leaves", 1 << 17)?;
    if leaves_count != n + 1 {
        return Err(r.error(format!("{n} splits but {leaves_count} leaves")));
    }
    let leaves = (0..leaves_count)
        .map(|_| {
            let leaf = read_column(r)?;
            if leaf.len() != parts2 {
                return Err(r.error("a leaf that is not a shape offset"));
            }
            Ok(leaf)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tree { splits, leaves })
}

/// The box's normalised coordinates to image coordinates: (0,0) to the top left corner, (1,1)
/// to the bottom right (dlib's `unnormalizing_tform`).
struct BoxTransform {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl BoxTransform {
    fn new(b: FaceBox) -> Self {
        BoxTransform {
            left: b.left,
            top: b.top,
            width: b.right - b.left,
            height: b.bottom - b.top,
        }
    }

    fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        (self.left + x * self.width, self.top + y * self.height)
    }
}

/// The 2x2 part `[a, -b, b, a]` of the least-squares similarity transform taking the shape
/// `from` to the shape `to` (`[x0, y0, x1, y1, ...]`; what dlib's `find_similarity_transform`
/// gives when no reflection is involved).
fn similarity(from: &[f32], to: &[f32]) -> [f32; 4] {
    let points = |s: &[f32]| -> Vec<(f64, f64)> {
        s.chunks_exact(2)
            .map(|p| (f64::from(p[0]), f64::from(p[1])))
            .collect()
    };
    let t = super::Similarity::fit(&points(from), &points(to));
    let (a, b) = (t.a as f32, t.b as f32);
    [a, -b, b, a]
}

/// dlib's `get_pixel_intensity` of an RGB pixel: the mean of its channels, truncated; 0 outside
/// the image.
fn intensity(image: &RgbImage, x: f64, y: f64) -> f32 {
    if x < 0.0 || y < 0.0 || x >= f64::from(image.width()) || y >= f64::from(image.height()) {
        return 0.0;
    }
    let p = image.get_pixel(x as u32, y as u32).0;
    ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_similarity_between_shapes_recovers_rotation_and_scale() {
        let from = [0.0f32, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        // Rotated by 90 degrees, doubled, moved.
        let to: Vec<f32> = from
            .chunks_exact(2)
            .flat_map(|p| [5.0 - 2.0 * p[1], 3.0 + 2.0 * p[0]])
            .collect();
        let m = similarity(&from, &to);
        let expected = [0.0, -2.0, 2.0, 0.0];
        for (a, b) in m.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{m:?}");
        }
        assert_eq!(
            similarity(&[1.0, 1.0, 1.0, 1.0], &to[..4]),
            [1.0, 0.0, 0.0, 1.0]
        );
    }

    #[test]
    fn a_haar_box_moves_down_and_shrinks_to_dlibs() {
        let b = FaceBox::from_haar(100.0, 50.0, 200.0);
        let (dx, dy, scale) = HAAR_TO_DLIB;
        assert!(((b.right - b.left + 1.0) - scale * 200.0).abs() < 1e-9);
        assert!((((b.left + b.right) / 2.0) - (199.5 + dx * 200.0)).abs() < 1e-9);
        assert!((((b.top + b.bottom) / 2.0) - (149.5 + dy * 200.0)).abs() < 1e-9);
    }

    #[test]
    fn pixels_outside_the_image_read_zero_and_inside_the_mean_of_rgb() {
        let image = RgbImage::from_pixel(4, 3, image::Rgb([10, 20, 31]));
        assert_eq!(intensity(&image, 3.0, 2.0), 20.0);
        assert_eq!(intensity(&image, 4.0, 0.0), 0.0);
        assert_eq!(intensity(&image, -1.0, 0.0), 0.0);
    }
}
