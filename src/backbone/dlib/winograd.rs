//! Winograd's minimal filtering F(2x2, 3x3) for the network's 3x3 stride-1 convolutions: each
//! 2x2 block of outputs ("tile") is computed from the 4x4 input window around it with 16
//! multiplies per input-output channel pair instead of 36, so the GEMM work of these layers
//! (nine tenths of the network) falls by up to 2.25x.
//!
//! The three steps, after Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks"
//! (2016): every tile's window is transformed, `V = Bᵀ d B`; each of the 16 positions of the
//! transformed tile is one GEMM of the tiles' `V` (tiles x inputs) by the transformed filters
//! `U = G g Gᵀ` (inputs x outputs), run on the backbone's packed GEMM; the products are
//! transformed back, `Y = Aᵀ M A`, with the bias, the block's skip and ReLU added on the way
//! out. The input and output transforms only add and subtract and the filter transform only
//! halves, so the rounding stays close to the direct convolution's (within 1e-4 relative in the
//! unit test; descriptors still at cosine 1.000000 to dlib's from its chips). Maps are NHWC; the
//! transforms work on whole pixels of channels at a time.

use std::ops::Range;

use crate::backbone::kernels::{pointwise_groups, Activation, Isa, PackedPointwise};

/// Smallest output map side a 3x3 stride-1 convolution runs on by Winograd (chosen when the
/// network is read). Measured per layer on one core (min of 30): 35x35x32 240 -> 200 us,
/// 17x17x64 198 -> 134, 8x8x128 168 -> 88, 4x4x256 164 -> 80, 3x3x256 108 -> 80; the 1x1 map of
/// the last block is a single tile mostly of padding (25 -> 51 us) and runs as im2col.
pub(super) const MIN_SIDE: usize = 3;

/// Positions of a transformed 4x4 tile, each one GEMM.
const POSITIONS: usize = 16;

/// A 3x3, stride-1, pad-1 convolution's filters transformed and packed, one GEMM per position.
pub(super) struct Winograd {
    inputs: usize,
    outputs: usize,
    positions: Vec<PackedPointwise>,
    bias: Vec<f32>,
}

impl Winograd {
    /// From filters in im2col order (`weight[n][(dy * 3 + dx) * inputs + c]`) and a bias.
    pub(super) fn new(weight: &[f32], bias: &[f32], inputs: usize, outputs: usize) -> Self {
        assert_eq!(weight.len(), outputs * 9 * inputs, "3x3 filters");
        assert_eq!(bias.len(), outputs, "a bias per output");
        // u[position][n][c], as PackedPointwise takes `[n][k]`.
        let mut u = vec![vec![0.0; outputs * inputs]; POSITIONS];
        for n in 0..outputs {
            for c in 0..inputs {
                let g: [[f32; 3]; 3] = std::array::from_fn(|dy| {
                    std::array::from_fn(|dx| weight[(n * 9 + dy * 3 + dx) * inputs + c])
                });
                for (position, value) in transform_filter(&g).into_iter().enumerate() {
                    u[position][n * inputs + c] = value;
                }
            }
        }
        let zeros = vec![0.0; outputs];
        Winograd {
            inputs,
            outputs,
            positions: u
                .iter()
                .map(|w| PackedPointwise::new(w, &zeros, outputs, inputs))
                .collect(),
            bias: bias.to_vec(),
        }
    }

    /// How many column groups each position's GEMM has (see `PackedPointwise::group_count`).
    pub(super) fn group_count(&self) -> usize {
        self.positions[0].group_count()
    }

    /// Floats of transformed input and of products that `tiles` tiles need.
    pub(super) fn scratch_len(&self, tiles: usize) -> (usize, usize) {
        (
            POSITIONS * tiles * self.inputs,
            POSITIONS * tiles * self.outputs,
        )
    }

