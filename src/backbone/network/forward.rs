//! The forward pass: one image through the stem, the inverted-residual blocks (large ones
//! fused band by band) and the last layer, as one member of a team of threads that split every
//! layer's pixels; and the activation buffers the pass reuses.

use std::sync::Mutex;

use super::super::kernels::{depthwise, depthwise_row, pointwise, Activation, Shape};
use super::team::{Member, SharedBuffer, SpinBarrier};
use super::{InvertedResidual, MobileNetV2, FEATURE_DIM, STEM_CHANNELS};

impl MobileNetV2 {
    /// One image on `threads` threads, each computing its share of every layer's pixels.
    pub(super) fn forward_team(&self, image: &[f32], shape: Shape, threads: usize) -> Vec<f32> {
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
    pub(super) fn forward(
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
        // All `acts` accesses below share one rule: members write disjoint pixel ranges of a
        // buffer, and read other members' pixels only after the barrier that follows their
        // writing.
        // SAFETY: the stem reads the image and writes only this member's pixels.
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
                        // SAFETY: this member writes only its own pixels of the expansion and
                        // reads only its own pixels of `x`, written by itself in the last block.
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
                // SAFETY: the barrier above ends every member's writes to `hidden`, which the
                // depthwise reads whole; `acts.depthwise` and `y` are written only in this
                // member's output pixels, and `x` (the residual) is read in them only.
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
        // SAFETY: the last layer is pointwise, so each member reads and writes only its own
        // pixels of `x` and `y`.
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
pub(super) const FUSED_MIN_HEIGHT: usize = 28;
/// A fused band covers enough output rows for this many pixels, so its GEMMs stay efficient.
const BAND_MIN_PIXELS: usize = 56;

/// A member's private buffers for fused blocks.
#[derive(Default)]
struct BandScratch {
    ring: Vec<f32>,
    depthwise: Vec<f32>,
}

/// Every activation buffer of one forward pass, each sized for its largest use.
pub(super) struct Activations {
    pub(super) input: Shape,
    pub(super) team: usize,
    x: SharedBuffer,
    y: SharedBuffer,
    /// Two for a team (see [`MobileNetV2::forward`]); one suffices for a lone thread.
    expanded: Vec<SharedBuffer>,
    /// Depthwise outputs, and the stem's patches before them.
    depthwise: SharedBuffer,
    /// Each member's fused-block buffers.
    bands: Vec<Mutex<BandScratch>>,
    pub(super) final_pixels: usize,
}

impl Activations {
    pub(super) fn for_input(net: &MobileNetV2, input: Shape, team: usize) -> Self {
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

pub(super) fn average(mut sums: Vec<f32>, pixels: usize) -> Vec<f32> {
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
