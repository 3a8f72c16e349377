//! torchvision's MobileNetV2 (width 1.0) as a feature extractor: the layer list built from a
//! state dict with every BatchNorm folded into its convolution, and the forward pass in NHWC
//! over the kernels in [`super::kernels`]. Output: the 1280 globally average-pooled features
//! of `features(x).mean([2, 3])`, and optionally the ImageNet logits of `classifier.1`.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::kernels::{
    depthwise, depthwise_row, pointwise, Activation, Isa, PackedDepthwise, PackedPointwise, Shape,
};
use super::pth::StateDict;

/// Length of the feature vector.
pub const FEATURE_DIM: usize = 1280;
/// ImageNet classes of the classifier.
pub const CLASSES: usize = 1000;
const BN_EPS: f32 = 1e-5;
const STEM_CHANNELS: usize = 32;
/// torchvision's inverted-residual settings: expansion t, output channels c, repeats n, stride s.
const INVERTED_RESIDUAL_SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

struct InvertedResidual {
    expand: Option<PackedPointwise>,
    depthwise: PackedDepthwise,
    project: PackedPointwise,
    residual: bool,
}

/// The network with folded weights, ready to run.
pub struct MobileNetV2 {
    isa: Isa,
    stem: PackedPointwise,
    blocks: Vec<InvertedResidual>,
    last: PackedPointwise,
    classifier_weight: Vec<f32>,
    classifier_bias: Vec<f32>,
    spare_activations: Mutex<Vec<Activations>>,
}

/// Activation sets kept for reuse: one per thread plus a team's.
const MAX_SPARE_ACTIVATIONS: usize = 8;

/// Pulls named tensors out of a state dict, checking their shapes.
struct Weights<'a> {
    state: &'a StateDict,
}

impl Weights<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32], String> {
        let t = self
            .state
            .get(name)
            .ok_or_else(|| format!("tensor {name} is missing"))?;
        if t.shape != shape {
            return Err(format!(
                "{name} has shape {:?}, expected {shape:?}",
                t.shape
            ));
        }
        t.as_f32().ok_or_else(|| format!("{name} is not float32"))
    }

    /// Conv weight `[out, rest...]` scaled by the BatchNorm at `bn`, and the folded bias.
    fn conv_bn(
        &self,
        conv: &str,
        bn: &str,
        shape: &[usize],
    ) -> Result<(Vec<f32>, Vec<f32>), String> {
        let out = shape[0];
        let w = self.get(&format!("{conv}.weight"), shape)?;
        let gamma = self.get(&format!("{bn}.weight"), &[out])?;
        let beta = self.get(&format!("{bn}.bias"), &[out])?;
        let mean = self.get(&format!("{bn}.running_mean"), &[out])?;
        let var = self.get(&format!("{bn}.running_var"), &[out])?;
        let per_out = w.len() / out;
        let mut weight = Vec::with_capacity(w.len());
        let mut bias = Vec::with_capacity(out);
        for o in 0..out {
            let scale = gamma[o] / (var[o] + BN_EPS).sqrt();
            weight.extend(w[o * per_out..(o + 1) * per_out].iter().map(|x| x * scale));
            bias.push(beta[o] - mean[o] * scale);
        }
        Ok((weight, bias))
    }

    fn pointwise(
        &self,
        conv: &str,
        bn: &str,
        out: usize,
        inp: usize,
    ) -> Result<PackedPointwise, String> {
        let (w, b) = self.conv_bn(conv, bn, &[out, inp, 1, 1])?;
        Ok(PackedPointwise::new(&w, &b, out, inp))
    }

    fn depthwise(
        &self,
        conv: &str,
        bn: &str,
        channels: usize,
        stride: usize,
    ) -> Result<PackedDepthwise, String> {
        let (w, b) = self.conv_bn(conv, bn, &[channels, 1, 3, 3])?;
        Ok(PackedDepthwise::new(&w, &b, channels, stride))
    }
}

