//! Running a cascade over one image level: summed-area tables of the image and its squares,
//! and the cascade compiled for the level's width so each window reads one flat array.

use image::GrayImage;

use super::xml::{Feature, Node};
use super::Cascade;

/// Summed-area tables of an image and of its squares, with a zero first row and column.
pub(super) struct Integral {
    pub(super) stride: usize,
    pub(super) sum: Vec<i32>,
    squares: Vec<f64>,
}

impl Integral {
    pub(super) fn new(image: &GrayImage) -> Self {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let stride = w + 1;
        let mut sum = vec![0i32; stride * (h + 1)];
        let mut squares = vec![0f64; stride * (h + 1)];
        let pixels = image.as_raw();
        for y in 0..h {
            let (mut row_sum, mut row_sq) = (0i32, 0f64);
            for x in 0..w {
                let v = pixels[y * w + x] as i32;
                row_sum += v;
                row_sq += (v * v) as f64;
                let at = (y + 1) * stride + x + 1;
                sum[at] = sum[at - stride] + row_sum;
                squares[at] = squares[at - stride] + row_sq;
            }
        }
        Integral {
            stride,
            sum,
            squares,
        }
    }
}

/// A rectangle as the four integral-image offsets from a window's top-left corner.
#[derive(Debug, Clone, Copy)]
struct Corners {
    tl: usize,
    tr: usize,
    bl: usize,
    br: usize,
}

impl Corners {
    fn new(x: u32, y: u32, w: u32, h: u32, stride: usize) -> Self {
        let (x, y, w, h) = (x as usize, y as usize, w as usize, h as usize);
        Corners {
            tl: y * stride + x,
            tr: y * stride + x + w,
            bl: (y + h) * stride + x,
            br: (y + h) * stride + x + w,
        }
    }

    /// The rectangle's sum for the window whose top-left integral entry is `origin`.
    ///
    /// Unchecked: `scan_level` only visits windows that fit the level, `Cascade::parse` only
    /// accepts rectangles inside the window, and the table has a row and column more than the
    /// level, so `origin + br` is always inside `table` (asserted once per level).
    #[inline(always)]
    fn sum(&self, table: &[i32], origin: usize) -> i32 {
        debug_assert!(
            origin + self.br < table.len(),
            "window outside the integral image"
        );
        // SAFETY: see above; every offset is at most `br`, which is checked per level.
        unsafe {
            *table.get_unchecked(origin + self.br)
                - *table.get_unchecked(origin + self.tr)
                - *table.get_unchecked(origin + self.bl)
                + *table.get_unchecked(origin + self.tl)
        }
    }

    #[inline(always)]
    fn sum_f64(&self, table: &[f64], origin: usize) -> f64 {
        table[origin + self.br] - table[origin + self.tr] - table[origin + self.bl]
            + table[origin + self.tl]
    }
}

/// The cascade compiled for one image width: every weak classifier carries its feature's
/// rectangles as integral-image offsets inline, so a window's stages read one flat array (the
/// first stage, where most windows end, stays in L1).
pub(super) struct CompiledCascade {
    stages: Vec<CompiledStage>,
    norm: Corners,
    norm_area: f64,
}

struct CompiledStage {
    threshold: f32,
    stumps: Vec<CompiledStump>,
    /// Weak classifiers deeper than one split, evaluated node by node.
    trees: Vec<CompiledTree>,
}

/// A one-split weak classifier: `left` if the feature is below `threshold`, else `right`.
#[derive(Clone, Copy)]
struct CompiledStump {
    feature: CompiledFeature,
    threshold: f32,
    left: f32,
    right: f32,
}

struct CompiledTree {
    nodes: Vec<(CompiledFeature, Node)>,
    leaves: Vec<f32>,
}

/// Up to three weighted rectangles (unused ones have weight 0 and read offset 0).
#[derive(Clone, Copy)]
struct CompiledFeature {
    corners: [Corners; 3],
    weights: [f32; 3],
}

