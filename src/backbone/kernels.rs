//! The compute kernels of the backbone, in NHWC layout (a pixel's channels are contiguous):
//! a 1x1-convolution GEMM over pre-packed weights with bias, ReLU6 and the residual add fused
//! into its epilogue, and a 3x3 depthwise convolution with bias and ReLU6 fused.
//!
//! General GEMM crates pack both operands on every call; here the weights are packed once at
//! load time and the activations are read in place, which is what small-K 1x1 convolutions need.
//! The depthwise kernel lives in `kernels_depthwise` and is re-exported here.
//! Each kernel has an AVX-512 body, an AVX2+FMA body (the best one the CPU runs is chosen at
//! run time) and a portable body for other machines; the portable body is also the reference
//! the others are tested against. The AVX2 bodies live in `kernels_avx2`.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::ops::Range;

pub(super) use super::kernels_depthwise::split_columns;
pub use super::kernels_depthwise::{depthwise, depthwise_row, PackedDepthwise, Shape};

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

    /// The output channels of the column groups `groups` (a run of groups covers a run of
    /// channels; empty for no groups).
    pub fn groups_columns(&self, groups: Range<usize>) -> Range<usize> {
        if groups.is_empty() {
            return self.n..self.n;
        }
        self.group_columns(groups.start).start..self.group_columns(groups.end - 1).end
    }

    /// The output channels of column group `group` (empty past the last group).
    pub fn group_columns(&self, group: usize) -> Range<usize> {
        groups(self.n).nth(group).map_or(self.n..self.n, |g| {
            let start = g.first_panel * LANES;
            start..(start + g.panels * LANES).min(self.n)
        })
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
pub(super) fn lane_mask(remaining: usize) -> __mmask16 {
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

#[cfg(test)]
#[path = "kernels_tests.rs"]
mod tests;
