//! A Viola-Jones face detector that reads OpenCV's cascade XML files (the "new" format written
//! by `opencv_traincascade`: boosted stages of HAAR stumps or trees over a fixed window, e.g.
//! `haarcascade_frontalface_default.xml`) and reproduces `CascadeClassifier::detectMultiScale`:
//! the image is scaled down by powers of the scale factor, a 24x24 window slides over each
//! level (2-pixel steps below scale 2, skipping ahead after a first-stage rejection), every
//! window is normalised by its standard deviation, and the hits are merged with OpenCV's
//! `groupRectangles` (eps 0.2, more than `min_neighbors` hits per group, small groups inside big
//! ones dropped). No crate reads these files.

use std::path::Path;

use image::GrayImage;
use serde::Serialize;

use crate::error::{Error, Result};

/// A detection in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

impl Rect {
    pub fn area(&self) -> i64 {
        self.width as i64 * self.height as i64
    }

    /// Intersection over union with another box.
    pub fn iou(&self, other: &Rect) -> f64 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.width).min(other.x + other.width);
        let y1 = (self.y + self.height).min(other.y + other.height);
        let inter = (x1 - x0).max(0) as i64 * (y1 - y0).max(0) as i64;
        let union = self.area() + other.area() - inter;
        if union == 0 {
            0.0
        } else {
            inter as f64 / union as f64
        }
    }
}

/// `detectMultiScale`'s parameters; the defaults are the notebook's (scale 1.3, 5 neighbours).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectParams {
    pub scale_factor: f64,
    pub min_neighbors: u32,
    /// Smallest and largest face side in pixels (`None`: no limit).
    pub min_size: u32,
    pub max_size: Option<u32>,
}

impl Default for DetectParams {
    fn default() -> Self {
        DetectParams {
            scale_factor: 1.3,
            min_neighbors: 5,
            min_size: 0,
            max_size: None,
        }
    }
}

/// One rectangle of a HAAR feature, in window coordinates, and its weight.
#[derive(Debug, Clone, Copy)]
struct WeightedRect {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    weight: f32,
}

#[derive(Debug, Clone)]
struct Feature {
    rects: Vec<WeightedRect>,
}

/// A tree node: `value < threshold` goes left. A child `<= 0` is leaf `-child`.
#[derive(Debug, Clone, Copy)]
struct Node {
    left: i32,
    right: i32,
    feature: usize,
    threshold: f32,
}

#[derive(Debug, Clone)]
struct WeakClassifier {
    nodes: Vec<Node>,
    leaves: Vec<f32>,
}

#[derive(Debug, Clone)]
struct Stage {
    threshold: f32,
    weak: Vec<WeakClassifier>,
}

/// A loaded cascade.
#[derive(Debug, Clone)]
pub struct Cascade {
    width: u32,
    height: u32,
    stages: Vec<Stage>,
    features: Vec<Feature>,
}

