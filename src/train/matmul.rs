//! The matrix products of the head's dense layers, where one side is a small batch (16 rows):
//! `C (+)= A @ B` with each operand row-major (any stride) or in panels (see `layout`),
//! register-tiled (6 rows x 16 columns of accumulators under AVX2+FMA) and split across threads
//! by output rows, columns or panels.
//!
//! dfdx's CPU matmul hands every product to the `gemm` crate, which packs both operands on each
//! call; with a batch of 16 that packing costs as much as the arithmetic. Measured with
//! `facelab bench train` (head [1024, 512], batch 16, 2 threads): dfdx's forward plus backward
//! took 5.0-5.5 ms of a 6.4-7.0 ms step. Here the weights are read in place, and a product only
//! runs when its result is used (the features need no gradient).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

pub use super::layout::Matrix;
use super::layout::{Layout, BLOCK_COLS};

/// A writable matrix view (see [`Layout`]).
pub struct MatrixMut<'a> {
    pub data: &'a mut [f32],
    pub layout: Layout,
}

impl<'a> MatrixMut<'a> {
    pub fn row_major(data: &'a mut [f32], stride: usize) -> Self {
        MatrixMut {
            data,
            layout: Layout::row_major(stride),
        }
    }
}

/// Output columns per tile (a layout block), and rows per full tile.
const TILE_COLS: usize = BLOCK_COLS;
const TILE_ROWS: usize = 6;
/// Columns per parallel task when the output has few rows or is in panels.
const COLUMN_BLOCK: usize = 128;
/// Products below this many multiply-adds run on the calling thread: handing out tasks costs
/// more than they save (a linear head on 1280 features has about 20 000 per row).
const PARALLEL_MIN_PRODUCTS: usize = 1 << 20;
/// Rows per parallel task when a row-major output has many.
const ROW_BLOCK: usize = 48;

/// `c = a @ b (+ c)`, `a` being `rows x depth`, `b` being `depth x cols` and `c` being `rows x
/// cols`, each in its own layout; `bias` (one per column) starts each sum when given, and with
/// `accumulate` the product is added to what `c` holds. Deterministic: every output element is
/// summed in the same order whatever the thread count.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    a: Matrix,
    b: Matrix,
    c: MatrixMut,
    rows: usize,
    depth: usize,
    cols: usize,
    bias: Option<&[f32]>,
    accumulate: bool,
) {
    assert!(a.layout.fits(a.data.len(), rows, depth));
    assert!(b.layout.fits(b.data.len(), depth, cols));
    assert!(c.layout.fits(c.data.len(), rows, cols));
    assert!(bias.is_none_or(|b| b.len() == cols));
    if rows == 0 || cols == 0 {
        return;
    }
    let job = Job {
        b,
        depth,
        bias,
        accumulate,
        isa: Isa::detect(),
    };
    if rows * depth * cols < PARALLEL_MIN_PRODUCTS {
        job.run(a, c, rows, 0..cols);
    } else if !c.layout.is_row_major() {
        // Each task fills whole panels, which are contiguous.
        let per_task = COLUMN_BLOCK / BLOCK_COLS * c.layout.block;
        let layout = c.layout;
        c.data
            .par_chunks_mut(per_task)
            .enumerate()
            .for_each(|(task, data)| {
                let first = task * COLUMN_BLOCK;
                let columns = first..cols.min(first + COLUMN_BLOCK);
                job.run(a, MatrixMut { data, layout }, rows, columns);
            });
    } else if rows >= 2 * ROW_BLOCK {
        let stride = c.layout.stride;
        c.data
            .par_chunks_mut(ROW_BLOCK * stride)
            .enumerate()
            .for_each(|(task, data)| {
                let a = a.view(task * ROW_BLOCK, 0);
                let rows = ROW_BLOCK.min(rows - task * ROW_BLOCK);
                job.run(a, MatrixMut::row_major(data, stride), rows, 0..cols);
            });
    } else {
        split_columns(&job, a, c, rows, cols);
    }
}

