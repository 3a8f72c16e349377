//! The compute kernels of the backbone, in NHWC layout (a pixel's channels are contiguous):
//! a 1x1-convolution GEMM over pre-packed weights with bias, ReLU6 and the residual add fused
//! into its epilogue, and a 3x3 depthwise convolution with bias and ReLU6 fused.
//!
//! General GEMM crates pack both operands on every call; here the weights are packed once at
//! load time and the activations are read in place, which is what small-K 1x1 convolutions need.
//! Each kernel has an AVX-512 body, an AVX2+FMA body (the best one the CPU runs is chosen at
//! run time) and a portable body for other machines; the portable body is also the reference
//! the others are tested against. The AVX2 bodies live in `kernels_avx2`.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::ops::Range;

/// Rows of A (pixels) one GEMM tile computes.
pub(crate) const TILE_ROWS: usize = 12;
/// Rows of the tiles that finish a layer's last, partial tile.
const SHORT_TILE_ROWS: usize = 4;
/// Output channels per AVX-512 vector; weights are packed in panels of this width.
pub(super) const LANES: usize = 16;

/// Which instruction set the kernels run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    /// AVX2 with FMA: 8-lane vectors (most x86-64 CPUs since 2013 that lack AVX-512).
    Avx2,
    Portable,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
        Isa::Portable
    }

    /// Every instruction set this CPU can run, the portable one first (for tests that compare
    /// them).
    pub fn runnable() -> Vec<Isa> {
        let best = Isa::detect();
        let mut all = vec![Isa::Portable];
        if best == Isa::Avx512 {
            all.push(Isa::Avx2);
        }
        if best != Isa::Portable {
            all.push(best);
        }
        all
    }
}

/// Optional fused steps after a convolution's sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu6,
}

/// A 1x1 convolution (`[n, k]` torch weight, BN folded in) packed for the GEMM tiles: groups of
/// two 16-wide panels, each group `[k][32]` contiguous (the last group may be 16 wide), with
/// columns past `n` zero so the tiles never branch on width.
#[derive(Debug, Clone)]
pub struct PackedPointwise {
    pub k: usize,
    pub n: usize,
    packed: Vec<f32>,
    bias: Vec<f32>,
}

