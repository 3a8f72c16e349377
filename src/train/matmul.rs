//! The matrix products of the head's dense layers, where one side is a small batch (16 rows):
//! `C (+)= A @ B` with row-major operands of any stride, register-tiled (6 rows x 16 columns of
//! accumulators under AVX2+FMA) and split across threads by output rows or columns.
//!
//! dfdx's CPU matmul hands every product to the `gemm` crate, which packs both operands on each
//! call; with a batch of 16 that packing costs as much as the arithmetic. Measured with
//! `facelab bench train` (head [1024, 512], batch 16, 2 threads): dfdx's forward plus backward
//! took 5.0-5.5 ms of a 6.4-7.0 ms step. Here the weights are read in place, and a product only
//! runs when its result is used (the features need no gradient).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

/// A row-major matrix view: element (r, c) is `data[r * stride + c]`.
#[derive(Clone, Copy)]
pub struct Matrix<'a> {
    pub data: &'a [f32],
    pub stride: usize,
}

/// Output columns per tile, and rows per full tile.
const TILE_COLS: usize = 16;
const TILE_ROWS: usize = 6;
/// Columns per parallel task when the output has few rows.
const COLUMN_BLOCK: usize = 128;
/// Products below this many multiply-adds run on the calling thread: handing out tasks costs
/// more than they save (a linear head on 1280 features has about 20 000 per row).
const PARALLEL_MIN_PRODUCTS: usize = 1 << 20;
/// Rows per parallel task when the output has many.
const ROW_BLOCK: usize = 48;

/// `c = a @ b (+ c)`, `a` being `rows x depth`, `b` being `depth x cols` and `c` being `rows x
/// cols` (row-major, contiguous); `bias` (one per column) starts each sum when given, and with
/// `accumulate` the product is added to what `c` holds. Deterministic: every output element is
/// summed in the same order whatever the thread count.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    a: Matrix,
    b: Matrix,
    c: &mut [f32],
    rows: usize,
    depth: usize,
    cols: usize,
    bias: Option<&[f32]>,
    accumulate: bool,
) {
    assert!(rows == 0 || a.data.len() >= (rows - 1) * a.stride + depth);
    assert!(depth == 0 || b.data.len() >= (depth - 1) * b.stride + cols);
    assert_eq!(c.len(), rows * cols);
    assert!(bias.is_none_or(|b| b.len() == cols));
    let job = Job {
        b,
        depth,
        bias,
        accumulate,
        isa: Isa::detect(),
    };
    if rows * depth * cols < PARALLEL_MIN_PRODUCTS {
        job.run(a, c, rows, 0..cols, cols);
    } else if rows >= 2 * ROW_BLOCK {
        c.par_chunks_mut(ROW_BLOCK * cols)
            .enumerate()
            .for_each(|(block, c)| {
                let first = block * ROW_BLOCK;
                let a = Matrix {
                    data: &a.data[first * a.stride..],
                    stride: a.stride,
                };
                job.run(a, c, c.len() / cols, 0..cols, cols);
            });
    } else {
        // Few rows: split the columns; each task fills its own block, copied in afterwards.
        let blocks: Vec<(usize, Vec<f32>)> = (0..cols)
            .step_by(COLUMN_BLOCK)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|first| {
                let width = COLUMN_BLOCK.min(cols - first);
                let mut block = vec![0.0; rows * width];
                if accumulate {
                    for (r, row) in block.chunks_exact_mut(width).enumerate() {
                        row.copy_from_slice(&c[r * cols + first..][..width]);
                    }
                }
                job.run(a, &mut block, rows, first..first + width, width);
                (first, block)
            })
            .collect();
        for (first, block) in blocks {
            let width = block.len() / rows.max(1);
            for (r, row) in block.chunks_exact(width.max(1)).enumerate() {
                c[r * cols + first..][..width].copy_from_slice(row);
            }
        }
    }
}

/// Which kernels this CPU runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx2,
    Portable,
}