/// Few rows, row-major output: tasks take blocks of columns, each filling its own block,
/// copied in afterwards.
fn split_columns(job: &Job, a: Matrix, c: MatrixMut, rows: usize, cols: usize) {
    let stride = c.layout.stride;
    let blocks: Vec<(usize, Vec<f32>)> = (0..cols)
        .step_by(COLUMN_BLOCK)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|first| {
            let width = COLUMN_BLOCK.min(cols - first);
            let mut block = vec![0.0; rows * width];
            if job.accumulate {
                for (r, row) in block.chunks_exact_mut(width).enumerate() {
                    row.copy_from_slice(&c.data[r * stride + first..][..width]);
                }
            }
            let out = MatrixMut::row_major(&mut block, width);
            job.run(a, out, rows, first..first + width);
            (first, block)
        })
        .collect();
    for (first, block) in blocks {
        let width = block.len() / rows.max(1);
        for (r, row) in block.chunks_exact(width.max(1)).enumerate() {
            c.data[r * stride + first..][..width].copy_from_slice(row);
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

/// The part of the depth one pass of a tile covers: a strip of B this deep stays in L1 while
/// the tile's row groups take their turns on it, instead of being read from L3 once per row
/// group.
const DEPTH_CHUNK: usize = 256;

/// One pass of tiles over a range of the depth: B's 16 columns of the tile from the range's
/// first row, and how to start the sums (the tile's 16 biases on the first pass, what the
/// output holds on the others when accumulating).
struct Pass<'a> {
    b: Matrix<'a>,
    depth: usize,
    bias: Option<&'a [f32]>,
    accumulate: bool,
    /// Whether the pass's first row group asks for B's next strip (the same columns
    /// `DEPTH_CHUNK` rows on; in panels, the next panel's start once the depth ends).
    prefetch: bool,
}

impl Job<'_> {
    /// Computes `rows` rows of output columns `columns` into `c`, whose column 0 is
    /// `columns.start`.
    fn run(&self, a: Matrix, mut c: MatrixMut, rows: usize, columns: std::ops::Range<usize>) {
        for col in columns.clone().step_by(TILE_COLS) {
            let width = TILE_COLS.min(columns.end - col);
            let out_col = col - columns.start;
            if width < TILE_COLS {
                self.run_padded(a, &mut c, rows, col, width, out_col);
                continue;
            }
            for first in (0..self.depth.max(1)).step_by(DEPTH_CHUNK) {
                let pass = Pass {
                    b: self.b.view(first, col),
                    depth: DEPTH_CHUNK.min(self.depth - first),
                    bias: self
                        .bias
                        .filter(|_| first == 0)
                        .map(|b| &b[col..col + width]),
                    accumulate: self.accumulate || first > 0,
                    prefetch: self.depth >= DEPTH_CHUNK,
                };
                self.pass(&pass, a.view(0, first), &mut c, rows, out_col);
            }
        }
    }

    /// Output columns `col..col + width` (fewer than a tile's 16) through the full-width
    /// kernels: that strip of B (and of the bias) is copied into a zero-padded 16-column one,
    /// and the results are copied out. The scalar fallback was most of a linear head's step
    /// (40 classes leave an 8-column strip; 4 classes are nothing but one).
    fn run_padded(
        &self,
        a: Matrix,
        c: &mut MatrixMut,
        rows: usize,
        col: usize,
        width: usize,
        out_col: usize,
    ) {
        let mut b = vec![0.0f32; self.depth * TILE_COLS];
        for (k, row) in b.chunks_exact_mut(TILE_COLS).enumerate() {
            let at = self.b.layout.offset(k, col);
            row[..width].copy_from_slice(&self.b.data[at..at + width]);
        }
        let bias = self.bias.map(|bias| {
            let mut padded = [0.0f32; TILE_COLS];
            padded[..width].copy_from_slice(&bias[col..col + width]);
            padded
        });
        let mut out = vec![0.0f32; rows * TILE_COLS];
        let out_at = |r: usize| c.layout.offset(r, out_col);
        if self.accumulate {
            for (r, row) in out.chunks_exact_mut(TILE_COLS).enumerate() {
                row[..width].copy_from_slice(&c.data[out_at(r)..][..width]);
            }
        }
        let padded = Job {
            b: Matrix::row_major(&b, TILE_COLS),
            depth: self.depth,
            bias: bias.as_ref().map(|b| &b[..]),
            accumulate: self.accumulate,
            isa: self.isa,
        };
        padded.run(
            a,
            MatrixMut::row_major(&mut out, TILE_COLS),
            rows,
            0..TILE_COLS,
        );
        for (r, row) in out.chunks_exact(TILE_COLS).enumerate() {
            let at = out_at(r);
            c.data[at..at + width].copy_from_slice(&row[..width]);
        }
    }

    /// One pass over the tile rows of the 16 output columns from `out_col`.
    fn pass(&self, pass: &Pass, a: Matrix, c: &mut MatrixMut, rows: usize, out_col: usize) {
        let mut r = 0;
        while r < rows {
            let height = match rows - r {
                left if left >= TILE_ROWS => TILE_ROWS,
                left if left >= 4 => 4,
                left if left >= 2 => 2,
                _ => 1,
            };
            let out = MatrixMut {
                data: &mut c.data[c.layout.offset(r, out_col)..],
                layout: c.layout,
            };
            self.tile(pass, a.view(r, 0), height, out, pass.prefetch && r == 0);
            r += height;
        }
    }

    /// One tile; with `prefetch`, it asks for B's next strip as it reads this one, so that the
    /// strip streams in from memory while the pass's other row groups compute.
    fn tile(&self, pass: &Pass, a: Matrix, height: usize, out: MatrixMut, prefetch: bool) {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Isa::Avx2 is chosen only when the CPU has avx2 and fma; each tile asserts
            // that every element it reads or writes is inside its slices.
            Isa::Avx2 => unsafe {
                match height {
                    6 => tile_avx2_6(pass, a, out, prefetch),
                    4 => tile_avx2_4(pass, a, out, prefetch),
                    2 => tile_avx2_2(pass, a, out, prefetch),
                    _ => tile_avx2_1(pass, a, out, prefetch),
                }
            },
            _ => tile_portable(pass, a, height, out),
        }
    }
}

