//! The forward pass of dlib's face ResNet: chips through the stem, the residual blocks, the
//! global pool and the last layer. Convolutions run as an im2col gather and GEMM, or, for the
//! blocks' 3x3 stride-1 convolutions, as Winograd's F(2x2, 3x3) (`winograd`). A lone chip is
//! computed by a team of threads that share out every layer (by output pixels or tiles where a
//! map is large, by output-channel groups where it is small: the deep 8x8, 4x4 and smaller maps
//! hold a third of the work) and meet at a spinning barrier between layers, as MobileNetV2's
//! team does. A batch runs a few chips per task, each task a team of one: their maps are
//! stacked, so one GEMM covers the pixels of all of them and the deep layers' weights (megabytes
//! for a 4x4 map of a few pixels) are read once for the few chips rather than once per chip.
//! The layers' buffers are in `buffers`.

use std::ops::Range;

use rayon::prelude::*;

use super::buffers::{share, BlockBuffers, Buffers, Dims, Layer};
use super::resnet::{Block, Conv, FaceResNet, KernelRun, CHIP_SIZE, DESCRIPTOR_DIM};
use super::winograd::{tile_grid, Winograd};
use crate::backbone::kernels::{
    pointwise, pointwise_groups, Activation, PackedPointwise, TILE_ROWS,
};
use crate::backbone::network::team::{Member, SpinBarrier};

/// Fewest GEMM rows (output pixels, or Winograd tiles) that are shared out by rows; fewer are
/// shared out by output-channel groups. Measured on two cores (min of 300 chips): 24 gave
/// 3.2-3.6 ms per chip, 12 gave 3.5-3.6 and 96 gave 3.6-3.9.
const MIN_ROWS_FOR_ROW_SPLIT: usize = 24;
/// Most GEMM tiles one unit of convolution work gathers and computes at once.
const MAX_TILES_PER_UNIT: usize = 16;
/// Most Winograd tiles one unit transforms and multiplies at once (16 GEMMs of this many rows).
const WINOGRAD_TILES_PER_UNIT: usize = 4;
/// Buffer sets kept for reuse (one per task computing at once).
const MAX_SPARE_BUFFERS: usize = 8;
/// Most chips of a batch one task computes together (fewer when there are too few chips to
/// keep every core busy otherwise). Measured at batch 32 on two cores, alternating (ms per
/// chip): one chip per task 7.29-7.64, 3 chips 6.82-7.01 (11 tasks share out unevenly), 4
/// chips 6.29-6.55, 8 chips 6.13-6.47 (peak RSS 126 MB), 16 chips 6.24-6.40 (174 MB).
const CHIPS_PER_TASK: usize = 8;

/// A member's part of a convolution: a run of GEMM rows (output pixels, or Winograd tiles), or
/// a run of column groups of them all.
#[derive(Debug, Clone, PartialEq)]
enum Unit {
    Rows(Range<usize>),
    Columns(Range<usize>),
}

/// `member`'s units of a convolution whose GEMMs have `rows` rows and `groups` column groups:
/// where there are many rows, its share of the 12-row tiles (shares differ by at most one
/// tile), in runs of at most `max_tiles` so the scratch stays in cache; where there are few, its
/// share of the column groups.
fn units(rows: usize, groups: usize, max_tiles: usize, member: Member) -> Vec<Unit> {
    if rows < MIN_ROWS_FOR_ROW_SPLIT {
        let mine = share(member, groups);
        return if mine.is_empty() {
            Vec::new()
        } else {
            vec![Unit::Columns(mine)]
        };
    }
    let tiles = share(member, rows.div_ceil(TILE_ROWS));
    tiles
        .clone()
        .step_by(max_tiles)
        .map(|first| {
            let end = (first + max_tiles).min(tiles.end);
            Unit::Rows(first * TILE_ROWS..(end * TILE_ROWS).min(rows))
        })
        .collect()
}