impl MobileNetV2 {
    /// Builds the network from torchvision's state dict; the error names the offending tensor.
    pub fn from_state_dict(state: &StateDict, isa: Isa) -> Result<Self, String> {
        let weights = Weights { state };
        let (stem_w, stem_b) =
            weights.conv_bn("features.0.0", "features.0.1", &[STEM_CHANNELS, 3, 3, 3])?;
        let stem = PackedPointwise::new(&stem_w, &stem_b, STEM_CHANNELS, 27);

        let mut blocks = Vec::new();
        let mut channels = STEM_CHANNELS;
        let mut index = 1;
        for (t, c, n, s) in INVERTED_RESIDUAL_SETTINGS {
            for repeat in 0..n {
                let stride = if repeat == 0 { s } else { 1 };
                let hidden = channels * t;
                let p = format!("features.{index}.conv");
                let (expand, dw, proj, proj_bn) = if t == 1 {
                    (None, "0", "1", "2")
                } else {
                    let expand = weights.pointwise(
                        &format!("{p}.0.0"),
                        &format!("{p}.0.1"),
                        hidden,
                        channels,
                    )?;
                    (Some(expand), "1", "2", "3")
                };
                blocks.push(InvertedResidual {
                    expand,
                    depthwise: weights.depthwise(
                        &format!("{p}.{dw}.0"),
                        &format!("{p}.{dw}.1"),
                        hidden,
                        stride,
                    )?,
                    project: weights.pointwise(
                        &format!("{p}.{proj}"),
                        &format!("{p}.{proj_bn}"),
                        c,
                        hidden,
                    )?,
                    residual: stride == 1 && channels == c,
                });
                channels = c;
                index += 1;
            }
        }
        let last = weights.pointwise(
            &format!("features.{index}.0"),
            &format!("features.{index}.1"),
            FEATURE_DIM,
            channels,
        )?;
        let classifier_weight = weights
            .get("classifier.1.weight", &[CLASSES, FEATURE_DIM])?
            .to_vec();
        let classifier_bias = weights.get("classifier.1.bias", &[CLASSES])?.to_vec();
        Ok(MobileNetV2 {
            isa,
            stem,
            blocks,
            last,
            classifier_weight,
            classifier_bias,
            spare_activations: Mutex::new(Vec::new()),
        })
    }

    /// Features of each image; `images` are CHW float32 of `shape` (3 channels), normalised.
    /// A single image is shared by a team of threads; a batch is split by image.
    pub fn features(&self, images: &[&[f32]], shape: Shape) -> Vec<Vec<f32>> {
        let expected = 3 * shape.height * shape.width;
        assert!(
            images.iter().all(|im| im.len() == expected),
            "image is not [3, h, w]"
        );
        let threads = rayon::current_num_threads().max(1);
        if images.is_empty() {
            return Vec::new();
        }
        if images.len() == 1 && threads > 1 {
            return vec![self.forward_team(images[0], shape, threads)];
        }
        // One contiguous chunk per thread, so each allocates nothing and reuses warm buffers.
        let per_thread = images.len().div_ceil(threads);
        images
            .par_chunks(per_thread)
            .flat_map_iter(|chunk| {
                let acts = self.activations(shape, 1);
                let solo = SpinBarrier::new(1);
                let me = Member { index: 0, count: 1 };
                let out: Vec<Vec<f32>> = chunk
                    .iter()
                    .map(|image| {
                        average(
                            self.forward(image, shape, &acts, &solo, me),
                            acts.final_pixels,
                        )
                    })
                    .collect();
                self.recycle(acts);
                out
            })
            .collect()
    }

    /// Activation buffers for `input`, reused from earlier calls when one fits: allocating and
    /// zeroing them costs as much as a forward pass.
    fn activations(&self, input: Shape, team: usize) -> Activations {
        let mut pool = self.spare_activations.lock().expect("activation pool lock");
        match pool.iter().position(|a| a.input == input && a.team == team) {
            Some(i) => pool.swap_remove(i),
            None => Activations::for_input(self, input, team),
        }
    }

    fn recycle(&self, acts: Activations) {
        let mut pool = self.spare_activations.lock().expect("activation pool lock");
        if pool.len() < MAX_SPARE_ACTIVATIONS {
            pool.push(acts);
        }
    }

