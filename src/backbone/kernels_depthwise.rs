//! The 3x3 depthwise convolution of MobileNetV2's blocks, in NHWC layout, with bias and ReLU6
//! fused: weights packed tap-major once at load time, an AVX-512 body, the AVX2 body in
//! `kernels_avx2`, and a portable body that the others are tested against.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
use super::kernels::lane_mask;
use super::kernels::{Isa, LANES};

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