impl Isa {
    fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
        Isa::Portable
    }
}

/// What every tile of one product shares.
struct Job<'a> {
    b: Matrix<'a>,
    depth: usize,
    bias: Option<&'a [f32]>,
    accumulate: bool,
    isa: Isa,
}

/// One tile: `rows` rows of A from `a`, the output columns `col0..col0 + width` (of B and the
/// bias), written at column `out_col` of rows of length `ldc` in `c`.
struct Tile<'a> {
    a: Matrix<'a>,
    col0: usize,
    width: usize,
    out_col: usize,
    ldc: usize,
}

/// The part of the depth one pass of a tile covers: with the weights' rows far apart, a strip of
/// B this deep stays in L1 while the tile's row groups take their turns on it, instead of being
/// read from L3 once per row group.
const DEPTH_CHUNK: usize = 256;

/// One pass of tiles over a range of the depth: B's rows from there, and how to start the sums
/// (the bias on the first pass, what `c` holds on the others when accumulating).
struct Pass<'a> {
    b: Matrix<'a>,
    depth: usize,
    bias: Option<&'a [f32]>,
    accumulate: bool,
}

impl Job<'_> {
    /// Computes `rows` rows of output columns `columns` into `c` (rows of length `ldc`, the
    /// first output column at index 0).
    fn run(
        &self,
        a: Matrix,
        c: &mut [f32],
        rows: usize,
        columns: std::ops::Range<usize>,
        ldc: usize,
    ) {
        let mut col = columns.start;
        while col < columns.end {
            let width = TILE_COLS.min(columns.end - col);
            if width < TILE_COLS && self.isa == Isa::Avx2 {
                self.run_padded(a, c, rows, col, width, col - columns.start, ldc);
                col += width;
                continue;
            }
            let mut first = 0;
            loop {
                let depth = DEPTH_CHUNK.min(self.depth - first);
                let pass = Pass {
                    b: Matrix {
                        data: &self.b.data[first * self.b.stride..],
                        stride: self.b.stride,
                    },
                    depth,
                    bias: self.bias.filter(|_| first == 0),
                    accumulate: self.accumulate || first > 0,
                };
                let a = Matrix {
                    data: &a.data[first..],
                    stride: a.stride,
                };
                self.pass(&pass, a, c, rows, col, col - columns.start, width, ldc);
                first += depth;
                if first >= self.depth {
                    break;
                }
            }
            col += width;
        }
    }

    /// Output columns `col..col + width` (fewer than a tile's 16) through the full-width
    /// kernels: that strip of B (and of the bias) is copied into a zero-padded 16-column one,
    /// and the results are copied out. The scalar fallback was most of a linear head's step
    /// (40 classes leave an 8-column strip; 4 classes are nothing but one).
    #[allow(clippy::too_many_arguments)]
    fn run_padded(
        &self,
        a: Matrix,
        c: &mut [f32],
        rows: usize,
        col: usize,
        width: usize,
        out_col: usize,
        ldc: usize,
    ) {
        let mut b = vec![0.0f32; self.depth * TILE_COLS];
        for (k, row) in b.chunks_exact_mut(TILE_COLS).enumerate() {
            row[..width].copy_from_slice(&self.b.data[k * self.b.stride + col..][..width]);
        }
        let bias = self.bias.map(|bias| {
            let mut padded = [0.0f32; TILE_COLS];
            padded[..width].copy_from_slice(&bias[col..col + width]);
            padded
        });
        let mut out = vec![0.0f32; rows * TILE_COLS];
        if self.accumulate {
            for (r, row) in out.chunks_exact_mut(TILE_COLS).enumerate() {
                row[..width].copy_from_slice(&c[r * ldc + out_col..][..width]);
            }
        }
        let padded = Job {
            b: Matrix {
                data: &b,
                stride: TILE_COLS,
            },
            depth: self.depth,
            bias: bias.as_ref().map(|b| &b[..]),
            accumulate: self.accumulate,
            isa: self.isa,
        };
        padded.run(a, &mut out, rows, 0..TILE_COLS, TILE_COLS);
        for (r, row) in out.chunks_exact(TILE_COLS).enumerate() {
            c[r * ldc + out_col..][..width].copy_from_slice(&row[..width]);
        }
    }

    /// One pass over the tile rows of output columns `col0..col0 + width`.
    #[allow(clippy::too_many_arguments)]
    fn pass(
        &self,
        pass: &Pass,
        a: Matrix,
        c: &mut [f32],
        rows: usize,
        col0: usize,
        out_col: usize,
        width: usize,
        ldc: usize,
    ) {
        let mut r = 0;
        while r < rows {
            let height = match rows - r {
                left if left >= TILE_ROWS => TILE_ROWS,
                left if left >= 4 => 4,
                left if left >= 2 => 2,
                _ => 1,
            };
            let tile = Tile {
                a: Matrix {
                    data: &a.data[r * a.stride..],
                    stride: a.stride,
                },
                col0,
                width,
                out_col,
                ldc,
            };
            self.tile(pass, &tile, height, &mut c[r * ldc..(r + height) * ldc]);
            r += height;
        }
    }

    fn tile(&self, pass: &Pass, t: &Tile, height: usize, c: &mut [f32]) {
        match (self.isa, t.width) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Isa::Avx2 is chosen only when the CPU has avx2 and fma; each tile asserts
            // that every element it reads or writes is inside its slices.
            (Isa::Avx2, TILE_COLS) => unsafe {
                match height {
                    6 => tile_avx2_6(pass, t, c),
                    4 => tile_avx2_4(pass, t, c),
                    2 => tile_avx2_2(pass, t, c),
                    _ => tile_avx2_1(pass, t, c),
                }
            },
            _ => tile_portable(pass, t, height, c),
        }
    }
}

