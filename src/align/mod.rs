//! Face alignment for the dlib backbone: dlib's 5-point shape predictor (an ensemble of
//! regression trees over pixel differences, Kazemi and Sullivan), read from dlib's own file, and
//! dlib's aligned face chips.

pub mod chip;
pub mod shape_predictor;

pub use chip::face_chip;
pub use shape_predictor::{FaceBox, Point, ShapePredictor};

/// A similarity transform: `x' = a x - b y + tx`, `y' = b x + a y + ty` (rotation, uniform
/// scale, translation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    /// The least-squares similarity taking the points `from` to `to` (what dlib's
    /// `find_similarity_transform` gives when no reflection is involved); the identity when
    /// `from` has no spread.
    pub fn fit(from: &[(f64, f64)], to: &[(f64, f64)]) -> Similarity {
        let n = from.len() as f64;
        let mean = |pts: &[(f64, f64)]| {
            let (sx, sy) = pts.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0, y + p.1));
            (sx / n, sy / n)
        };
        let ((fx, fy), (mx, my)) = (mean(from), mean(to));
        let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
        for (f, t) in from.iter().zip(to) {
            let (ax, ay, bx, by) = (f.0 - fx, f.1 - fy, t.0 - mx, t.1 - my);
            dot += ax * bx + ay * by;
            cross += ax * by - ay * bx;
            norm += ax * ax + ay * ay;
        }
        let (a, b) = if norm == 0.0 {
            (1.0, 0.0)
        } else {
            (dot / norm, cross / norm)
        };
        Similarity {
            a,
            b,
            tx: mx - (a * fx - b * fy),
            ty: my - (b * fx + a * fy),
        }
    }
}