    /// The convolution of `x` (maps of `height` x `width` x inputs, one after another) for
    /// `tiles` (indices over every map's tiles, map after map, each map's row-major: see
    /// [`tile_grid`]) and output channels of column groups `groups`: calls `store(pixel,
    /// first_column, values)` (pixels counted over every map, as `residual`'s) with every
    /// finished output of those tiles inside its map, `relu(conv + bias + residual)` (ReLU only
    /// when `relu`). `v` and `m` are scratch of [`Winograd::scratch_len`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        &self,
        isa: Isa,
        x: &[f32],
        (height, width): (usize, usize),
        tiles: Range<usize>,
        groups: Range<usize>,
        (v, m): (&mut [f32], &mut [f32]),
        residual: Option<&[f32]>,
        relu: bool,
        mut store: impl FnMut(usize, usize, &[f32]),
    ) {
        let count = tiles.len();
        let (c, k) = (self.inputs, self.outputs);
        debug_assert_eq!(x.len() % (height * width * c), 0);
        vectorized(isa, || {
            transform_input(x, (height, width), c, tiles.clone(), v)
        });
        for (position, packed) in self.positions.iter().enumerate() {
            pointwise_groups(
                isa,
                &v[position * count * c..][..count * c],
                packed,
                Activation::None,
                None,
                &mut m[position * count * k..][..count * k],
                groups.clone(),
            );
        }
        let columns = self.positions[0].groups_columns(groups);
        if columns.is_empty() {
            return;
        }
        let wide = columns.len();
        let bias = &self.bias[columns.clone()];
        vectorized(isa, || {
            // Aᵀ M, row r of column j at `half[(r * 4 + j) * wide..]`; then (Aᵀ M) A, a row of two
            // outputs at a time.
            let (mut half, mut pair) = (vec![0.0; 8 * wide], vec![0.0; 2 * wide]);
            let grid = MapTiles::new(height, width);
            for (local, tile) in tiles.enumerate() {
                let product = |p: usize| &m[(p * count + local) * k..][columns.clone()];
                let (top, bottom) = half.split_at_mut(4 * wide);
                for (j, (t, b)) in top
                    .chunks_exact_mut(wide)
                    .zip(bottom.chunks_exact_mut(wide))
                    .enumerate()
                {
                    output_combination(
                        [product(j), product(4 + j), product(8 + j), product(12 + j)],
                        [t, b],
                    );
                }
                let (map, ty, tx) = grid.locate(tile);
                for r in 0..2 {
                    let y = 2 * ty + r;
                    if y >= height {
                        break;
                    }
                    let row = |j: usize| &half[(r * 4 + j) * wide..][..wide];
                    let (first, second) = pair.split_at_mut(wide);
                    output_combination([row(0), row(1), row(2), row(3)], [first, second]);
                    for (s, values) in pair.chunks_exact_mut(wide).enumerate() {
                        let xx = 2 * tx + s;
                        if xx >= width {
                            break;
                        }
                        let pixel = map * height * width + y * width + xx;
                        let skip = residual.map(|res| &res[pixel * k..][columns.clone()]);
                        finish(values, bias, skip, relu);
                        store(pixel, columns.start, values);
                    }
                }
            }
        });
    }
}