impl Cascade {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|reason| {
            Error::InvalidArgument(format!(
                "{}: not a cascade facelab can read: {reason}",
                path.display()
            ))
        })
    }

    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let doc = roxmltree::Document::parse(text).map_err(|e| e.to_string())?;
        let cascade = doc
            .descendants()
            .find(|n| n.has_tag_name("cascade"))
            .ok_or("no <cascade> element (old-format cascades are not supported; convert them with OpenCV)")?;
        let child = |name: &str| cascade.children().find(|n| n.has_tag_name(name));
        let text_of = |name: &str| {
            child(name)
                .and_then(|n| n.text())
                .map(str::trim)
                .unwrap_or("")
        };
        if text_of("stageType") != "BOOST" || text_of("featureType") != "HAAR" {
            return Err(format!(
                "stage type {:?} / feature type {:?}: only BOOST + HAAR",
                text_of("stageType"),
                text_of("featureType")
            ));
        }
        let width: u32 = text_of("width").parse().map_err(|_| "bad <width>")?;
        let height: u32 = text_of("height").parse().map_err(|_| "bad <height>")?;
        let features = items(child("features").ok_or("no <features>")?)
            .map(parse_feature)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let stages = items(child("stages").ok_or("no <stages>")?)
            .map(|s| parse_stage(s, features.len()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if stages.is_empty() {
            return Err("no stages".into());
        }
        // Detection reads the integral image unchecked: every rectangle must lie in the window.
        if let Some(r) = features
            .iter()
            .flat_map(|f| &f.rects)
            .find(|r| r.x + r.w > width || r.y + r.h > height)
        {
            return Err(format!(
                "feature rectangle {r:?} leaves the {width}x{height} window"
            ));
        }
        if width < 3 || height < 3 {
            return Err(format!("window {width}x{height} is too small"));
        }
        Ok(Cascade {
            width,
            height,
            stages,
            features,
        })
    }

    /// Faces in a grayscale image, as OpenCV's `detectMultiScale` finds them.
    pub fn detect(&self, image: &GrayImage, params: &DetectParams) -> Vec<Rect> {
        let candidates = self.detect_ungrouped(image, params);
        group_rectangles(candidates, params.min_neighbors, GROUP_EPS)
    }

    /// Every window the cascade accepts, before grouping.
    pub fn detect_ungrouped(&self, image: &GrayImage, params: &DetectParams) -> Vec<Rect> {
        let (iw, ih) = image.dimensions();
        let max_size = params.max_size.unwrap_or(iw.max(ih));
        let mut found = Vec::new();
        let mut factor = 1.0f64;
        loop {
            let win_w = round(self.width as f64 * factor);
            let win_h = round(self.height as f64 * factor);
            let scaled_w = round(iw as f64 / factor);
            let scaled_h = round(ih as f64 / factor);
            if scaled_w < self.width as i32
                || scaled_h < self.height as i32
                || win_w > max_size as i32
                || win_h > max_size as i32
            {
                break;
            }
            if win_w >= params.min_size as i32 && win_h >= params.min_size as i32 {
                let level = resize_bilinear(image, scaled_w as u32, scaled_h as u32);
                self.scan_level(&level, factor, win_w, win_h, &mut found);
            }
            factor *= params.scale_factor;
        }
        found
    }

    fn scan_level(
        &self,
        level: &GrayImage,
        factor: f64,
        win_w: i32,
        win_h: i32,
        found: &mut Vec<Rect>,
    ) {
        let integral = Integral::new(level);
        let compiled = CompiledCascade::new(self, integral.stride);
        let step = if factor >= 2.0 { 1 } else { 2 };
        let (w, h) = level.dimensions();
        // Every position where the window fits, the last one included (OpenCV's working size
        // is taken from the integral image, one larger than the level).
        let (span_x, span_y) = (
            (w + 1).saturating_sub(self.width),
            (h + 1).saturating_sub(self.height),
        );
        if span_x == 0 || span_y == 0 {
            return;
        }
        // The furthest any window reads: its bottom-right integral entry (see `Corners::sum`).
        let last_origin = (span_y as usize - 1) * integral.stride + span_x as usize - 1;
        let window_corner = self.height as usize * integral.stride + self.width as usize;
        assert!(
            last_origin + window_corner < integral.sum.len(),
            "windows stay inside the integral image"
        );
        let mut y = 0;
        while y < span_y {
            let mut x = 0;
            while x < span_x {
                match compiled.run_at(&integral, x as usize, y as usize) {
                    Verdict::Face => found.push(Rect {
                        x: round(x as f64 * factor),
                        y: round(y as f64 * factor),
                        width: win_w,
                        height: win_h,
                    }),
                    // Rejected by the first stage: the next window is very likely no face.
                    Verdict::RejectedAtFirstStage => x += step,
                    Verdict::Rejected => {}
                }
                x += step;
            }
            y += step;
        }
    }
}

const GROUP_EPS: f64 = 0.2;

/// OpenCV's `cvRound`: half away from zero is close enough to its banker's rounding here.
fn round(v: f64) -> i32 {
    v.round() as i32
}

fn items<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> {
    node.children().filter(|n| n.has_tag_name("_"))
}