impl PackedPointwise {
    /// Packs `weight` given as `[n][k]` (torch's `[out, in, 1, 1]`) and `bias` of length `n`.
    pub fn new(weight: &[f32], bias: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k, "weight is not [n, k]");
        assert_eq!(bias.len(), n, "bias is not [n]");
        let panels = n.div_ceil(LANES);
        let mut packed = vec![0.0; panels * LANES * k];
        for group in groups(n) {
            let width = group.panels * LANES;
            let base = group.first_panel * LANES * k;
            for kk in 0..k {
                for j in 0..width {
                    let col = group.first_panel * LANES + j;
                    if col < n {
                        packed[base + kk * width + j] = weight[col * k + kk];
                    }
                }
            }
        }
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(panels * LANES, 0.0);
        PackedPointwise {
            k,
            n,
            packed,
            bias: padded_bias,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PanelGroup {
    first_panel: usize,
    panels: usize,
}

fn groups(n: usize) -> impl Iterator<Item = PanelGroup> {
    let panels = n.div_ceil(LANES);
    (0..panels).step_by(2).map(move |first_panel| PanelGroup {
        first_panel,
        panels: (panels - first_panel).min(2),
    })
}

impl PackedPointwise {
    /// How many column groups the weights are packed in (see [`pointwise_groups`]).
    pub fn group_count(&self) -> usize {
        groups(self.n).count()
    }

    /// The output channels of column group `group`.
    pub fn group_columns(&self, group: usize) -> Range<usize> {
        let start = group * 2 * LANES;
        start.min(self.n)..(start + 2 * LANES).min(self.n)
    }
}

/// `out[p][c] = act(sum_k input[p][k] * w[c][k] + bias[c]) + residual[p][c]` for `rows` pixels.
/// `input` is `[rows, k]`, `out` and `residual` are `[rows, n]`.
pub fn pointwise(
    isa: Isa,
    input: &[f32],
    layer: &PackedPointwise,
    act: Activation,
    residual: Option<&[f32]>,
    out: &mut [f32],
) {
    pointwise_groups(
        isa,
        input,
        layer,
        act,
        residual,
        out,
        0..layer.group_count(),
    );
}

/// [`pointwise`] for the output channels of column groups `only` (see
/// [`PackedPointwise::group_columns`]); the other columns of `out` are left as they are. A
/// map too small to share out by pixels is shared out by column groups.
pub fn pointwise_groups(
    isa: Isa,
    input: &[f32],
    layer: &PackedPointwise,
    act: Activation,
    residual: Option<&[f32]>,
    out: &mut [f32],
    only: Range<usize>,
) {
    let (k, n) = (layer.k, layer.n);
    let rows = input.len() / k;
    assert_eq!(input.len(), rows * k);
    assert_eq!(out.len(), rows * n);
    if let Some(res) = residual {
        assert_eq!(res.len(), rows * n);
    }
    let mut tail = Vec::new();
    let mut row0 = 0;
    while row0 < rows {
        // Full tiles of 12 rows; what is left goes in tiles of 4 (or 1 for a last single row),
        // so a 49-pixel 7x7 layer costs four tiles of 12 and one row rather than five of 12.
        let height = match rows - row0 {
            left if left >= TILE_ROWS => TILE_ROWS,
            1 => 1,
            _ => SHORT_TILE_ROWS,
        };
        let valid = (rows - row0).min(height);
        // A partial tile reads from a zero-padded copy so it can always load `height` rows.
        let a: &[f32] = if valid == height {
            &input[row0 * k..]
        } else {
            tail.clear();
            tail.extend_from_slice(&input[row0 * k..(row0 + valid) * k]);
            tail.resize(height * k, 0.0);
            &tail
        };
        let res = residual.map(|r| &r[row0 * n..(row0 + valid) * n]);
        let out_rows = &mut out[row0 * n..(row0 + valid) * n];
        for group in groups(n).skip(only.start).take(only.len()) {
            let tile = Tile {
                a,
                k,
                b: &layer.packed[group.first_panel * LANES * k..],
                bias: &layer.bias[group.first_panel * LANES..],
                col0: group.first_panel * LANES,
                cols: (n - group.first_panel * LANES).min(group.panels * LANES),
                n,
                rows: valid,
                act,
                residual: res,
            };
            match (isa, height, group.panels) {
                // Every AVX-512 arm relies on the same two facts: Isa::Avx512 is only chosen
                // when the CPU reports avx512f (Isa::detect), and each tile function asserts
                // that `tile`'s slices and `out_rows` hold every element it reads or writes.
                #[cfg(target_arch = "x86_64")]
                // SAFETY: avx512f is present and the tile checks its bounds (see above).
                (Isa::Avx512, TILE_ROWS, 2) => unsafe { tile_avx512_12x32(&tile, out_rows) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: avx512f is present and the tile checks its bounds (see above).
                (Isa::Avx512, TILE_ROWS, _) => unsafe { tile_avx512_12x16(&tile, out_rows) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: avx512f is present and the tile checks its bounds (see above).
                (Isa::Avx512, 1, 2) => unsafe { tile_avx512_1x32(&tile, out_rows) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: avx512f is present and the tile checks its bounds (see above).
                (Isa::Avx512, 1, _) => unsafe { tile_avx512_1x16(&tile, out_rows) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: avx512f is present and the tile checks its bounds (see above).
                (Isa::Avx512, _, 2) => unsafe { tile_avx512_4x32(&tile, out_rows) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: avx512f is present and the tile checks its bounds (see above).
                (Isa::Avx512, _, _) => unsafe { tile_avx512_4x16(&tile, out_rows) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: Isa::Avx2 is only chosen when the CPU reports avx2 and fma
                // (Isa::detect); the tiles assert their bounds.
                (Isa::Avx2, _, _) => unsafe {
                    super::kernels_avx2::tile(&tile, height, group.panels, out_rows)
                },
                (_, _, 2) => tile_portable::<2>(&tile, out_rows),
                _ => tile_portable::<1>(&tile, out_rows),
            }
        }
        row0 += valid;
    }
}

/// What one GEMM tile reads: 12 rows of A, a packed weight group, and how to finish.
pub(super) struct Tile<'a> {
    pub(super) a: &'a [f32],
    pub(super) k: usize,
    pub(super) b: &'a [f32],
    pub(super) bias: &'a [f32],
    /// First output channel of this group, and how many of its channels are real.
    pub(super) col0: usize,
    pub(super) cols: usize,
    pub(super) n: usize,
    pub(super) rows: usize,
    pub(super) act: Activation,
    pub(super) residual: Option<&'a [f32]>,
}

/// The lanes to load or store when `remaining` values are left (all 16 when there are more).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lane_mask(remaining: usize) -> __mmask16 {
    if remaining >= LANES {
        0xffff
    } else {
        (1u16 << remaining) - 1
    }
}

/// Generates AVX-512 tiles of `rows` x 32 and `rows` x 16 accumulators, held in registers for
/// the whole k loop. Rows are unrolled by the macro so every accumulator index is a constant
/// (loops over the rows left the accumulators on the stack).
macro_rules! avx512_tiles {
    ($wide:ident, $narrow:ident, $rows:literal, [$($r:literal)*]) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn $wide(t: &Tile, out: &mut [f32]) {
            assert!(t.a.len() >= $rows * t.k && t.b.len() >= t.k * 32 && t.bias.len() >= 32);
            let (a, b, k) = (t.a.as_ptr(), t.b.as_ptr(), t.k);
            let mut acc = [[_mm512_setzero_ps(); 2]; $rows];
            for kk in 0..k {
                let b0 = _mm512_loadu_ps(b.add(kk * 32));
                let b1 = _mm512_loadu_ps(b.add(kk * 32 + LANES));
                $(
                    let av = _mm512_set1_ps(*a.add($r * k + kk));
                    acc[$r][0] = _mm512_fmadd_ps(av, b0, acc[$r][0]);
                    acc[$r][1] = _mm512_fmadd_ps(av, b1, acc[$r][1]);
                )*
            }
            finish_tile_avx512(t, &acc, out);
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn $narrow(t: &Tile, out: &mut [f32]) {
            assert!(t.a.len() >= $rows * t.k && t.b.len() >= t.k * LANES && t.bias.len() >= LANES);
            let (a, b, k) = (t.a.as_ptr(), t.b.as_ptr(), t.k);
            let mut acc = [[_mm512_setzero_ps(); 1]; $rows];
            for kk in 0..k {
                let b0 = _mm512_loadu_ps(b.add(kk * LANES));
                $(
                    acc[$r][0] = _mm512_fmadd_ps(_mm512_set1_ps(*a.add($r * k + kk)), b0, acc[$r][0]);
                )*
            }
            finish_tile_avx512(t, &acc, out);
        }
    };
}

avx512_tiles!(tile_avx512_12x32, tile_avx512_12x16, 12, [0 1 2 3 4 5 6 7 8 9 10 11]);
avx512_tiles!(tile_avx512_4x32, tile_avx512_4x16, 4, [0 1 2 3]);
avx512_tiles!(tile_avx512_1x32, tile_avx512_1x16, 1, [0]);

/// Bias, activation, residual and the (masked) stores of a tile's valid rows and columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn finish_tile_avx512<const NV: usize, const ROWS: usize>(
    t: &Tile,
    sums: &[[__m512; NV]; ROWS],
    out: &mut [f32],
) {
    let zero = _mm512_setzero_ps();
    let six = _mm512_set1_ps(6.0);
    for (r, row) in sums.iter().enumerate().take(t.rows) {
        for (j, &sum) in row.iter().enumerate() {
            let c = j * LANES;
            if c >= t.cols {
                break;
            }
            let mask = lane_mask(t.cols - c);
            let mut v = _mm512_add_ps(sum, _mm512_loadu_ps(t.bias.as_ptr().add(c)));
            if t.act == Activation::Relu6 {
                v = _mm512_min_ps(_mm512_max_ps(v, zero), six);
            }
            let at = r * t.n + t.col0 + c;
            // SAFETY: the mask enables only the `t.cols - c` valid columns of this row, so the
            // masked load and store touch `at..at + valid`, inside `out` and `res` (whose
            // lengths the calling tile asserted); masked-off lanes are not accessed.
            if let Some(res) = t.residual {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, res.as_ptr().add(at)));
            }
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(at), mask, v);
        }
    }
}

fn tile_portable<const NV: usize>(t: &Tile, out: &mut [f32]) {
    let width = NV * LANES;
    let mut acc = [[[0.0f32; LANES]; NV]; TILE_ROWS];
    for kk in 0..t.k {
        let bk = &t.b[kk * width..(kk + 1) * width];
        for (r, acc_row) in acc.iter_mut().enumerate().take(t.rows) {
            let av = t.a[r * t.k + kk];
            for (j, acc_vec) in acc_row.iter_mut().enumerate() {
                for (l, x) in acc_vec.iter_mut().enumerate() {
                    *x += av * bk[j * LANES + l];
                }
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate().take(t.rows) {
        for c in 0..t.cols {
            let mut v = acc_row[c / LANES][c % LANES] + t.bias[c];
            if t.act == Activation::Relu6 {
                v = v.clamp(0.0, 6.0);
            }
            let at = r * t.n + t.col0 + c;
            // SAFETY: the mask enables only the `t.cols - c` valid columns of this row, so the
            // masked load and store touch `at..at + valid`, inside `out` and `res` (whose
            // lengths the calling tile asserted); masked-off lanes are not accessed.
            if let Some(res) = t.residual {
                v += res[at];
            }
            out[at] = v;
        }
    }
}

/// A 3x3 depthwise convolution (padding 1), BN folded in: weights as `[9][c]` (tap-major, so a
/// tap's channels are contiguous like the activations), bias `[c]`.
#[derive(Debug, Clone)]
pub struct PackedDepthwise {
    pub channels: usize,
    pub stride: usize,
    pub(super) taps: Vec<f32>,
    pub(super) bias: Vec<f32>,
}

impl PackedDepthwise {
    /// `weight` as torch's `[c, 1, 3, 3]`.
    pub fn new(weight: &[f32], bias: &[f32], channels: usize, stride: usize) -> Self {
        assert_eq!(weight.len(), channels * 9, "weight is not [c, 1, 3, 3]");
        assert_eq!(bias.len(), channels, "bias is not [c]");
        let mut taps = vec![0.0; 9 * channels];
        for c in 0..channels {
            for tap in 0..9 {
                taps[tap * channels + c] = weight[c * 9 + tap];
            }
        }
        PackedDepthwise {
            channels,
            stride,
            taps,
            bias: bias.to_vec(),
        }
    }

    pub fn output_size(&self, size: usize) -> usize {
        (size - 1) / self.stride + 1
    }
}

/// Spatial shape of an NHWC activation (one image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub height: usize,
    pub width: usize,
}

/// Computes output pixels `out_pixels` (row-major indices into the output image) of a depthwise
/// conv with ReLU6; `out` holds exactly those pixels. Ranges need not start or end on a row.
pub fn depthwise(
    isa: Isa,
    input: &[f32],
    in_shape: Shape,
    layer: &PackedDepthwise,
    out_pixels: Range<usize>,
    out: &mut [f32],
) {
    let c = layer.channels;
    let out_width = layer.output_size(in_shape.width);
    let row_len = in_shape.width * c;
    assert_eq!(input.len(), in_shape.height * row_len);
    assert_eq!(out.len(), out_pixels.len() * c);
    let row = |iy: usize| (iy < in_shape.height).then(|| &input[iy * row_len..(iy + 1) * row_len]);
    let mut pixel = out_pixels.start;
    while pixel < out_pixels.end {
        let (oy, ox0) = (pixel / out_width, pixel % out_width);
        let ox1 = out_width.min(ox0 + out_pixels.end - pixel);
        let at = (pixel - out_pixels.start) * c;
        let centre = oy * layer.stride;
        // wrapping_sub makes the row above the first one out of range, hence None.
        let rows = [row(centre.wrapping_sub(1)), row(centre), row(centre + 1)];
        depthwise_row(
            isa,
            rows,
            in_shape.width,
            layer,
            ox0..ox1,
            &mut out[at..at + (ox1 - ox0) * c],
        );
        pixel += ox1 - ox0;
    }
}

/// One output row's `columns` of a depthwise conv with ReLU6, from the three input rows its
/// windows cover (`None` above or below the image), each `[in_width, channels]`.
pub fn depthwise_row(
    isa: Isa,
    rows: [Option<&[f32]>; 3],
    in_width: usize,
    layer: &PackedDepthwise,
    columns: Range<usize>,
    out: &mut [f32],
) {
    let row_len = in_width * layer.channels;
    assert!(rows.iter().flatten().all(|r| r.len() >= row_len));
    assert_eq!(out.len(), columns.len() * layer.channels);
    assert!(columns.end <= layer.output_size(in_width));
    let centre = rows[1].expect("the centre row of an output row is inside the image");
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: chosen only when the CPU reports avx512f; the rows are long enough (above).
        Isa::Avx512 => unsafe { depthwise_row_avx512(rows, centre, in_width, layer, columns, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: chosen only when the CPU reports avx2 and fma; the rows are long enough (above).
        Isa::Avx2 => unsafe {
            super::kernels_avx2::depthwise_row(rows, centre, in_width, layer, columns, out)
        },
        _ => depthwise_row_portable(rows, in_width, layer, columns, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn depthwise_row_avx512(
    rows: [Option<&[f32]>; 3],
    centre: &[f32],
    w_in: usize,
    layer: &PackedDepthwise,
    columns: Range<usize>,
    out: &mut [f32],
) {
    let c = layer.channels;
    let s = layer.stride;
    let rows_ok = rows.map(|r| r.is_some());
    let zero = _mm512_setzero_ps();
    let six = _mm512_set1_ps(6.0);
    // A missing row (top or bottom border) reads the centre row with its weights zeroed, so the
    // taps never branch on rows.
    let rows = rows.map(|r| r.unwrap_or(centre).as_ptr());
    for c0 in (0..c).step_by(LANES) {
        // SAFETY (the masked loads and stores below): the mask enables only the `c - c0`
        // channels left in this group, so every access stays inside the channel range of a
        // pixel that `columns` and the caller's row slices guarantee to exist.
        let mask = lane_mask(c - c0);
        let mut w = [zero; 9];
        for (tap, wv) in w.iter_mut().enumerate() {
            if rows_ok[tap / 3] {
                *wv = _mm512_maskz_loadu_ps(mask, layer.taps.as_ptr().add(tap * c + c0));
            }
        }
        let bias = _mm512_maskz_loadu_ps(mask, layer.bias.as_ptr().add(c0));
        let [r0, r1, r2] = rows.map(|r| r.add(c0));
        let mut store = |i: usize, acc: __m512| {
            let v = _mm512_min_ps(_mm512_max_ps(acc, zero), six);
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(i * c + c0), mask, v);
        };
        // Nine taps of output column `ox`, away from the left and right borders.
        let interior = |ox: usize, acc: __m512| {
            let at = (ox * s - 1) * c;
            let tap =
                |row: *const f32, kx: usize| _mm512_maskz_loadu_ps(mask, row.add(at + kx * c));
            let mut acc = _mm512_fmadd_ps(tap(r0, 0), w[0], acc);
            acc = _mm512_fmadd_ps(tap(r0, 1), w[1], acc);
            acc = _mm512_fmadd_ps(tap(r0, 2), w[2], acc);
            acc = _mm512_fmadd_ps(tap(r1, 0), w[3], acc);
            acc = _mm512_fmadd_ps(tap(r1, 1), w[4], acc);
            acc = _mm512_fmadd_ps(tap(r1, 2), w[5], acc);
            acc = _mm512_fmadd_ps(tap(r2, 0), w[6], acc);
            acc = _mm512_fmadd_ps(tap(r2, 1), w[7], acc);
            _mm512_fmadd_ps(tap(r2, 2), w[8], acc)
        };
        let border = |ox: usize| {
            let mut acc = bias;
            for kx in 0..3 {
                let ix = (ox * s + kx).wrapping_sub(1);
                if ix < w_in {
                    for (ky, row) in [r0, r1, r2].into_iter().enumerate() {
                        let x = _mm512_maskz_loadu_ps(mask, row.add(ix * c));
                        acc = _mm512_fmadd_ps(x, w[ky * 3 + kx], acc);
                    }
                }
            }
            acc
        };
        let [left, inner, right] = split_columns(columns.clone(), w_in, s);
        for ox in left {
            store(ox - columns.start, border(ox));
        }
        // Four columns at a time: four independent FMA chains hide the FMA latency.
        let (mut ox, end_interior) = (inner.start, inner.end);
        while ox + 4 <= end_interior {
            let (a0, a1, a2, a3) = (
                interior(ox, bias),
                interior(ox + 1, bias),
                interior(ox + 2, bias),
                interior(ox + 3, bias),
            );
            let i = ox - columns.start;
            store(i, a0);
            store(i + 1, a1);
            store(i + 2, a2);
            store(i + 3, a3);
            ox += 4;
        }
        for ox in ox..end_interior {
            store(ox - columns.start, interior(ox, bias));
        }
        for ox in right {
            store(ox - columns.start, border(ox));
        }
    }
}

/// Splits an output row's `columns` into the left border, the interior (windows wholly inside
/// the row: ox * stride + 1 < w_in) and the right border, in order; any may be empty.
pub(super) fn split_columns(
    columns: Range<usize>,
    w_in: usize,
    stride: usize,
) -> [Range<usize>; 3] {
    let interior_limit = if w_in >= 2 {
        (w_in - 2) / stride + 1
    } else {
        0
    };
    let first_interior = columns.start.max(1).min(columns.end);
    let end_interior = columns.end.min(interior_limit).max(first_interior);
    [
        columns.start..first_interior,
        first_interior..end_interior,
        end_interior..columns.end,
    ]
}

fn depthwise_row_portable(
    rows: [Option<&[f32]>; 3],
    w_in: usize,
    layer: &PackedDepthwise,
    columns: Range<usize>,
    out: &mut [f32],
) {
    let c = layer.channels;
    let s = layer.stride;
    for (i, ox) in columns.enumerate() {
        let acc = &mut out[i * c..(i + 1) * c];
        acc.copy_from_slice(&layer.bias);
        for (ky, row) in rows.iter().enumerate() {
            let Some(row) = row else { continue };
            for kx in 0..3 {
                let ix = (ox * s + kx).wrapping_sub(1);
                if ix >= w_in {
                    continue;
                }
                let x = &row[ix * c..][..c];
                let w = &layer.taps[(ky * 3 + kx) * c..][..c];
                for ((a, &xv), &wv) in acc.iter_mut().zip(x).zip(w) {
                    *a += xv * wv;
                }
            }
        }
        for a in acc.iter_mut() {
            *a = a.clamp(0.0, 6.0);
        }
    }
}

#[cfg(test)]
#[path = "kernels_tests.rs"]
mod tests;