/// Runs `work` compiled for the best vector instructions `isa` allows: the transforms are plain
/// loops that LLVM vectorizes, and without this they would get the baseline x86-64's 4-lane
/// SSE (measured: the transforms then cost more than the multiplies they save).
#[inline(always)]
fn vectorized<T>(isa: Isa, work: impl FnOnce() -> T) -> T {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Isa::Avx512 is only chosen when the CPU reports avx512f (Isa::detect).
        Isa::Avx512 => unsafe { with_avx512(work) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Isa::Avx2 is only chosen when the CPU reports avx2 and fma (Isa::detect).
        Isa::Avx2 => unsafe { with_avx2(work) },
        _ => work(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn with_avx512<T>(work: impl FnOnce() -> T) -> T {
    work()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<T>(work: impl FnOnce() -> T) -> T {
    work()
}

/// Tiles down and across a map: each covers a 2x2 block of outputs.
pub(super) fn tile_grid(height: usize, width: usize) -> (usize, usize) {
    (height.div_ceil(2), width.div_ceil(2))
}

/// Where a tile of stacked `height` x `width` maps is.
struct MapTiles {
    per_map: usize,
    across: usize,
}

impl MapTiles {
    fn new(height: usize, width: usize) -> Self {
        let (down, across) = tile_grid(height, width);
        MapTiles {
            per_map: down * across,
            across,
        }
    }

    /// Tile `tile`'s map, and its place there (tiles down, tiles across).
    fn locate(&self, tile: usize) -> (usize, usize, usize) {
        let (map, local) = (tile / self.per_map, tile % self.per_map);
        (map, local / self.across, local % self.across)
    }
}

/// `U = G g Gᵀ` with `G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]`, row-major 4x4.
fn transform_filter(g: &[[f32; 3]; 3]) -> [f32; POSITIONS] {
    let gm = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let left: [[f32; 3]; 4] =
        std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|t| gm[i][t] * g[t][j]).sum()));
    std::array::from_fn(|p| {
        let (i, j) = (p / 4, p % 4);
        (0..3).map(|t| left[i][t] * gm[j][t]).sum()
    })
}

/// Writes `V = Bᵀ d B` of every tile in `tiles` (of the maps in `x`, see [`Winograd::run`])
/// into `v` as `[position][tile][channel]`, with `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1,
/// 0], [0, 1, 0, -1]]`; windows start one pixel up and left of their tile and read zeros outside
/// their map (the convolution's padding).
#[inline(always)]
fn transform_input(
    x: &[f32],
    (height, width): (usize, usize),
    channels: usize,
    tiles: Range<usize>,
    v: &mut [f32],
) {
    let count = tiles.len();
    let grid = MapTiles::new(height, width);
    let zeros = vec![0.0; channels];
    // Bᵀ d, row i of column j at `half[(i * 4 + j) * channels..]`; then one row of (Bᵀ d) B.
    let (mut half, mut row) = (vec![0.0; 16 * channels], vec![0.0; 4 * channels]);
    for (local, tile) in tiles.enumerate() {
        let (map, ty, tx) = grid.locate(tile);
        let map_x = &x[map * height * width * channels..];
        let window = |i: usize, j: usize| -> &[f32] {
            let (y, xx) = ((2 * ty + i).wrapping_sub(1), (2 * tx + j).wrapping_sub(1));
            if y < height && xx < width {
                &map_x[(y * width + xx) * channels..][..channels]
            } else {
                &zeros
            }
        };
        for j in 0..4 {
            let [o0, o1, o2, o3] = column_outputs(&mut half, j, channels);
            input_combination(
                [window(0, j), window(1, j), window(2, j), window(3, j)],
                [o0, o1, o2, o3],
            );
        }
        for i in 0..4 {
            let part = |j: usize| &half[(i * 4 + j) * channels..][..channels];
            let [o0, o1, o2, o3] = quarters(&mut row, channels);
            input_combination([part(0), part(1), part(2), part(3)], [o0, o1, o2, o3]);
            for (j, values) in row.chunks_exact(channels).enumerate() {
                let position = i * 4 + j;
                v[(position * count + local) * channels..][..channels].copy_from_slice(values);
            }
        }
    }
}

/// The four rows i = 0..4 of column `j` in `half` (laid out as in [`transform_input`]).
#[inline(always)]
fn column_outputs(half: &mut [f32], j: usize, channels: usize) -> [&mut [f32]; 4] {
    let mut rows = half
        .chunks_exact_mut(4 * channels)
        .map(|r| &mut r[j * channels..][..channels]);
    std::array::from_fn(|_| rows.next().expect("four rows"))
}

/// `values` cut into four runs of `channels`.
#[inline(always)]
fn quarters(values: &mut [f32], channels: usize) -> [&mut [f32]; 4] {
    let mut parts = values.chunks_exact_mut(channels);
    std::array::from_fn(|_| parts.next().expect("four parts"))
}

/// `Bᵀ` applied to four vectors: `[d0 - d2, d1 + d2, d2 - d1, d1 - d3]`.
#[inline(always)]
fn input_combination([d0, d1, d2, d3]: [&[f32]; 4], [o0, o1, o2, o3]: [&mut [f32]; 4]) {
    let n = o0.len();
    let (d0, d1, d2, d3) = (&d0[..n], &d1[..n], &d2[..n], &d3[..n]);
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for l in 0..n {
        o0[l] = d0[l] - d2[l];
        o1[l] = d1[l] + d2[l];
        o2[l] = d2[l] - d1[l];
        o3[l] = d1[l] - d3[l];
    }
}

/// `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]` applied to four vectors: `[m0 + m1 + m2, m1 - m2 - m3]`.
#[inline(always)]
fn output_combination([m0, m1, m2, m3]: [&[f32]; 4], [o0, o1]: [&mut [f32]; 2]) {
    let n = o0.len();
    let (m0, m1, m2, m3, o1) = (&m0[..n], &m1[..n], &m2[..n], &m3[..n], &mut o1[..n]);
    for l in 0..n {
        o0[l] = m0[l] + m1[l] + m2[l];
        o1[l] = m1[l] - m2[l] - m3[l];
    }
}

/// Adds the bias and the skip, then ReLU when `relu`.
#[inline(always)]
fn finish(values: &mut [f32], bias: &[f32], skip: Option<&[f32]>, relu: bool) {
    for (value, b) in values.iter_mut().zip(bias) {
        *value += b;
    }
    if let Some(skip) = skip {
        for (value, s) in values.iter_mut().zip(skip) {
            *value += s;
        }
    }
    if relu {
        for value in values.iter_mut() {
            *value = value.max(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::pseudo_random as values;

    /// The 3x3 pad-1 convolution summed directly, with bias, skip and ReLU.
    #[allow(clippy::too_many_arguments)]
    fn direct(
        x: &[f32],
        (height, width, c): (usize, usize, usize),
        weight: &[f32],
        bias: &[f32],
        residual: &[f32],
        k: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0; height * width * k];
        for y in 0..height {
            for xx in 0..width {
                for n in 0..k {
                    let mut sum = f64::from(bias[n]);
                    for dy in 0..3 {
                        for dx in 0..3 {
                            let (sy, sx) =
                                (y as isize + dy as isize - 1, xx as isize + dx as isize - 1);
                            if sy < 0 || sx < 0 || sy >= height as isize || sx >= width as isize {
                                continue;
                            }
                            for ch in 0..c {
                                let input = x[(sy as usize * width + sx as usize) * c + ch];
                                sum += f64::from(input * weight[(n * 9 + dy * 3 + dx) * c + ch]);
                            }
                        }
                    }
                    let at = (y * width + xx) * k + n;
                    out[at] = (sum as f32 + residual[at]).max(0.0);
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_direct_convolution_on_odd_and_even_stacked_maps_in_any_split() {
        let sizes = [(6, 6, 8, 16), (7, 5, 16, 24), (3, 3, 32, 64), (9, 9, 3, 40)];
        for ((height, width, c, k), maps) in sizes.into_iter().flat_map(|s| [(s, 1), (s, 3)]) {
            let isa = Isa::detect();
            let (map_in, map_out) = (height * width * c, height * width * k);
            let x = values(maps * map_in, 1);
            let weight = values(k * 9 * c, 2);
            let bias = values(k, 3);
            let residual = values(maps * map_out, 4);
            let expected: Vec<f32> = (0..maps)
                .flat_map(|m| {
                    let (x, residual) = (&x[m * map_in..], &residual[m * map_out..]);
                    direct(x, (height, width, c), &weight, &bias, residual, k)
                })
                .collect();
            let wino = Winograd::new(&weight, &bias, c, k);
            let (th, tw) = tile_grid(height, width);
            let tiles = maps * th * tw;
            // Tiles in three runs (across the maps' boundaries), column groups one at a time:
            // every output written once.
            let mut got = vec![f32::NAN; maps * map_out];
            for run in [0..tiles / 3, tiles / 3..tiles / 2, tiles / 2..tiles] {
                for group in 0..wino.group_count() {
                    let (vl, ml) = wino.scratch_len(run.len());
                    let (mut v, mut m) = (vec![0.0; vl], vec![0.0; ml]);
                    let shape = (height, width);
                    let scratch = (&mut v[..], &mut m[..]);
                    wino.run(
                        isa,
                        &x,
                        shape,
                        run.clone(),
                        group..group + 1,
                        scratch,
                        Some(&residual),
                        true,
                        |p, col, vals| {
                            let to = &mut got[p * k + col..][..vals.len()];
                            assert!(
                                to.iter().all(|v| v.is_nan()),
                                "pixel {p} column {col} written twice"
                            );
                            to.copy_from_slice(vals);
                        },
                    );
                }
            }
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (g - e).abs() < 1e-4 * (1.0 + e.abs()),
                    "{maps} maps {height}x{width}x{c}->{k} at {i}: {g} vs {e}"
                );
            }
        }
    }
}