impl CompiledFeature {
    fn new(feature: &Feature, stride: usize) -> Self {
        let mut corners = [Corners {
            tl: 0,
            tr: 0,
            bl: 0,
            br: 0,
        }; 3];
        let mut weights = [0.0; 3];
        for (i, r) in feature.rects.iter().take(3).enumerate() {
            corners[i] = Corners::new(r.x, r.y, r.w, r.h, stride);
            weights[i] = r.weight;
        }
        CompiledFeature { corners, weights }
    }

    #[inline(always)]
    fn value(&self, sum: &[i32], origin: usize) -> f32 {
        self.weights[0] * self.corners[0].sum(sum, origin) as f32
            + self.weights[1] * self.corners[1].sum(sum, origin) as f32
            + self.weights[2] * self.corners[2].sum(sum, origin) as f32
    }
}

pub(super) enum Verdict {
    Face,
    RejectedAtFirstStage,
    Rejected,
}

impl CompiledCascade {
    pub(super) fn new(cascade: &Cascade, stride: usize) -> Self {
        let feature = |i: usize| CompiledFeature::new(&cascade.features[i], stride);
        let stages = cascade
            .stages
            .iter()
            .map(|stage| {
                let (stumps, trees): (Vec<_>, Vec<_>) = stage.weak.iter().partition(|w| {
                    w.nodes.len() == 1 && w.nodes[0].left <= 0 && w.nodes[0].right <= 0
                });
                CompiledStage {
                    threshold: stage.threshold,
                    stumps: stumps
                        .iter()
                        .map(|w| {
                            let n = w.nodes[0];
                            CompiledStump {
                                feature: feature(n.feature),
                                threshold: n.threshold,
                                left: w.leaves[(-n.left) as usize],
                                right: w.leaves[(-n.right) as usize],
                            }
                        })
                        .collect(),
                    trees: trees
                        .iter()
                        .map(|w| CompiledTree {
                            nodes: w.nodes.iter().map(|n| (feature(n.feature), *n)).collect(),
                            leaves: w.leaves.clone(),
                        })
                        .collect(),
                }
            })
            .collect();
        // OpenCV normalises by the window less a one-pixel border.
        let (nw, nh) = (cascade.width - 2, cascade.height - 2);
        CompiledCascade {
            stages,
            norm: Corners::new(1, 1, nw, nh, stride),
            norm_area: (nw * nh) as f64,
        }
    }

    pub(super) fn run_at(&self, integral: &Integral, x: usize, y: usize) -> Verdict {
        let origin = y * integral.stride + x;
        let sum = self.norm.sum(&integral.sum, origin) as f64;
        let squares = self.norm.sum_f64(&integral.squares, origin);
        let nf = self.norm_area * squares - sum * sum;
        // Comparing feature * (1 / nf) with t is comparing feature with t * nf.
        let norm = if nf > 0.0 { nf.sqrt() as f32 } else { 1.0 };
        let table = &integral.sum;
        for (i, stage) in self.stages.iter().enumerate() {
            let mut total = 0.0f32;
            for stump in &stage.stumps {
                let value = stump.feature.value(table, origin);
                total += if value < stump.threshold * norm {
                    stump.left
                } else {
                    stump.right
                };
            }
            for tree in &stage.trees {
                total += tree.evaluate(table, origin, norm);
            }
            if total < stage.threshold {
                return if i == 0 {
                    Verdict::RejectedAtFirstStage
                } else {
                    Verdict::Rejected
                };
            }
        }
        Verdict::Face
    }
}

impl CompiledTree {
    fn evaluate(&self, table: &[i32], origin: usize, norm: f32) -> f32 {
        let mut index = 0usize;
        loop {
            let (feature, node) = &self.nodes[index];
            let next = if feature.value(table, origin) < node.threshold * norm {
                node.left
            } else {
                node.right
            };
            if next <= 0 {
                return self.leaves[(-next) as usize];
            }
            index = next as usize;
        }
    }
}