fn numbers<T: std::str::FromStr>(
    node: Option<roxmltree::Node>,
    what: &str,
) -> std::result::Result<Vec<T>, String> {
    let text = node
        .and_then(|n| n.text())
        .ok_or_else(|| format!("missing <{what}>"))?;
    text.split_whitespace()
        .map(|t| {
            t.parse::<T>()
                .map_err(|_| format!("bad number {t:?} in <{what}>"))
        })
        .collect()
}

fn parse_feature(node: roxmltree::Node) -> std::result::Result<Feature, String> {
    if node
        .children()
        .any(|n| n.has_tag_name("tilted") && n.text().map(str::trim) == Some("1"))
    {
        return Err("tilted HAAR features are not supported".into());
    }
    let rects_node = node
        .children()
        .find(|n| n.has_tag_name("rects"))
        .ok_or("feature without <rects>")?;
    let rects = items(rects_node)
        .map(|r| {
            let v: Vec<f32> = numbers(Some(r), "rects")?;
            match v[..] {
                [x, y, w, h, weight] if x >= 0.0 && y >= 0.0 && w > 0.0 && h > 0.0 => {
                    Ok(WeightedRect {
                        x: x as u32,
                        y: y as u32,
                        w: w as u32,
                        h: h as u32,
                        weight,
                    })
                }
                _ => Err(format!("bad rectangle {v:?}")),
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Feature { rects })
}

fn parse_stage(node: roxmltree::Node, feature_count: usize) -> std::result::Result<Stage, String> {
    let threshold: f32 = numbers(
        node.children().find(|n| n.has_tag_name("stageThreshold")),
        "stageThreshold",
    )?
    .first()
    .copied()
    .ok_or("empty <stageThreshold>")?;
    let weak_node = node
        .children()
        .find(|n| n.has_tag_name("weakClassifiers"))
        .ok_or("stage without <weakClassifiers>")?;
    let weak = items(weak_node)
        .map(|w| {
            let raw: Vec<f64> = numbers(
                w.children().find(|n| n.has_tag_name("internalNodes")),
                "internalNodes",
            )?;
            let leaves: Vec<f32> = numbers(
                w.children().find(|n| n.has_tag_name("leafValues")),
                "leafValues",
            )?;
            if raw.is_empty() || !raw.len().is_multiple_of(4) {
                return Err(format!("internalNodes of length {}", raw.len()));
            }
            let nodes: Vec<Node> = raw
                .chunks_exact(4)
                .map(|n| Node {
                    left: n[0] as i32,
                    right: n[1] as i32,
                    feature: n[2] as usize,
                    threshold: n[3] as f32,
                })
                .collect();
            let valid_child = |c: i32| {
                if c <= 0 {
                    ((-c) as usize) < leaves.len()
                } else {
                    (c as usize) < nodes.len()
                }
            };
            if nodes.iter().any(|n| {
                n.feature >= feature_count || !valid_child(n.left) || !valid_child(n.right)
            }) {
                return Err("a tree refers to a missing node, leaf or feature".into());
            }
            Ok(WeakClassifier { nodes, leaves })
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Stage { threshold, weak })
}

/// Summed-area tables of an image and of its squares, with a zero first row and column.
struct Integral {
    stride: usize,
    sum: Vec<i32>,
    squares: Vec<f64>,
}

impl Integral {
    fn new(image: &GrayImage) -> Self {
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
struct CompiledCascade {
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

enum Verdict {
    Face,
    RejectedAtFirstStage,
    Rejected,
}

impl CompiledCascade {
    fn new(cascade: &Cascade, stride: usize) -> Self {
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

    fn run_at(&self, integral: &Integral, x: usize, y: usize) -> Verdict {
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

/// Bilinear resize with OpenCV's pixel-centre alignment (`INTER_LINEAR`, no antialiasing).
pub fn resize_bilinear(image: &GrayImage, width: u32, height: u32) -> GrayImage {
    let (sw, sh) = image.dimensions();
    if (sw, sh) == (width, height) {
        return image.clone();
    }
    let (fx, fy) = (sw as f64 / width as f64, sh as f64 / height as f64);
    let src = image.as_raw();
    let taps = |dst: u32, scale: f64, size: u32| -> (usize, usize, f32) {
        let pos = ((dst as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (pos.floor() as u32).min(size - 1);
        let i1 = (i0 + 1).min(size - 1);
        (i0 as usize, i1 as usize, (pos - i0 as f64).min(1.0) as f32)
    };
    let cols: Vec<(usize, usize, f32)> = (0..width).map(|x| taps(x, fx, sw)).collect();
    let mut out = vec![0u8; (width * height) as usize];
    for y in 0..height {
        let (r0, r1, wy) = taps(y, fy, sh);
        let (row0, row1) = (&src[r0 * sw as usize..], &src[r1 * sw as usize..]);
        for (x, &(c0, c1, wx)) in cols.iter().enumerate() {
            let top = row0[c0] as f32 * (1.0 - wx) + row0[c1] as f32 * wx;
            let bottom = row1[c0] as f32 * (1.0 - wx) + row1[c1] as f32 * wx;
            out[y as usize * width as usize + x] = (top * (1.0 - wy) + bottom * wy).round() as u8;
        }
    }
    GrayImage::from_raw(width, height, out).expect("buffer matches size")
}

/// OpenCV's `groupRectangles`: clusters of similar rectangles averaged, clusters with at most
/// `min_neighbors` members dropped, and clusters lying inside a bigger, stronger one dropped.
pub fn group_rectangles(rects: Vec<Rect>, min_neighbors: u32, eps: f64) -> Vec<Rect> {
    if min_neighbors == 0 || rects.is_empty() {
        return rects;
    }
    let labels = partition(&rects, |a, b| similar(a, b, eps));
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut sums = vec![(0i64, 0i64, 0i64, 0i64); classes];
    let mut counts = vec![0u32; classes];
    for (r, &label) in rects.iter().zip(&labels) {
        let s = &mut sums[label];
        s.0 += r.x as i64;
        s.1 += r.y as i64;
        s.2 += r.width as i64;
        s.3 += r.height as i64;
        counts[label] += 1;
    }
    let averaged: Vec<Rect> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &n)| {
            let inv = 1.0 / n as f64;
            Rect {
                x: round(s.0 as f64 * inv),
                y: round(s.1 as f64 * inv),
                width: round(s.2 as f64 * inv),
                height: round(s.3 as f64 * inv),
            }
        })
        .collect();
    let mut out = Vec::new();
    for (i, r1) in averaged.iter().enumerate() {
        let n1 = counts[i];
        if n1 <= min_neighbors {
            continue;
        }
        let swallowed = averaged.iter().enumerate().any(|(j, r2)| {
            let n2 = counts[j];
            if j == i || n2 <= min_neighbors {
                return false;
            }
            let dx = round(r2.width as f64 * eps);
            let dy = round(r2.height as f64 * eps);
            r1.x >= r2.x - dx
                && r1.y >= r2.y - dy
                && r1.x + r1.width <= r2.x + r2.width + dx
                && r1.y + r1.height <= r2.y + r2.height + dy
                && (n2 > n1.max(3) || n1 < 3)
        });
        if !swallowed {
            out.push(*r1);
        }
    }
    out
}

fn similar(a: &Rect, b: &Rect, eps: f64) -> bool {
    let delta = eps * (a.width.min(b.width) + a.height.min(b.height)) as f64 * 0.5;
    let close = |u: i32, v: i32| ((u - v).abs() as f64) <= delta;
    close(a.x, b.x)
        && close(a.y, b.y)
        && close(a.x + a.width, b.x + b.width)
        && close(a.y + a.height, b.y + b.height)
}

/// Equivalence classes of `items` under `same` (its transitive closure), labelled from 0 in
/// order of first appearance.
fn partition<T>(items: &[T], same: impl Fn(&T, &T) -> bool) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..items.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..items.len() {
        for j in 0..i {
            if same(&items[i], &items[j]) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                if a != b {
                    parent[a] = b;
                }
            }
        }
    }
    let mut by_root = std::collections::HashMap::new();
    (0..items.len())
        .map(|i| {
            let r = root(&mut parent, i);
            let next = by_root.len();
            *by_root.entry(r).or_insert(next)
        })
        .collect()
}

/// File name of OpenCV's frontal-face cascade.
pub const FACE_CASCADE_FILE: &str = "haarcascade_frontalface_default.xml";
/// Where OpenCV publishes it, for machines that have no OpenCV installed.
pub const FACE_CASCADE_URL: &str = "https://raw.githubusercontent.com/opencv/opencv/4.x/data/haarcascades/haarcascade_frontalface_default.xml";
const INSTALL_DIRS: [&str; 4] = [
    "/usr/share/opencv4/haarcascades",
    "/usr/share/opencv/haarcascades",
    "/usr/local/share/opencv4/haarcascades",
    "/opt/homebrew/share/opencv4/haarcascades",
];

/// OpenCV's face cascade where it is installed (Debian's `opencv-data` and the usual
/// prefixes), or the explicit path when one is given.
pub fn find_face_cascade(explicit: Option<&Path>) -> Result<std::path::PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(Error::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such cascade file"),
            ))
        };
    }
    INSTALL_DIRS
        .iter()
        .map(|d| Path::new(d).join(FACE_CASCADE_FILE))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::InvalidArgument(format!("{FACE_CASCADE_FILE} is not installed")))
}

/// The face cascade, first match wins: the explicit path, an installed copy, the copy cached in
/// `models_dir`, else a download from OpenCV's repository into `models_dir` (checked to parse,
/// written atomically).
pub fn obtain_face_cascade(
    explicit: Option<&Path>,
    models_dir: &Path,
) -> Result<std::path::PathBuf> {
    if explicit.is_some() {
        return find_face_cascade(explicit);
    }
    if let Ok(installed) = find_face_cascade(None) {
        return Ok(installed);
    }
    let cached = models_dir.join(FACE_CASCADE_FILE);
    if cached.is_file() {
        return Ok(cached);
    }
    let unavailable = |why: String| {
        Error::InvalidArgument(format!(
            "cannot find {FACE_CASCADE_FILE}: not installed, not in {}, and the download failed ({why}). \
             Install OpenCV's data (Debian: apt-get install opencv-data), or pass --cascade PATH",
            models_dir.display()
        ))
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(10))
        .timeout_read(std::time::Duration::from_secs(30))
        .build();
    let text = agent
        .get(FACE_CASCADE_URL)
        .call()
        .map_err(|e| unavailable(e.to_string()))?
        .into_string()
        .map_err(|e| unavailable(e.to_string()))?;
    Cascade::parse(&text)
        .map_err(|e| unavailable(format!("the download is not a cascade: {e}")))?;
    std::fs::create_dir_all(models_dir).map_err(|e| Error::io(models_dir, e))?;
    crate::model::write_atomically(&cached, text.as_bytes())?;
    Ok(cached)
}

/// Grayscale as OpenCV's `cvtColor(..., COLOR_RGB2GRAY)` computes it (fixed-point BT.601), so
/// detections match OpenCV's on the same photo.
pub fn to_gray(image: &image::RgbImage) -> GrayImage {
    let (w, h) = image.dimensions();
    let gray = image
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(u32::from);
            ((r * 4899 + g * 9617 + b * 1868 + 8192) >> 14) as u8
        })
        .collect();
    GrayImage::from_raw(w, h, gray).expect("one byte per pixel")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-stage cascade over a 4x4 window whose only feature compares the left half with the
    /// right half: it accepts windows that are dark on the left and bright on the right.
    const TOY: &str = r#"<?xml version="1.0"?>
<opencv_storage><cascade type_id="opencv-cascade-classifier">
<stageType>BOOST</stageType><featureType>HAAR</featureType><height>4</height><width>4</width>
<stageNum>1</stageNum>
<stages><_><maxWeakCount>1</maxWeakCount><stageThreshold>0.5</stageThreshold>
<weakClassifiers><_><internalNodes>0 -1 0 0.05</internalNodes><leafValues>0. 1.</leafValues></_></weakClassifiers></_></stages>
<features><_><rects><_>0 0 2 4 -1.</_><_>2 0 2 4 1.</_></rects></_></features>
</cascade></opencv_storage>"#;

    fn edge_image(width: u32, height: u32, edge_x: u32) -> GrayImage {
        GrayImage::from_fn(width, height, |x, _| {
            image::Luma([if x < edge_x { 20 } else { 220 }])
        })
    }

    #[test]
    fn toy_cascade_fires_only_where_its_feature_says() {
        let cascade = Cascade::parse(TOY).unwrap();
        // The window skips ahead after first-stage rejections (x = 0, then 4, 8, ...), so put
        // the edge where a visited window straddles it.
        let image = edge_image(16, 8, 6);
        let hits = cascade.detect_ungrouped(
            &image,
            &DetectParams {
                scale_factor: 10.0,
                min_neighbors: 0,
                ..DetectParams::default()
            },
        );
        assert!(!hits.is_empty());
        // Windows straddle the edge: dark half on the left, bright half on the right.
        assert!(
            hits.iter().all(|r| r.x < 6 && r.x + r.width > 6),
            "{hits:?}"
        );
        let flat = GrayImage::from_pixel(16, 8, image::Luma([128]));
        assert!(cascade
            .detect_ungrouped(
                &flat,
                &DetectParams {
                    min_neighbors: 0,
                    ..DetectParams::default()
                }
            )
            .is_empty());
    }

    #[test]
    fn unsupported_or_broken_files_say_why() {
        assert!(Cascade::parse("<opencv_storage/>")
            .unwrap_err()
            .contains("cascade"));
        assert!(Cascade::parse(&TOY.replace("HAAR", "LBP"))
            .unwrap_err()
            .contains("HAAR"));
        assert!(Cascade::parse(&TOY.replace("0 -1 0 0.05", "0 -1 7 0.05"))
            .unwrap_err()
            .contains("missing"));
    }

    #[test]
    fn grouping_merges_neighbours_and_needs_more_than_min_neighbors() {
        let r = |x, y, s| Rect {
            x,
            y,
            width: s,
            height: s,
        };
        let rects = vec![
            r(100, 100, 50),
            r(102, 101, 50),
            r(98, 99, 52),
            r(101, 100, 49),
            r(300, 300, 40),
            r(301, 300, 40),
        ];
        let grouped = group_rectangles(rects.clone(), 3, GROUP_EPS);
        assert_eq!(grouped, vec![r(100, 100, 50)]);
        assert_eq!(group_rectangles(rects.clone(), 1, GROUP_EPS).len(), 2);
        assert_eq!(group_rectangles(rects, 4, GROUP_EPS).len(), 0);
    }

    #[test]
    fn a_small_group_inside_a_stronger_one_is_dropped() {
        let r = |x, y, s| Rect {
            x,
            y,
            width: s,
            height: s,
        };
        let mut rects = vec![r(0, 0, 100); 6];
        rects.extend(vec![r(30, 30, 30); 2]);
        assert_eq!(group_rectangles(rects, 1, GROUP_EPS), vec![r(0, 0, 100)]);
    }

    #[test]
    fn iou_of_boxes() {
        let a = Rect {
            x: 0,
            y: 0,
            width: 10,
            height: 10,
        };
        assert_eq!(a.iou(&a), 1.0);
        assert!(
            (a.iou(&Rect {
                x: 5,
                y: 0,
                width: 10,
                height: 10
            }) - 50.0 / 150.0)
                .abs()
                < 1e-12
        );
        assert_eq!(
            a.iou(&Rect {
                x: 20,
                y: 0,
                width: 5,
                height: 5
            }),
            0.0
        );
    }

    #[test]
    fn bilinear_resize_keeps_flat_images_flat_and_halves_sizes() {
        let flat = GrayImage::from_pixel(40, 30, image::Luma([77]));
        let small = resize_bilinear(&flat, 20, 15);
        assert_eq!(small.dimensions(), (20, 15));
        assert!(small.pixels().all(|p| p.0[0] == 77));
    }
}
