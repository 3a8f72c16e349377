//! The AVX2+FMA bodies of the backbone's kernels (see `kernels` for the layouts they share).
//!
//! An AVX2 vector holds 8 floats and a core has 16 vector registers, so a pointwise tile is
//! 6 rows x 16 channels (12 accumulators, two weight vectors and one broadcast: the classic
//! shape for this register file), run over each 16-wide panel of a packed weight group; the
//! 12-row tiles of the AVX-512 path become two 6-row passes. Only `x86_64` builds include it.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::ops::Range;

use super::kernels::{split_columns, Activation, PackedDepthwise, Tile, LANES, TILE_ROWS};

/// Floats per AVX2 vector.
const WIDTH: usize = 8;

/// Computes one tile (`height` rows of A, `panels` 16-wide weight panels) into `out`.
///
/// # Safety
/// The CPU must support avx2 and fma. Bounds are asserted by each pass.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn tile(t: &Tile, height: usize, panels: usize, out: &mut [f32]) {
    let width = panels * LANES;
    for panel in 0..panels {
        // SAFETY: avx2 and fma are present (this function's contract); each pass asserts that
        // the slices it reads and writes hold its rows and columns.
        unsafe {
            match height {
                TILE_ROWS => {
                    rows6(t, width, panel, 0, out);
                    rows6(t, width, panel, 6, out);
                }
                1 => rows1(t, width, panel, 0, out),
                _ => rows4(t, width, panel, 0, out),
            }
        }
    }
}

/// Generates a pass of `rows` x 16 accumulators over one panel, held in registers for the whole
/// k loop; the rows are unrolled so every accumulator index is a constant.
macro_rules! avx2_pass {
    ($name:ident, $rows:literal, [$($r:literal)*]) => {
        /// Rows `first_row..first_row + ROWS` of the tile against panel `panel` of a group
        /// `width` floats wide.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name(t: &Tile, width: usize, panel: usize, first_row: usize, out: &mut [f32]) {
            let k = t.k;
            assert!(
                t.a.len() >= (first_row + $rows) * k
                    && (panel + 1) * LANES <= width
                    && t.b.len() >= k * width
                    && t.bias.len() >= width
            );
            let a = t.a[first_row * k..].as_ptr();
            let b = t.b[panel * LANES..].as_ptr();
            let mut acc = [[_mm256_setzero_ps(); 2]; $rows];
            for kk in 0..k {
                // SAFETY: kk * width + panel * LANES + 16 <= k * width <= t.b.len(), and
                // row r's element kk is inside t.a (both asserted above).
                unsafe {
                    let b0 = _mm256_loadu_ps(b.add(kk * width));
                    let b1 = _mm256_loadu_ps(b.add(kk * width + WIDTH));
                    $(
                        let av = _mm256_broadcast_ss(&*a.add($r * k + kk));
                        acc[$r][0] = _mm256_fmadd_ps(av, b0, acc[$r][0]);
                        acc[$r][1] = _mm256_fmadd_ps(av, b1, acc[$r][1]);
                    )*
                }
            }
            // SAFETY: avx2 is present (this function's target features).
            unsafe { finish(t, panel, first_row, &acc, out) }
        }
    };
}

avx2_pass!(rows6, 6, [0 1 2 3 4 5]);
avx2_pass!(rows4, 4, [0 1 2 3]);
avx2_pass!(rows1, 1, [0]);

/// Bias, activation, residual and the stores of the valid rows and columns of one pass.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn finish<const ROWS: usize>(
    t: &Tile,
    panel: usize,
    first_row: usize,
    sums: &[[__m256; 2]; ROWS],
    out: &mut [f32],
) {
    // One body per epilogue, so the per-vector work has no branches on the tile's settings.
    // SAFETY: avx2 is present (this function's target features).
    unsafe {
        match (t.act, t.residual) {
            (Activation::Relu6, None) => {
                finish_with::<ROWS, true>(t, panel, first_row, sums, &[], out)
            }
            (Activation::Relu6, Some(res)) => {
                finish_with::<ROWS, true>(t, panel, first_row, sums, res, out)
            }
            (Activation::None, res) => {
                finish_with::<ROWS, false>(t, panel, first_row, sums, res.unwrap_or(&[]), out)
            }
        }
    }
}

/// [`finish`] for one activation; `residual` is empty when there is none.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn finish_with<const ROWS: usize, const RELU6: bool>(
    t: &Tile,
    panel: usize,
    first_row: usize,
    sums: &[[__m256; 2]; ROWS],
    residual: &[f32],
    out: &mut [f32],
) {
    let zero = _mm256_setzero_ps();
    let six = _mm256_set1_ps(6.0);
    let has_residual = !residual.is_empty();
    let rows = t.rows.saturating_sub(first_row).min(ROWS);
    for (r, row) in sums.iter().enumerate().take(rows) {
        for (j, &sum) in row.iter().enumerate() {
            let c = panel * LANES + j * WIDTH;
            if c >= t.cols {
                break;
            }
            let valid = (t.cols - c).min(WIDTH);
            let at = (first_row + r) * t.n + t.col0 + c;
            let bias = &t.bias[c..c + WIDTH];
            let out = &mut out[at..at + valid];
            let residual = if has_residual {
                &residual[at..at + valid]
            } else {
                &[]
            };
            // SAFETY: every pointer below comes from a slice of at least WIDTH elements where
            // 8 are loaded or stored (`bias` always; `out` and `residual` when valid == 8).
            unsafe {
                let mut v = _mm256_add_ps(sum, _mm256_loadu_ps(bias.as_ptr()));
                if RELU6 {
                    v = _mm256_min_ps(_mm256_max_ps(v, zero), six);
                }
                if valid == WIDTH {
                    if has_residual {
                        v = _mm256_add_ps(v, _mm256_loadu_ps(residual.as_ptr()));
                    }
                    _mm256_storeu_ps(out.as_mut_ptr(), v);
                } else {
                    let mut lanes = [0.0f32; WIDTH];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), v);
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = lanes[i] + residual.get(i).copied().unwrap_or(0.0);
                    }
                }
            }
        }
    }
}