    /// ImageNet logits from one feature vector (the classifier's dropout is off in eval).
    pub fn logits(&self, features: &[f32]) -> Vec<f32> {
        assert_eq!(features.len(), FEATURE_DIM);
        self.classifier_weight
            .chunks_exact(FEATURE_DIM)
            .zip(&self.classifier_bias)
            .map(|(row, b)| b + row.iter().zip(features).map(|(w, x)| w * x).sum::<f32>())
            .collect()
    }

    /// One image on `threads` threads, each computing its share of every layer's pixels.
    fn forward_team(&self, image: &[f32], shape: Shape, threads: usize) -> Vec<f32> {
        let acts = self.activations(shape, threads);
        let barrier = SpinBarrier::new(threads);
        let sums: Vec<Vec<f32>> = std::thread::scope(|scope| {
            // The caller takes the last share: at 7x7 that one has the extra pixel, and the
            // caller starts first.
            let helpers: Vec<_> = (0..threads - 1)
                .map(|index| {
                    let (acts, barrier) = (&acts, &barrier);
                    scope.spawn(move || {
                        self.forward(
                            image,
                            shape,
                            acts,
                            barrier,
                            Member {
                                index,
                                count: threads,
                            },
                        )
                    })
                })
                .collect();
            let mut sums = vec![self.forward(
                image,
                shape,
                &acts,
                &barrier,
                Member {
                    index: threads - 1,
                    count: threads,
                },
            )];
            sums.extend(
                helpers
                    .into_iter()
                    .map(|h| h.join().expect("backbone worker panicked")),
            );
            sums
        });
        let mut total = vec![0.0; FEATURE_DIM];
        for part in sums {
            for (t, p) in total.iter_mut().zip(part) {
                *t += p;
            }
        }
        let pixels = acts.final_pixels;
        self.recycle(acts);
        average(total, pixels)
    }

    /// One team member's share of the forward pass; returns its pixels' sums of the last layer.
    ///
    /// Every layer is split by output pixel, the same way for every layer at a resolution (see
    /// [`Member::share`]), so a member reads other members' pixels only where a depthwise 3x3
    /// reads across the split: once per block, after a barrier. Large-resolution blocks run
    /// fused, band by band (see [`Self::fused_block`]), with the barrier before the block;
    /// the others run layer by layer with the barrier between expansion and depthwise. Blocks
    /// alternate between two expansion buffers, so a member writing the next block's expansion
    /// never overwrites rows a slower member is still reading.
    fn forward(
        &self,
        image: &[f32],
        input: Shape,
        acts: &Activations,
        barrier: &SpinBarrier,
        me: Member,
    ) -> Vec<f32> {
        let isa = self.isa;
        let mut shape = Shape {
            height: (input.height - 1) / 2 + 1,
            width: (input.width - 1) / 2 + 1,
        };
        let mine = me.share(shape);
        // SAFETY (all `acts` accesses below): members write disjoint pixel ranges of a buffer,
        // and read other members' pixels only after the barrier that follows their writing.
        unsafe {
            let patches = acts.depthwise.slice_mut(mine.start * 27..mine.end * 27);
            im2col_stem(image, input, shape, mine.clone(), patches);
            let x = acts
                .x
                .slice_mut(mine.start * STEM_CHANNELS..mine.end * STEM_CHANNELS);
            pointwise(isa, patches, &self.stem, Activation::Relu6, None, x);
        }
        let mut bands = acts.bands[me.index].lock().expect("band scratch lock");
        let (mut x, mut y) = (&acts.x, &acts.y);
        for (i, block) in self.blocks.iter().enumerate() {
            let dw = &block.depthwise;
            let out_shape = Shape {
                height: dw.output_size(shape.height),
                width: dw.output_size(shape.width),
            };
            if shape.height >= FUSED_MIN_HEIGHT {
                barrier.wait();
                // SAFETY: as above; the barrier has made every member's `x` rows readable.
                unsafe {
                    self.fused_block(
                        block,
                        x,
                        shape,
                        out_shape,
                        me.share(out_shape),
                        y,
                        &mut bands,
                    )
                };
            } else {
                let mine = me.share(shape);
                let expansion = &acts.expanded[i % acts.expanded.len()];
                let (hidden, hidden_channels) = match &block.expand {
                    Some(expand) => {
                        unsafe {
                            let input = x.slice(mine.start * expand.k..mine.end * expand.k);
                            let out =
                                expansion.slice_mut(mine.start * expand.n..mine.end * expand.n);
                            pointwise(isa, input, expand, Activation::Relu6, None, out);
                        }
                        (expansion, expand.n)
                    }
                    None => (x, dw.channels),
                };
                barrier.wait();
                let out_mine = me.share(out_shape);
                let (c, n) = (dw.channels, block.project.n);
                unsafe {
                    let input = hidden.slice(0..shape.height * shape.width * hidden_channels);
                    let out = acts
                        .depthwise
                        .slice_mut(out_mine.start * c..out_mine.end * c);
                    depthwise(isa, input, shape, dw, out_mine.clone(), out);
                    let residual = block
                        .residual
                        .then(|| x.slice(out_mine.start * n..out_mine.end * n));
                    let projected = y.slice_mut(out_mine.start * n..out_mine.end * n);
                    pointwise(
                        isa,
                        out,
                        &block.project,
                        Activation::None,
                        residual,
                        projected,
                    );
                }
            }
            shape = out_shape;
            std::mem::swap(&mut x, &mut y);
        }
        let mine = me.share(shape);
        let k = self.last.k;
        let mut sums = vec![0.0; FEATURE_DIM];
        unsafe {
            let input = x.slice(mine.start * k..mine.end * k);
            let out = y.slice_mut(mine.start * FEATURE_DIM..mine.end * FEATURE_DIM);
            pointwise(isa, input, &self.last, Activation::Relu6, None, out);
            for px in out.chunks_exact(FEATURE_DIM) {
                for (s, v) in sums.iter_mut().zip(px) {
                    *s += v;
                }
            }
        }
        sums
    }