impl FaceResNet {
    /// The descriptors of many chips: a lone chip by a team of every core, a batch a few
    /// chips per task.
    pub fn descriptors(&self, chips: &[&[u8]]) -> Vec<Vec<f32>> {
        if let [chip] = chips {
            return vec![self.descriptor(chip)];
        }
        let threads = rayon::current_num_threads().max(1);
        let per_task = CHIPS_PER_TASK.min(chips.len().div_ceil(threads)).max(1);
        let groups: Vec<Vec<Vec<f32>>> = chips
            .par_chunks(per_task)
            .map(|group| self.forward(group, 1))
            .collect();
        groups.into_iter().flatten().collect()
    }

    /// The 128-d descriptor of a 150x150 RGB chip (`[150 * 150 * 3]`, rows of RGB pixels),
    /// computed by a team of every core.
    pub fn descriptor(&self, chip: &[u8]) -> Vec<f32> {
        let threads = rayon::current_num_threads().max(1);
        self.forward(&[chip], threads).remove(0)
    }

    /// The descriptors of `chips`, computed together by a team of `threads`.
    fn forward(&self, chips: &[&[u8]], threads: usize) -> Vec<Vec<f32>> {
        let bufs = self.take_buffers(chips.len());
        {
            // SAFETY: nothing else holds this buffer set (taken from the pool or new).
            let input = unsafe { bufs.input.buf.slice_mut(0..bufs.input.dims.len()) };
            let map_len = CHIP_SIZE * CHIP_SIZE * 3;
            for (map, chip) in input.chunks_exact_mut(map_len).zip(chips) {
                assert_eq!(chip.len(), map_len, "a 150x150 RGB chip");
                for (to, from) in map.chunks_exact_mut(3).zip(chip.chunks_exact(3)) {
                    for c in 0..3 {
                        to[c] = (f32::from(from[c]) - self.mean[c]) / 256.0;
                    }
                }
            }
        }
        let barrier = SpinBarrier::new(threads);
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (0..threads - 1)
                .map(|index| {
                    let (bufs, barrier) = (&bufs, &barrier);
                    scope.spawn(move || self.member_pass(bufs, barrier, member(index, threads)))
                })
                .collect();
            self.member_pass(&bufs, &barrier, member(threads - 1, threads));
            for helper in helpers {
                helper.join().expect("a face ResNet team member panicked");
            }
        });
        let last = bufs.blocks.last().map_or(&bufs.pooled, |b| &b.out);
        let descriptors = (0..chips.len())
            .map(|map| self.pool_and_project(last.read_map(map), last.dims))
            .collect();
        self.recycle(bufs);
        descriptors
    }

    /// One member's share of every layer, with a barrier after each.
    fn member_pass(&self, bufs: &Buffers, barrier: &SpinBarrier, member: Member) {
        self.conv_share(&bufs.input, &self.stem, None, &bufs.stem, member);
        barrier.wait();
        max_pool_share(&bufs.stem, &bufs.pooled, member);
        barrier.wait();
        let mut x = &bufs.pooled;
        for (block, out) in self.blocks.iter().zip(&bufs.blocks) {
            self.block_share(x, block, out, barrier, member);
            x = &out.out;
        }
    }

    fn block_share(
        &self,
        x: &Layer,
        block: &Block,
        bufs: &BlockBuffers,
        barrier: &SpinBarrier,
        member: Member,
    ) {
        self.conv_share(x, &block.first, None, &bufs.first, member);
        barrier.wait();
        match &bufs.second {
            Some(second) => {
                self.conv_share(
                    &bufs.first,
                    &block.second,
                    Some(Skip::Pooled),
                    second,
                    member,
                );
                barrier.wait();
                add_pooled_skip_share(second, x, &bufs.out, member);
            }
            None => {
                self.conv_share(
                    &bufs.first,
                    &block.second,
                    Some(Skip::Same(x)),
                    &bufs.out,
                    member,
                );
            }
        }
        barrier.wait();
    }

    /// `member`'s units of `conv` on `x` into `out`, with ReLU (and the skip added first, for a
    /// block's second convolution of the same size) unless `skip` says the pooled skip follows.
    fn conv_share(&self, x: &Layer, conv: &Conv, skip: Option<Skip>, out: &Layer, member: Member) {
        debug_assert_eq!(x.dims.channels, conv.inputs);
        let residual = match skip {
            Some(Skip::Same(s)) => Some(s.read()),
            _ => None,
        };
        let relu_after = !matches!(skip, Some(Skip::Pooled));
        match &conv.kernel_run {
            KernelRun::Winograd(winograd) => {
                self.winograd_share(x, winograd, residual, relu_after, out, member)
            }
            KernelRun::Im2col(packed) => {
                self.direct_share(x, conv, packed, residual, relu_after, out, member)
            }
        }
    }

    /// [`Self::conv_share`] as an im2col gather and one GEMM.
    #[allow(clippy::too_many_arguments)]
    fn direct_share(
        &self,
        x: &Layer,
        conv: &Conv,
        packed: &PackedPointwise,
        residual: Option<&[f32]>,
        relu_after: bool,
        out: &Layer,
        member: Member,
    ) {
        let od = out.dims;
        let (n, taps) = (conv.outputs, conv.kernel * conv.kernel * x.dims.channels);
        let groups = packed.group_count();
        let gather_row = |row: usize, to: &mut [f32]| {
            let (map, oy, ox) = od.locate(row);
            gather(x.read_map(map), x.dims, conv, oy, ox, to);
        };
        for unit in units(od.rows(), groups, MAX_TILES_PER_UNIT, member) {
            match unit {
                Unit::Columns(only) => {
                    // Every member gathers all the rows of this small map for itself: cheaper
                    // than a shared gather and one more barrier.
                    with_scratch(&IM2COL, od.rows() * taps, |rows| {
                        for (i, row) in rows.chunks_exact_mut(taps).enumerate() {
                            gather_row(i, row);
                        }
                        with_scratch(&COLUMNS, od.rows() * n, |part| {
                            pointwise_groups(
                                self.isa,
                                rows,
                                packed,
                                Activation::None,
                                residual,
                                part,
                                only.clone(),
                            );
                            let columns = packed.groups_columns(only.clone());
                            for pixel in 0..od.rows() {
                                let from = &mut part[pixel * n..][columns.clone()];
                                if relu_after {
                                    relu(from);
                                }
                                let to = pixel * n + columns.start..pixel * n + columns.end;
                                // SAFETY: these column groups of this layer are this member's
                                // alone.
                                unsafe { out.buf.slice_mut(to) }.copy_from_slice(from);
                            }
                        });
                    });
                }
                Unit::Rows(pixels) => with_scratch(&IM2COL, pixels.len() * taps, |rows| {
                    for (i, row) in rows.chunks_exact_mut(taps).enumerate() {
                        gather_row(pixels.start + i, row);
                    }
                    let range = pixels.start * n..pixels.end * n;
                    // SAFETY: this run of pixels of this layer is this member's alone.
                    let to = unsafe { out.buf.slice_mut(range.clone()) };
                    let res = residual.map(|r| &r[range]);
                    pointwise(self.isa, rows, packed, Activation::None, res, to);
                    if relu_after {
                        relu(to);
                    }
                }),
            }
        }
    }

    /// [`Self::conv_share`] by Winograd's F(2x2, 3x3): a member takes runs of tiles, or on a
    /// small map column groups of every tile.
    fn winograd_share(
        &self,
        x: &Layer,
        winograd: &Winograd,
        residual: Option<&[f32]>,
        relu_after: bool,
        out: &Layer,
        member: Member,
    ) {
        let od = out.dims;
        let (down, across) = tile_grid(od.height, od.width);
        let (tiles, groups) = (od.maps * down * across, winograd.group_count());
        for unit in units(tiles, groups, WINOGRAD_TILES_PER_UNIT, member) {
            let (tiles, groups) = match unit {
                Unit::Rows(tiles) => (tiles, 0..groups),
                Unit::Columns(groups) => (0..tiles, groups),
            };
            let (v_len, m_len) = winograd.scratch_len(tiles.len());
            with_scratch(&IM2COL, v_len, |v| {
                with_scratch(&COLUMNS, m_len, |m| {
                    let shape = (od.height, od.width);
                    let store = |pixel: usize, column: usize, values: &[f32]| {
                        let at = pixel * od.channels + column;
                        // SAFETY: these tiles' pixels, or these column groups, of this layer
                        // are this member's alone.
                        unsafe { out.buf.slice_mut(at..at + values.len()) }.copy_from_slice(values);
                    };
                    winograd.run(
                        self.isa,
                        x.read(),
                        shape,
                        tiles,
                        groups,
                        (v, m),
                        residual,
                        relu_after,
                        store,
                    );
                });
            });
        }
    }

    /// The global average of one map of the last layer (of size `dims`), then the last layer.
    fn pool_and_project(&self, data: &[f32], dims: Dims) -> Vec<f32> {
        let pixels = dims.pixels() as f32;
        let pooled: Vec<f32> = (0..dims.channels)
            .map(|c| data.iter().skip(c).step_by(dims.channels).sum::<f32>() / pixels)
            .collect();
        (0..DESCRIPTOR_DIM)
            .map(|j| {
                (0..self.fc_inputs)
                    .map(|i| pooled[i] * self.fc[i * DESCRIPTOR_DIM + j])
                    .sum()
            })
            .collect()
    }

    /// A buffer set for `maps` chips: a spare one of that size, or a new one.
    fn take_buffers(&self, maps: usize) -> Buffers {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        match spare.iter().position(|bufs| bufs.input.dims.maps == maps) {
            Some(at) => spare.swap_remove(at),
            None => Buffers::for_net(self, maps),
        }
    }

    fn recycle(&self, bufs: Buffers) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < MAX_SPARE_BUFFERS {
            spare.push(bufs);
        }
    }
}