/// A tile of `height` rows and 16 columns: rows of `a` from its first, and of the output from
/// its element 0 (the tile's first row and column).
fn tile_portable(pass: &Pass, a: Matrix, height: usize, out: MatrixMut) {
    for r in 0..height {
        for j in 0..TILE_COLS {
            let mut sum = pass.bias.map_or(0.0, |b| b[j]);
            for kk in 0..pass.depth {
                let b = pass.b.data[pass.b.layout.offset(kk, j)];
                sum += a.data[a.layout.offset(r, kk)] * b;
            }
            let out = &mut out.data[out.layout.offset(r, j)];
            *out = if pass.accumulate { *out + sum } else { sum };
        }
    }
}

/// Generates an AVX2 tile of `rows` x 16 accumulators held in registers for the whole depth;
/// rows are unrolled by the macro so every accumulator index is a constant. A is read a block
/// of 16 depth columns at a time, as its layout groups them.
macro_rules! avx2_tile {
    ($name:ident, $rows:literal, [$($r:literal)*]) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name(pass: &Pass, a: Matrix, out: MatrixMut, prefetch: bool) {
            let (depth, b) = (pass.depth, pass.b);
            assert!(
                depth == 0
                    || (a.layout.fits(a.data.len(), $rows, depth)
                        && b.data.len() >= b.layout.offset(depth - 1, 0) + TILE_COLS)
            );
            assert!(out.data.len() >= out.layout.offset($rows - 1, 0) + TILE_COLS);
            let start = match pass.bias {
                Some(bias) => {
                    let bias = &bias[..TILE_COLS];
                    // SAFETY: `bias` holds the tile's 16 columns.
                    unsafe { [_mm256_loadu_ps(bias.as_ptr()), _mm256_loadu_ps(bias.as_ptr().add(8))] }
                }
                None => [_mm256_setzero_ps(); 2],
            };
            let mut acc = [start; $rows];
            let (a_stride, b_stride) = (a.layout.stride, b.layout.stride);
            let ahead = DEPTH_CHUNK * b_stride;
            for first in (0..depth).step_by(BLOCK_COLS) {
                let ap = a.data.as_ptr().wrapping_add(a.layout.offset(0, first));
                let bp = b.data.as_ptr().wrapping_add(first * b_stride);
                for kk in 0..BLOCK_COLS.min(depth - first) {
                    // SAFETY: first + kk < depth, so row first + kk of B holds the tile's 16
                    // columns and each of the tile's rows of A holds that element (both
                    // asserted above; A's block holds 16 consecutive depth columns).
                    unsafe {
                        if prefetch {
                            // A hint, never a read: an address past B's end does not fault.
                            let next = bp.wrapping_add(kk * b_stride + ahead);
                            _mm_prefetch::<_MM_HINT_T0>(next.cast());
                        }
                        let b0 = _mm256_loadu_ps(bp.add(kk * b_stride));
                        let b1 = _mm256_loadu_ps(bp.add(kk * b_stride + 8));
                        $(
                            let av = _mm256_broadcast_ss(&*ap.add($r * a_stride + kk));
                            acc[$r][0] = _mm256_fmadd_ps(av, b0, acc[$r][0]);
                            acc[$r][1] = _mm256_fmadd_ps(av, b1, acc[$r][1]);
                        )*
                    }
                }
            }
            for (r, [lo, hi]) in acc.into_iter().enumerate() {
                let at = out.layout.offset(r, 0);
                let out = &mut out.data[at..at + TILE_COLS];
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

    /// A `rows x cols` matrix of `values` (row-major) in `layout`, with room to spare.
    fn laid_out(values: &[f32], rows: usize, cols: usize, layout: Layout) -> Vec<f32> {
        let len = layout.offset(rows.max(1) - 1, cols.next_multiple_of(16).max(16) - 1) + 1;
        let mut data = vec![f32::NAN; len];
        for r in 0..rows {
            for c in 0..cols {
                data[layout.offset(r, c)] = values[r * cols + c];
            }
        }
        data
    }

    /// Every tile height and a ragged column edge, the parallel splits (by rows, by columns,
    /// by panels), operands and output row-major with a wider stride or in panels, the bias and
    /// accumulation, against a plain triple loop in f64.
    #[test]
    fn products_match_a_plain_triple_loop() {
        for &(rows, depth, cols) in &[
            (16, 40, 300),
            (7, 5, 16),
            (1, 3, 4),
            (131, 16, 37),
            (5, 0, 9),
            (0, 300, 20),
            (3, 300, 0),
            (16, 300, 300),
            (1100, 16, 100),
            (300, 70, 60),
        ] {
            let a = pseudo_random(rows * depth, 1);
            let b = pseudo_random(depth * cols, 2);
            let bias = pseudo_random(cols, 3);
            let before = pseudo_random(rows * cols, 4);
            let plain = reference(&a, depth, &b, cols, (rows, depth, cols));
            let wide = |columns: usize| Layout::row_major(columns + 3);
            let layouts = [
                (wide(depth), wide(cols), wide(cols)),
                (
                    Layout::panels(rows),
                    Layout::panels(depth),
                    Layout::panels(rows),
                ),
                (wide(depth), Layout::panels(depth), wide(cols)),
            ];
            for (a_layout, b_layout, c_layout) in layouts {
                let a = laid_out(&a, rows, depth, a_layout);
                let b = laid_out(&b, depth, cols, b_layout);
                let run = |bias: Option<&[f32]>, accumulate: bool| {
                    let mut c = laid_out(&before, rows, cols, c_layout);
                    matmul(
                        Matrix {
                            data: &a,
                            layout: a_layout,
                        },
                        Matrix {
                            data: &b,
                            layout: b_layout,
                        },
                        MatrixMut {
                            data: &mut c,
                            layout: c_layout,
                        },
                        rows,
                        depth,
                        cols,
                        bias,
                        accumulate,
                    );
                    c
                };
                let close = |got: &[f32], want: &dyn Fn(usize) -> f32| {
                    for r in 0..rows {
                        for j in 0..cols {
                            let (g, w) = (got[c_layout.offset(r, j)], want(r * cols + j));
                            assert!(
                                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                                "{rows}x{depth}x{cols} {c_layout:?} at ({r}, {j}): {g} vs {w}"
                            );
                        }
                    }
                };
                close(&run(None, false), &|i| plain[i]);
                close(&run(Some(&bias), false), &|i| plain[i] + bias[i % cols]);
                close(&run(None, true), &|i| plain[i] + before[i]);
            }
        }
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(transpose(&m, 2, 3), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