/// One output row of a depthwise conv with ReLU6 (see `kernels::depthwise_row`).
///
/// # Safety
/// The CPU must support avx2 and fma, and each `Some` row (and `centre`) must hold at least
/// `w_in * layer.channels` floats; `out` must hold `columns.len() * layer.channels`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn depthwise_row(
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
    // A missing row (top or bottom border) reads the centre row with its weights zeroed, so the
    // taps never branch on rows.
    let rows = rows.map(|r| r.unwrap_or(centre).as_ptr());
    let zero = _mm256_setzero_ps();
    let six = _mm256_set1_ps(6.0);
    let lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for c0 in (0..c).step_by(WIDTH) {
        let full = c - c0 >= WIDTH;
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((c - c0) as i32), lane_index);
        // SAFETY (every load and store in this group): a full group touches channels
        // c0..c0 + 8 <= c of a pixel; a partial one is masked to the c - c0 channels left.
        // The pixels are inside the rows and `out` by this function's contract and the border
        // logic (interior columns have ox * s + 1 < w_in).
        let load = |p: *const f32| {
            // SAFETY: `p` is a pixel's channel c0 (see above).
            unsafe {
                if full {
                    _mm256_loadu_ps(p)
                } else {
                    _mm256_maskload_ps(p, mask)
                }
            }
        };
        let mut w = [zero; 9];
        for (tap, wv) in w.iter_mut().enumerate() {
            if rows_ok[tap / 3] {
                // SAFETY: tap * c + c0 is a channel of this tap (see above).
                *wv = load(unsafe { layer.taps.as_ptr().add(tap * c + c0) });
            }
        }
        // SAFETY: c0 is a channel (see above).
        let bias = load(unsafe { layer.bias.as_ptr().add(c0) });
        // SAFETY: c0 is a channel of each row's first pixel.
        let [r0, r1, r2] = rows.map(|r| unsafe { r.add(c0) });
        let out_ptr = out.as_mut_ptr();
        let store = |i: usize, acc: __m256| {
            let v = _mm256_min_ps(_mm256_max_ps(acc, zero), six);
            // SAFETY: output column i < columns.len(), channel c0 (see above).
            unsafe {
                let p = out_ptr.add(i * c + c0);
                if full {
                    _mm256_storeu_ps(p, v);
                } else {
                    _mm256_maskstore_ps(p, mask, v);
                }
            }
        };
        // Nine taps of output column `ox`, away from the left and right borders, as three
        // independent chains (one per row), so consecutive columns overlap in the FMA units
        // without holding more accumulators than the 16 registers allow beside the weights.
        let interior = |ox: usize| {
            let at = (ox * s - 1) * c;
            // SAFETY: an interior window's pixels ox*s-1 ..= ox*s+1 are inside the row.
            let tap = |row: *const f32, kx: usize| load(unsafe { row.add(at + kx * c) });
            let mut top = _mm256_fmadd_ps(tap(r0, 0), w[0], bias);
            top = _mm256_fmadd_ps(tap(r0, 1), w[1], top);
            top = _mm256_fmadd_ps(tap(r0, 2), w[2], top);
            let mut middle = _mm256_mul_ps(tap(r1, 0), w[3]);
            middle = _mm256_fmadd_ps(tap(r1, 1), w[4], middle);
            middle = _mm256_fmadd_ps(tap(r1, 2), w[5], middle);
            let mut bottom = _mm256_mul_ps(tap(r2, 0), w[6]);
            bottom = _mm256_fmadd_ps(tap(r2, 1), w[7], bottom);
            bottom = _mm256_fmadd_ps(tap(r2, 2), w[8], bottom);
            _mm256_add_ps(top, _mm256_add_ps(middle, bottom))
        };
        let border = |ox: usize| {
            let mut acc = bias;
            for kx in 0..3 {
                let ix = (ox * s + kx).wrapping_sub(1);
                if ix < w_in {
                    for (ky, row) in [r0, r1, r2].into_iter().enumerate() {
                        // SAFETY: ix < w_in is a pixel of the row.
                        let x = load(unsafe { row.add(ix * c) });
                        acc = _mm256_fmadd_ps(x, w[ky * 3 + kx], acc);
                    }
                }
            }
            acc
        };
        let [left, inner, right] = split_columns(columns.clone(), w_in, s);
        for ox in left {
            store(ox - columns.start, border(ox));
        }
        for ox in inner {
            store(ox - columns.start, interior(ox));
        }
        for ox in right {
            store(ox - columns.start, border(ox));
        }
    }
}