fn member(index: usize, count: usize) -> Member {
    Member { index, count }
}

/// How a block's second convolution meets the block's input.
#[derive(Clone, Copy)]
enum Skip<'a> {
    /// Same size: added in the GEMM's epilogue.
    Same(&'a Layer),
    /// Down-sampling: the input average-pooled is added afterwards (see
    /// [`add_pooled_skip_share`]).
    Pooled,
}

/// `member`'s pixels of dlib's `add_prev` of a down-sampling block's second convolution and its
/// input pooled 2x2/2 (each added where it has values; the sum takes the larger size), then
/// ReLU.
fn add_pooled_skip_share(second: &Layer, x: &Layer, out: &Layer, member: Member) {
    let (sd, xd, od) = (second.dims, x.dims, out.dims);
    let pd = xd.pool(2, 2);
    // SAFETY: this member writes its share of this layer once, before the barrier.
    let (first, to) = unsafe { out.member_pixels_mut(member) };
    for (i, px) in to.chunks_exact_mut(od.channels).enumerate() {
        let (map, y, col) = od.locate(first + i);
        let (conv, input) = (second.read_map(map), x.read_map(map));
        px.fill(0.0);
        if y < sd.height && col < sd.width {
            let from = &conv[(y * sd.width + col) * sd.channels..][..sd.channels];
            px[..sd.channels].copy_from_slice(from);
        }
        if y < pd.height && col < pd.width {
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let from = ((2 * y + dy) * xd.width + 2 * col + dx) * xd.channels;
                for (o, v) in px.iter_mut().zip(&input[from..from + xd.channels]) {
                    *o += 0.25 * v;
                }
            }
        }
        relu(px);
    }
}