fn tile_portable(pass: &Pass, t: &Tile, height: usize, c: &mut [f32]) {
    for r in 0..height {
        let a_row = &t.a.data[r * t.a.stride..][..pass.depth];
        for j in 0..t.width {
            let col = t.col0 + j;
            let mut sum = pass.bias.map_or(0.0, |b| b[col]);
            for (kk, &av) in a_row.iter().enumerate() {
                sum += av * pass.b.data[kk * pass.b.stride + col];
            }
            let out = &mut c[r * t.ldc + t.out_col + j];
            *out = if pass.accumulate { *out + sum } else { sum };
        }
    }
}

/// Generates an AVX2 tile of `rows` x 16 accumulators held in registers for the whole depth;
/// rows are unrolled by the macro so every accumulator index is a constant.
macro_rules! avx2_tile {
    ($name:ident, $rows:literal, [$($r:literal)*]) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name(pass: &Pass, t: &Tile, c: &mut [f32]) {
            let depth = pass.depth;
            let (a, b) = (t.a, pass.b);
            assert!(
                depth == 0
                    || (a.data.len() >= ($rows - 1) * a.stride + depth
                        && b.data.len() >= (depth - 1) * b.stride + t.col0 + TILE_COLS)
            );
            assert!(c.len() >= ($rows - 1) * t.ldc + t.out_col + TILE_COLS);
            let start = match pass.bias {
                Some(bias) => {
                    let bias = &bias[t.col0..t.col0 + TILE_COLS];
                    // SAFETY: `bias` holds the tile's 16 columns.
                    unsafe { [_mm256_loadu_ps(bias.as_ptr()), _mm256_loadu_ps(bias.as_ptr().add(8))] }
                }
                None => [_mm256_setzero_ps(); 2],
            };
            let mut acc = [start; $rows];
            let (ap, bp) = (a.data.as_ptr(), b.data.as_ptr().wrapping_add(t.col0));
            for kk in 0..depth {
                // SAFETY: kk < depth, so row kk of B holds the tile's 16 columns and each of the
                // tile's rows of A holds element kk (both asserted above).
                unsafe {
                    let b0 = _mm256_loadu_ps(bp.add(kk * b.stride));
                    let b1 = _mm256_loadu_ps(bp.add(kk * b.stride + 8));
                    $(
                        let av = _mm256_broadcast_ss(&*ap.add($r * a.stride + kk));
                        acc[$r][0] = _mm256_fmadd_ps(av, b0, acc[$r][0]);
                        acc[$r][1] = _mm256_fmadd_ps(av, b1, acc[$r][1]);
                    )*
                }
            }
            for (r, [lo, hi]) in acc.into_iter().enumerate() {
                let out = &mut c[r * t.ldc + t.out_col..][..TILE_COLS];
                // SAFETY: `out` holds the 16 columns loaded and stored.
                unsafe {
                    let (mut lo, mut hi) = (lo, hi);
                    if pass.accumulate {
                        lo = _mm256_add_ps(lo, _mm256_loadu_ps(out.as_ptr()));
                        hi = _mm256_add_ps(hi, _mm256_loadu_ps(out.as_ptr().add(8)));
                    }
                    _mm256_storeu_ps(out.as_mut_ptr(), lo);
                    _mm256_storeu_ps(out.as_mut_ptr().add(8), hi);
                }
            }
        }
    };
}

