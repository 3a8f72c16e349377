//! The activations of a few chips computed together through dlib's face ResNet: each map's
//! size (by dlib's rules, `resnet::conv_side` and `pool_side`) and a buffer per layer, every
//! chip's map after the one before, that the forward pass's team writes in disjoint parts.
//! Every layer has its own buffer, so none is written after the barrier that ends its layer; a
//! set is reused between calls.

use std::ops::Range;

use super::resnet::{conv_side, pool_side, Conv, FaceResNet, CHIP_SIZE};
use crate::backbone::network::team::{Member, SharedBuffer};

/// A layer's size, NHWC: `[maps][height][width][channels]`, one map per chip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Dims {
    pub(super) maps: usize,
    pub(super) height: usize,
    pub(super) width: usize,
    pub(super) channels: usize,
}

impl Dims {
    /// Pixels of one map.
    pub(super) fn pixels(self) -> usize {
        self.height * self.width
    }

    /// Pixels of every map: the rows of the layer's GEMMs.
    pub(super) fn rows(self) -> usize {
        self.maps * self.pixels()
    }

    pub(super) fn len(self) -> usize {
        self.rows() * self.channels
    }

    /// The map of row `row` and its place there (down, across).
    pub(super) fn locate(self, row: usize) -> (usize, usize, usize) {
        let (map, pixel) = (row / self.pixels(), row % self.pixels());
        (map, pixel / self.width, pixel % self.width)
    }

    /// The output of `conv` on a map of this size (dlib's rule, see the resnet module).
    pub(super) fn conv(self, conv: &Conv) -> Dims {
        let side = |input| {
            conv_side(input, conv.kernel, conv.stride, conv.pad).expect("checked when read")
        };
        Dims {
            maps: self.maps,
            height: side(self.height),
            width: side(self.width),
            channels: conv.outputs,
        }
    }

    /// The output of an unpadded `kernel`x`kernel` pool with `stride`.
    pub(super) fn pool(self, kernel: usize, stride: usize) -> Dims {
        let side = |input| pool_side(input, kernel, stride).expect("checked when read");
        Dims {
            maps: self.maps,
            height: side(self.height),
            width: side(self.width),
            channels: self.channels,
        }
    }

    /// dlib's `add_prev` takes the larger of each dimension.
    pub(super) fn max(self, other: Dims) -> Dims {
        Dims {
            maps: self.maps,
            height: self.height.max(other.height),
            width: self.width.max(other.width),
            channels: self.channels.max(other.channels),
        }
    }
}

/// One layer's output: its size and the buffer the team writes it into.
pub(super) struct Layer {
    pub(super) dims: Dims,
    pub(super) buf: SharedBuffer,
}

impl Layer {
    pub(super) fn new(dims: Dims) -> Self {
        Layer {
            dims,
            buf: SharedBuffer::new(dims.len()),
        }
    }

    /// The whole layer, to read once the barrier after its writing has passed.
    pub(super) fn read(&self) -> &[f32] {
        // SAFETY: callers read a layer only after the barrier that ends its layer; no member
        // writes it again in this pass (every layer has its own buffer).
        unsafe { self.buf.slice(0..self.dims.len()) }
    }

    /// Map `map` of the layer, to read once the barrier after its writing has passed.
    pub(super) fn read_map(&self, map: usize) -> &[f32] {
        let len = self.dims.pixels() * self.dims.channels;
        &self.read()[map * len..][..len]
    }

    /// `member`'s even share of this layer's pixels (of every map): the first row and their
    /// values, to write.
    ///
    /// # Safety
    /// Only `member` may hold its share, and no one may read the layer until the barrier that
    /// ends its writing.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn member_pixels_mut(&self, member: Member) -> (usize, &mut [f32]) {
        let (rows, channels) = (self.dims.rows(), self.dims.channels);
        let mine = share(member, rows);
        // SAFETY: the caller holds this member's share alone (this function's contract).
        let values = unsafe {
            self.buf
                .slice_mut(mine.start * channels..mine.end * channels)
        };
        (mine.start, values)
    }
}

/// Every layer's output buffer for `maps` chips.
pub(super) struct Buffers {
    pub(super) input: Layer,
    pub(super) stem: Layer,
    pub(super) pooled: Layer,
    pub(super) blocks: Vec<BlockBuffers>,
}

/// A block's outputs: after its first convolution, after its second (down-sampling blocks
/// only, before the pooled skip is added) and after the block.
pub(super) struct BlockBuffers {
    pub(super) first: Layer,
    pub(super) second: Option<Layer>,
    pub(super) out: Layer,
}

impl Buffers {
    pub(super) fn for_net(net: &FaceResNet, maps: usize) -> Self {
        let input = Dims {
            maps,
            height: CHIP_SIZE,
            width: CHIP_SIZE,
            channels: 3,
        };
        let stem = input.conv(&net.stem);
        let pooled = stem.pool(3, 2);
        let mut x = pooled;
        let blocks = net
            .blocks
            .iter()
            .map(|block| {
                let first = x.conv(&block.first);
                let second = first.conv(&block.second);
                let out = if block.down {
                    second.max(x.pool(2, 2))
                } else {
                    second
                };
                x = out;
                BlockBuffers {
                    first: Layer::new(first),
                    second: block.down.then(|| Layer::new(second)),
                    out: Layer::new(out),
                }
            })
            .collect();
        Buffers {
            input: Layer::new(input),
            stem: Layer::new(stem),
            pooled: Layer::new(pooled),
            blocks,
        }
    }
}

/// `member`'s even share of `0..total`.
pub(super) fn share(member: Member, total: usize) -> Range<usize> {
    total * member.index / member.count..total * (member.index + 1) / member.count
}