/// `member`'s pixels of the stem's unpadded 3x3/2 max pool over `x` into `out`.
fn max_pool_share(x: &Layer, out: &Layer, member: Member) {
    let (xd, od) = (x.dims, out.dims);
    // SAFETY: this member writes its share of this layer once, before the barrier.
    let (first, to) = unsafe { out.member_pixels_mut(member) };
    for (i, px) in to.chunks_exact_mut(od.channels).enumerate() {
        let (map, oy, ox) = od.locate(first + i);
        let input = x.read_map(map);
        px.fill(f32::NEG_INFINITY);
        for dy in 0..3 {
            for dx in 0..3 {
                let from = ((oy * 2 + dy) * xd.width + ox * 2 + dx) * xd.channels;
                for (o, &v) in px.iter_mut().zip(&input[from..from + xd.channels]) {
                    *o = o.max(v);
                }
            }
        }
    }
}

/// The im2col row of output pixel (`oy`, `ox`): its window's pixels, `(dy, dx, c)` order,
/// zeros where the window leaves the map. Writes every element of `row`.
fn gather(x: &[f32], xd: Dims, conv: &Conv, oy: usize, ox: usize, row: &mut [f32]) {
    let (k, c) = (conv.kernel, xd.channels);
    let left = (ox * conv.stride) as isize - conv.pad as isize;
    let inside = left >= 0 && left as usize + k <= xd.width;
    for dy in 0..k {
        let y = (oy * conv.stride + dy) as isize - conv.pad as isize;
        if inside && y >= 0 && (y as usize) < xd.height {
            // The window's row is k whole pixels side by side in NHWC: one copy.
            let from = (y as usize * xd.width + left as usize) * c;
            row[dy * k * c..(dy + 1) * k * c].copy_from_slice(&x[from..from + k * c]);
            continue;
        }
        for dx in 0..conv.kernel {
            let xx = (ox * conv.stride + dx) as isize - conv.pad as isize;
            let to = &mut row[(dy * conv.kernel + dx) * xd.channels..][..xd.channels];
            if y < 0 || y >= xd.height as isize || xx < 0 || xx >= xd.width as isize {
                to.fill(0.0);
            } else {
                let from = (y as usize * xd.width + xx as usize) * xd.channels;
                to.copy_from_slice(&x[from..from + xd.channels]);
            }
        }
    }
}