    /// One inverted-residual block for output pixels `out_pixels`, a band of output rows at a
    /// time: the expansion rows a band needs go into a small ring (rows shared with the previous
    /// band are kept), then the band's depthwise and projection. The expanded tensor, the
    /// largest in the network, never leaves this core's cache.
    ///
    /// # Safety
    /// Every member must have finished writing `x`; no other member writes `out_pixels` of `y`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn fused_block(
        &self,
        block: &InvertedResidual,
        x: &SharedBuffer,
        shape: Shape,
        out_shape: Shape,
        out_pixels: std::ops::Range<usize>,
        y: &SharedBuffer,
        scratch: &mut BandScratch,
    ) {
        if out_pixels.is_empty() {
            return;
        }
        let dw = &block.depthwise;
        let (s, c, n) = (dw.stride, dw.channels, block.project.n);
        let row_len = shape.width * c;
        let in_row_len = shape.width * block.expand.as_ref().map_or(c, |e| e.k);
        let band = (BAND_MIN_PIXELS / out_shape.width).max(1);
        let ring_rows = band * s + 2;
        scratch.ring.resize(ring_rows * row_len, 0.0);
        let first_row = out_pixels.start / out_shape.width;
        let end_row = (out_pixels.end - 1) / out_shape.width + 1;
        // Input rows [next_input_row - ring_rows, next_input_row) are expanded in the ring.
        let mut next_input_row = (first_row * s).saturating_sub(1);
        for band_start in (first_row..end_row).step_by(band) {
            let band_end = (band_start + band).min(end_row);
            let rows_needed = shape.height.min((band_end - 1) * s + 2);
            if let Some(expand) = &block.expand {
                while next_input_row < rows_needed {
                    let slot = next_input_row % ring_rows;
                    let run = (rows_needed - next_input_row).min(ring_rows - slot);
                    let input =
                        x.slice(next_input_row * in_row_len..(next_input_row + run) * in_row_len);
                    let out = &mut scratch.ring[slot * row_len..(slot + run) * row_len];
                    pointwise(self.isa, input, expand, Activation::Relu6, None, out);
                    next_input_row += run;
                }
            }
            let pixels = out_pixels.start.max(band_start * out_shape.width)
                ..out_pixels.end.min(band_end * out_shape.width);
            scratch.depthwise.resize(pixels.len() * c, 0.0);
            let ring = &scratch.ring;
            let full_input = x.slice(0..shape.height * in_row_len);
            let input_row = |iy: usize| {
                (iy < shape.height).then(|| match block.expand {
                    Some(_) => &ring[iy % ring_rows * row_len..][..row_len],
                    None => &full_input[iy * row_len..][..row_len],
                })
            };
            for oy in band_start..band_end {
                let columns = pixels.start.max(oy * out_shape.width) - oy * out_shape.width
                    ..pixels.end.min((oy + 1) * out_shape.width) - oy * out_shape.width;
                let at = (oy * out_shape.width + columns.start - pixels.start) * c;
                let centre = oy * s;
                let rows = [
                    input_row(centre.wrapping_sub(1)),
                    input_row(centre),
                    input_row(centre + 1),
                ];
                let out = &mut scratch.depthwise[at..at + columns.len() * c];
                depthwise_row(self.isa, rows, shape.width, dw, columns, out);
            }
            let residual = block
                .residual
                .then(|| x.slice(pixels.start * n..pixels.end * n));
            let projected = y.slice_mut(pixels.start * n..pixels.end * n);
            pointwise(
                self.isa,
                &scratch.depthwise,
                &block.project,
                Activation::None,
                residual,
                projected,
            );
        }
    }
}