avx2_tile!(tile_avx2_6, 6, [0 1 2 3 4 5]);
avx2_tile!(tile_avx2_4, 4, [0 1 2 3]);
avx2_tile!(tile_avx2_2, 2, [0 1]);
avx2_tile!(tile_avx2_1, 1, [0]);

/// The transpose of a `rows x cols` row-major matrix.
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(m.len(), rows * cols);
    let mut t = vec![0.0; m.len()];
    for (r, row) in m.chunks_exact(cols.max(1)).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::pseudo_random;

    fn reference(
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        dims: (usize, usize, usize),
    ) -> Vec<f32> {
        let (rows, depth, cols) = dims;
        let mut c = vec![0.0f64; rows * cols];
        for r in 0..rows {
            for k in 0..depth {
                for j in 0..cols {
                    c[r * cols + j] += a[r * lda + k] as f64 * b[k * ldb + j] as f64;
                }
            }
        }
        c.into_iter().map(|v| v as f32).collect()
    }

    /// Every tile height and a ragged column edge, both parallel splits, strided operands, the
    /// bias and accumulation, against a plain triple loop in f64.
    #[test]
    fn products_match_a_plain_triple_loop() {
        for &(rows, depth, cols) in &[
            (16, 40, 300),
            (7, 5, 16),
            (1, 3, 4),
            (131, 16, 37),
            (5, 0, 9),
        ] {
            let (lda, ldb) = (depth + 3, cols + 2);
            let a = pseudo_random(rows * lda, 1);
            let b = pseudo_random(depth.max(1) * ldb, 2);
            let bias = pseudo_random(cols, 3);
            let before = pseudo_random(rows * cols, 4);
            let plain = reference(&a, lda, &b, ldb, (rows, depth, cols));
            let run = |bias: Option<&[f32]>, accumulate: bool| {
                let mut c = before.clone();
                matmul(
                    Matrix {
                        data: &a,
                        stride: lda,
                    },
                    Matrix {
                        data: &b,
                        stride: ldb,
                    },
                    &mut c,
                    rows,
                    depth,
                    cols,
                    bias,
                    accumulate,
                );
                c
            };
            let close = |got: &[f32], want: &dyn Fn(usize) -> f32| {
                for (i, g) in got.iter().enumerate() {
                    let w = want(i);
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{rows}x{depth}x{cols} at {i}: {g} vs {w}"
                    );
                }
            };
            close(&run(None, false), &|i| plain[i]);
            close(&run(Some(&bias), false), &|i| plain[i] + bias[i % cols]);
            close(&run(None, true), &|i| plain[i] + before[i]);
        }
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(transpose(&m, 2, 3), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