fn relu(values: &mut [f32]) {
    for v in values {
        *v = v.max(0.0);
    }
}

type Scratch = std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>;

thread_local! {
    /// Each thread's im2col rows and column-group results, kept between convolutions: a fresh
    /// buffer of these sizes is a fresh mapping from the OS, whose page faults cost more than
    /// the gather itself.
    static IM2COL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `work` on this thread's `scratch` buffer, `len` long; its values are whatever the last
/// use left, so `work` must write before it reads.
fn with_scratch<T>(scratch: &'static Scratch, len: usize, work: impl FnOnce(&mut [f32]) -> T) -> T {
    scratch.with(|cell| {
        let mut buffer = cell.borrow_mut();
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        work(&mut buffer[..len])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_cover_every_row_once_in_whole_tiles_and_few_rows_split_by_columns() {
        for (rows, count) in [(1296, 2), (289, 2), (324, 1), (5184, 3), (24, 2), (100, 3)] {
            let mut next = 0;
            let mut shares = Vec::new();
            for index in 0..count {
                let mut mine = 0;
                for unit in units(rows, 2, MAX_TILES_PER_UNIT, member(index, count)) {
                    let Unit::Rows(r) = unit else {
                        panic!("{unit:?}")
                    };
                    assert_eq!(r.start, next, "{rows} rows, {count} members");
                    assert!(r.end == rows || r.len() % TILE_ROWS == 0, "{r:?}");
                    assert!(r.len() <= MAX_TILES_PER_UNIT * TILE_ROWS);
                    next = r.end;
                    mine += r.len();
                }
                shares.push(mine);
            }
            assert_eq!(next, rows);
            let (least, most) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(most - least <= TILE_ROWS, "{shares:?}");
        }
        let groups = |rows, groups, index, count| units(rows, groups, 16, member(index, count));
        assert_eq!(groups(20, 4, 1, 2), vec![Unit::Columns(2..4)]);
        assert_eq!(groups(9, 8, 0, 1), vec![Unit::Columns(0..8)]);
        assert_eq!(
            groups(9, 1, 0, 2),
            vec![],
            "a member with no group has no unit"
        );
    }
}