/// Blocks whose input is at least this tall run fused (their expansions are megabytes).
const FUSED_MIN_HEIGHT: usize = 28;
/// A fused band covers enough output rows for this many pixels, so its GEMMs stay efficient.
const BAND_MIN_PIXELS: usize = 56;

/// A member's private buffers for fused blocks.
#[derive(Default)]
struct BandScratch {
    ring: Vec<f32>,
    depthwise: Vec<f32>,
}

/// A thread's place in a team.
#[derive(Debug, Clone, Copy)]
struct Member {
    index: usize,
    count: usize,
}

impl Member {
    /// This member's contiguous share of the pixels of an activation of `shape`: whole rows
    /// where blocks run fused (they work in rows), an even split of pixels elsewhere.
    fn share(self, shape: Shape) -> std::ops::Range<usize> {
        let (i, n) = (self.index, self.count);
        if shape.height >= FUSED_MIN_HEIGHT {
            let rows = shape.height * i / n..shape.height * (i + 1) / n;
            rows.start * shape.width..rows.end * shape.width
        } else {
            let pixels = shape.height * shape.width;
            pixels * i / n..pixels * (i + 1) / n
        }
    }
}

/// A barrier for a few threads that each hold a core: it spins, since the gaps between layers
/// are microseconds and a futex wake-up would cost as much as a small layer. Past a spin budget
/// it yields, so an oversubscribed machine is not made worse.
struct SpinBarrier {
    count: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    fn new(count: usize) -> Self {
        SpinBarrier {
            count,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    fn wait(&self) {
        if self.count == 1 {
            return;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.count {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

const SPINS_BEFORE_YIELD: u32 = 1 << 16;

/// An activation buffer that team members write in disjoint pixel ranges.
struct SharedBuffer {
    data: Box<[UnsafeCell<f32>]>,
}

// SAFETY: access goes through `slice`/`slice_mut`, whose callers keep writes disjoint and
// separate writes from other members' reads with a barrier.
unsafe impl Sync for SharedBuffer {}

impl SharedBuffer {
    fn new(len: usize) -> Self {
        SharedBuffer {
            data: (0..len).map(|_| UnsafeCell::new(0.0)).collect(),
        }
    }

    /// # Safety
    /// No other thread may write `range` while the returned slice lives.
    unsafe fn slice(&self, range: std::ops::Range<usize>) -> &[f32] {
        let cells = &self.data[range];
        std::slice::from_raw_parts(cells.as_ptr() as *const f32, cells.len())
    }

    /// # Safety
    /// No other thread may read or write `range` while the returned slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut(&self, range: std::ops::Range<usize>) -> &mut [f32] {
        let cells = &self.data[range];
        std::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), cells.len())
    }
}

/// Every activation buffer of one forward pass, each sized for its largest use.
struct Activations {
    input: Shape,
    team: usize,
    x: SharedBuffer,
    y: SharedBuffer,
    /// Two for a team (see [`MobileNetV2::forward`]); one suffices for a lone thread.
    expanded: Vec<SharedBuffer>,
    /// Depthwise outputs, and the stem's patches before them.
    depthwise: SharedBuffer,
    /// Each member's fused-block buffers.
    bands: Vec<Mutex<BandScratch>>,
    final_pixels: usize,
}

impl Activations {
    fn for_input(net: &MobileNetV2, input: Shape, team: usize) -> Self {
        let mut shape = Shape {
            height: (input.height - 1) / 2 + 1,
            width: (input.width - 1) / 2 + 1,
        };
        let mut pixels = shape.height * shape.width;
        let (mut xy, mut expanded, mut depthwise) = (pixels * STEM_CHANNELS, 0, pixels * 27);
        for block in &net.blocks {
            if let Some(e) = &block.expand {
                expanded = expanded.max(pixels * e.n);
            }
            shape = Shape {
                height: block.depthwise.output_size(shape.height),
                width: block.depthwise.output_size(shape.width),
            };
            pixels = shape.height * shape.width;
            depthwise = depthwise.max(pixels * block.depthwise.channels);
            xy = xy.max(pixels * block.project.n);
        }
        xy = xy.max(pixels * FEATURE_DIM);
        Activations {
            input,
            team,
            x: SharedBuffer::new(xy),
            y: SharedBuffer::new(xy),
            expanded: (0..team.min(2))
                .map(|_| SharedBuffer::new(expanded))
                .collect(),
            depthwise: SharedBuffer::new(depthwise),
            bands: (0..team).map(|_| Mutex::default()).collect(),
            final_pixels: pixels,
        }
    }
}

fn average(mut sums: Vec<f32>, pixels: usize) -> Vec<f32> {
    for s in &mut sums {
        *s /= pixels as f32;
    }
    sums
}

/// The stem's 3x3 stride-2 patches of a CHW image for output pixels `pixels`, as rows of 27
/// ordered `(channel, ky, kx)` like torch's weight, zero outside the image. Built one output row
/// segment and one input row at a time, so the inner loop is three plain copies.
fn im2col_stem(
    image: &[f32],
    input: Shape,
    out: Shape,
    pixels: std::ops::Range<usize>,
    patches: &mut [f32],
) {
    let plane = input.height * input.width;
    let mut pixel = pixels.start;
    while pixel < pixels.end {
        let (oy, ox0) = (pixel / out.width, pixel % out.width);
        let ox1 = out.width.min(ox0 + pixels.end - pixel);
        let rows =
            &mut patches[(pixel - pixels.start) * 27..(pixel - pixels.start + ox1 - ox0) * 27];
        for channel in 0..3 {
            for ky in 0..3 {
                // wrapping_sub turns the -1 border into a huge index, caught by the bound check.
                let iy = (oy * 2 + ky).wrapping_sub(1);
                let src = (iy < input.height)
                    .then(|| &image[channel * plane + iy * input.width..][..input.width]);
                let offset = channel * 9 + ky * 3;
                for (row, ox) in rows.chunks_exact_mut(27).zip(ox0..ox1) {
                    let taps = &mut row[offset..offset + 3];
                    match src {
                        Some(src) => {
                            let ix = ox * 2;
                            taps[0] = if ix >= 1 { src[ix - 1] } else { 0.0 };
                            taps[1] = src[ix];
                            taps[2] = if ix + 1 < input.width {
                                src[ix + 1]
                            } else {
                                0.0
                            };
                        }
                        None => taps.fill(0.0),
                    }
                }
            }
        }
        pixel += ox1 - ox0;
    }
}
