//! dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`, the `anet_type`
//! of dlib's `dnn_face_recognition_ex.cpp`), read from dlib's own file and run in Rust.
//!
//! The file is the network serialized outside in: the loss layer's name and settings, then one
//! version number per wrapper layer from the outermost to the input, the input layer (the mean
//! colour), and then every layer's settings from the input outwards, each followed by dlib's
//! per-layer state (three flags and three empty tensors). Tag and skip layers have no settings,
//! so the computational layers come in forward order, which is what [`read`] walks:
//! - the stem: `con` 7x7/2 (32), `affine`, `relu`, `max_pool` 3x3/2;
//! - residual blocks: `con` 3x3, `affine`, `relu`, `con` 3x3, `affine`, [`avg_pool` 2x2/2 on the
//!   skip path when the block's first `con` has stride 2], `add_prev`, `relu`;
//! - `avg_pool` over everything and `fc` to 128 without bias.
//!
//! Semantics as dlib's: inputs are `(value - mean) / 256` per colour plane; a convolution with
//! stride 2 has no padding (dlib's default), one with stride 1 pads by half the kernel; outputs
//! are `1 + (in + 2 pad - kernel) / stride` wide; `affine` is folded into the convolution before
//! it; `add_prev` of tensors that differ in channels or size adds over their overlap and takes
//! the larger of each dimension (missing values are zeros), which the down-sampling blocks
//! need (their pooled skip path can be one pixel wider and has half the channels).
//!
//! Convolutions run as an im2col gather into the backbone's packed GEMM (`kernels::pointwise`).

use std::path::Path;

use rayon::prelude::*;

use super::serial::{Reader, Tensor};
use crate::backbone::kernels::{
    pointwise, pointwise_groups, Activation, Isa, PackedPointwise, TILE_ROWS,
};
use crate::error::Result;

/// Side of the face chips the network takes.
pub const CHIP_SIZE: usize = 150;
/// Length of a descriptor.
pub const DESCRIPTOR_DIM: usize = 128;
/// Fewest output pixels a convolution task computes; a map with fewer than four times this
/// many is shared out by output channels instead.
const MIN_PIXELS_PER_TASK: usize = 24;

/// A convolution with the `affine` after it folded in, packed for the GEMM.
struct Conv {
    inputs: usize,
    outputs: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    packed: PackedPointwise,
}

/// A residual block: two convolutions; `down` when the first has stride 2 and the skip path is
/// average-pooled.
struct Block {
    first: Conv,
    second: Conv,
    down: bool,
}

/// The network, ready to run.
pub struct FaceResNet {
    mean: [f32; 3],
    stem: Conv,
    blocks: Vec<Block>,
    /// `[256][128]`: the final linear layer, inputs by outputs.
    fc: Vec<f32>,
    fc_inputs: usize,
    isa: Isa,
}

/// A feature map, NHWC without the batch: `[height][width][channels]`.
#[derive(Clone)]
struct Map {
    height: usize,
    width: usize,
    channels: usize,
    data: Vec<f32>,
}

/// One computational layer as the file gives it.
enum Layer {
    Conv {
        params: Tensor,
        spec: [usize; 5], // outputs, rows, cols, stride, pad
    },
    Affine(Tensor),
    Relu,
    MaxPool([usize; 4]), // rows, cols, stride, pad
    AvgPool([usize; 4]),
    AddPrev,
    Fc {
        params: Tensor,
        outputs: usize,
        inputs: usize,
    },
}

/// Reads the network from the bytes of dlib's file.
pub fn read(bytes: &[u8], path: &Path) -> Result<FaceResNet> {
    let mut r = Reader::new(bytes, path);
    let loss_version = r.int()?;
    if loss_version != 1 {
        return Err(r.error(format!("loss layer version {loss_version}")));
    }
    r.expect("loss_metric_2")?;
    r.float()?; // margin
    r.float()?; // distance threshold
    for depth in 0.. {
        if r.next_is("input_rgb_image_sized") {
            break;
        }
        if depth > 400 {
            return Err(r.error("no input layer after 400 layers"));
        }
        let version = r.int()?;
        if !(1..=3).contains(&version) {
            return Err(r.error(format!("layer wrapper version {version}")));
        }
    }
    r.expect("input_rgb_image_sized")?;
    let mean = [r.float()? as f32, r.float()? as f32, r.float()? as f32];
    let (rows, cols) = (r.count("rows", 4096)?, r.count("columns", 4096)?);
    if (rows, cols) != (CHIP_SIZE, CHIP_SIZE) {
        return Err(r.error(format!("input {rows}x{cols}, expected 150x150")));
    }
    let mut layers = Vec::new();
    loop {
        let layer = read_layer(&mut r)?;
        let last = matches!(layer, Layer::Fc { .. });
        layers.push(layer);
        read_layer_state(&mut r)?;
        if layers.len() == 1 {
            r.int()?; // the input layer's sample expansion factor
        }
        if last {
            break;
        }
    }
    assemble(layers, mean, &r)
}

fn read_layer(r: &mut Reader) -> Result<Layer> {
    let name = r.string()?;
    Ok(match name.as_str() {
        "con_4" | "con_5" => {
            let params = r.tensor()?;
            let outputs = r.count("filters", 1 << 16)?;
            let (rows, cols) = (r.count("rows", 64)?, r.count("columns", 64)?);
            let (sy, sx) = (r.count("stride", 64)?, r.count("stride", 64)?);
            let (py, px) = (r.count("padding", 64)?, r.count("padding", 64)?);
            r.alias()?;
            r.alias()?;
            for _ in 0..4 {
                r.float()?; // learning-rate and weight-decay multipliers
            }
            if name == "con_5" && !r.bool()? {
                return Err(r.error("a convolution without bias"));
            }
            if rows != cols || sy != sx || py != px {
                return Err(r.error("a convolution that is not square"));
            }
            Layer::Conv {
                params,
                spec: [outputs, rows, cols, sy, py],
            }
        }
        "affine_" => {
            let params = r.tensor()?;
            r.alias()?;
            r.alias()?;
            r.int()?; // mode: per channel
            Layer::Affine(params)
        }
        "relu_" => Layer::Relu,
        "max_pool_2" | "avg_pool_2" => {
            let mut spec = [0; 6];
            for v in &mut spec {
                *v = r.count("pooling size", 4096)?;
            }
            let pool = [spec[0], spec[1], spec[2], spec[4]];
            if name == "max_pool_2" {
                Layer::MaxPool(pool)
            } else {
                Layer::AvgPool(pool)
            }
        }
        "add_prev_" => Layer::AddPrev,
        "fc_2" => {
            let outputs = r.count("outputs", 1 << 16)?;
            let inputs = r.count("inputs", 1 << 16)?;
            let params = r.tensor()?;
            r.alias()?;
            r.alias()?;
            if r.int()? != 1 {
                return Err(r.error("a fully connected layer with bias"));
            }
            for _ in 0..4 {
                r.float()?;
            }
            Layer::Fc {
                params,
                outputs,
                inputs,
            }
        }
        other => return Err(r.error(format!("a layer '{other}' that this network does not have"))),
    })
}

/// dlib's state after each layer's settings: three flags and three (empty) tensors.
fn read_layer_state(r: &mut Reader) -> Result<()> {
    for _ in 0..3 {
        r.bool()?;
    }
    for _ in 0..3 {
        r.tensor()?;
    }
    Ok(())
}

/// Checks the layer sequence against the network's shape and builds it.
fn assemble(layers: Vec<Layer>, mean: [f32; 3], r: &Reader) -> Result<FaceResNet> {
    let mut it = layers.into_iter().peekable();
    let mut channels = 3;
    let conv_affine = |it: &mut std::iter::Peekable<std::vec::IntoIter<Layer>>,
                       channels: &mut usize|
     -> Result<Conv> {
        match (it.next(), it.next()) {
            (Some(Layer::Conv { params, spec }), Some(Layer::Affine(affine))) => {
                let conv = fold(&params, &affine, spec, *channels)
                    .map_err(|why| r.error(format!("convolution {spec:?}: {why}")))?;
                *channels = conv.outputs;
                Ok(conv)
            }
            _ => Err(r.error("expected a convolution followed by affine")),
        }
    };
    let stem = conv_affine(&mut it, &mut channels)?;
    if !matches!(it.next(), Some(Layer::Relu))
        || !matches!(it.next(), Some(Layer::MaxPool([3, 3, 2, 0])))
    {
        return Err(r.error("the stem does not end in relu and a 3x3/2 max pool"));
    }
    let mut blocks = Vec::new();
    while matches!(it.peek(), Some(Layer::Conv { .. })) {
        let first = conv_affine(&mut it, &mut channels)?;
        if !matches!(it.next(), Some(Layer::Relu)) {
            return Err(r.error("a block without relu between its convolutions"));
        }
        let second = conv_affine(&mut it, &mut channels)?;
        let down = first.stride == 2;
        if down && !matches!(it.next(), Some(Layer::AvgPool([2, 2, 2, 0]))) {
            return Err(r.error("a down-sampling block without a 2x2/2 average pool"));
        }
        if !matches!(it.next(), Some(Layer::AddPrev)) || !matches!(it.next(), Some(Layer::Relu)) {
            return Err(r.error("a block that does not end in add_prev and relu"));
        }
        blocks.push(Block {
            first,
            second,
            down,
        });
    }
    if !matches!(it.next(), Some(Layer::AvgPool([0, 0, 1, 0]))) {
        return Err(r.error("no average pool over everything before the last layer"));
    }
    let Some(Layer::Fc {
        params,
        outputs,
        inputs,
    }) = it.next()
    else {
        return Err(r.error("no fully connected layer at the end"));
    };
    if outputs != DESCRIPTOR_DIM || inputs != channels || params.data.len() != inputs * outputs {
        return Err(r.error(format!(
            "the last layer maps {inputs} to {outputs} with {} weights",
            params.data.len()
        )));
    }
    Ok(FaceResNet {
        mean,
        stem,
        blocks,
        fc: params.data,
        fc_inputs: inputs,
        isa: Isa::detect(),
    })
}

/// Folds `affine` (per-channel gamma, then beta) into the convolution and packs its weights in
/// im2col order: for output `n`, `[(dy * k + dx) * inputs + c]`.
fn fold(
    params: &Tensor,
    affine: &Tensor,
    [outputs, kernel, _, stride, pad]: [usize; 5],
    inputs: usize,
) -> std::result::Result<Conv, String> {
    let taps = kernel * kernel * inputs;
    if params.data.len() != outputs * taps + outputs {
        return Err(format!(
            "{} parameters, expected {} for {inputs} inputs",
            params.data.len(),
            outputs * taps + outputs
        ));
    }
    if affine.data.len() != 2 * outputs {
        return Err(format!(
            "affine has {} values, expected {}",
            affine.data.len(),
            2 * outputs
        ));
    }
    let (gamma, beta) = affine.data.split_at(outputs);
    let (filters, bias) = params.data.split_at(outputs * taps);
    let mut weight = vec![0.0; outputs * taps];
    for (n, &g) in gamma.iter().enumerate() {
        for c in 0..inputs {
            for dy in 0..kernel {
                for dx in 0..kernel {
                    let from = ((n * inputs + c) * kernel + dy) * kernel + dx;
                    let to = n * taps + (dy * kernel + dx) * inputs + c;
                    weight[to] = filters[from] * g;
                }
            }
        }
    }
    let bias: Vec<f32> = (0..outputs).map(|n| bias[n] * gamma[n] + beta[n]).collect();
    Ok(Conv {
        inputs,
        outputs,
        kernel,
        stride,
        pad,
        packed: PackedPointwise::new(&weight, &bias, outputs, taps),
    })
}

impl FaceResNet {
    /// The descriptors of many chips, spread over the thread pool (one chip per task).
    pub fn descriptors(&self, chips: &[&[u8]]) -> Vec<Vec<f32>> {
        chips.par_iter().map(|chip| self.descriptor(chip)).collect()
    }

    /// The 128-d descriptor of a 150x150 RGB chip (`[150 * 150 * 3]`, rows of RGB pixels).
    pub fn descriptor(&self, chip: &[u8]) -> Vec<f32> {
        assert_eq!(chip.len(), CHIP_SIZE * CHIP_SIZE * 3, "a 150x150 RGB chip");
        let data = chip
            .chunks_exact(3)
            .flat_map(|p| (0..3).map(move |c| (f32::from(p[c]) - self.mean[c]) / 256.0))
            .collect();
        let input = Map {
            height: CHIP_SIZE,
            width: CHIP_SIZE,
            channels: 3,
            data,
        };
        let mut x = self.conv(&input, &self.stem, None);
        relu(&mut x.data);
        x = max_pool(&x, 3, 2);
        for block in &self.blocks {
            x = self.block(&x, block);
        }
        let pixels = (x.height * x.width) as f32;
        let pooled: Vec<f32> = (0..x.channels)
            .map(|c| x.data.iter().skip(c).step_by(x.channels).sum::<f32>() / pixels)
            .collect();
        (0..DESCRIPTOR_DIM)
            .map(|j| {
                (0..self.fc_inputs)
                    .map(|i| pooled[i] * self.fc[i * DESCRIPTOR_DIM + j])
                    .sum()
            })
            .collect()
    }

    fn block(&self, x: &Map, block: &Block) -> Map {
        let mut h = self.conv(x, &block.first, None);
        relu(&mut h.data);
        let mut out = if block.down {
            let h = self.conv(&h, &block.second, None);
            add_padded(&h, &avg_pool_2x2(x))
        } else {
            self.conv(&h, &block.second, Some(&x.data))
        };
        relu(&mut out.data);
        out
    }

    /// A convolution as im2col rows into the packed GEMM, with an optional residual added.
    /// Output pixels are independent rows of the GEMM, so they are shared out over the thread
    /// pool, each task gathering its own rows (a lone chip uses every core; a batch, one chip
    /// per task, loses nothing by it). The deep layers' maps (9x9, 5x5, 3x3) are too small to
    /// share out by pixels, yet hold a third of the work; they are shared out by output
    /// channels instead (see [`FaceResNet::conv_by_columns`]).
    fn conv(&self, x: &Map, conv: &Conv, residual: Option<&[f32]>) -> Map {
        debug_assert_eq!(x.channels, conv.inputs);
        let out_h = 1 + (x.height + 2 * conv.pad - conv.kernel) / conv.stride;
        let out_w = 1 + (x.width + 2 * conv.pad - conv.kernel) / conv.stride;
        let taps = conv.kernel * conv.kernel * x.channels;
        // Whole GEMM tiles per task, so no task ends in a one-row tile.
        let pixels_per_task = (out_h * out_w)
            .div_ceil(4 * rayon::current_num_threads())
            .max(MIN_PIXELS_PER_TASK)
            .next_multiple_of(TILE_ROWS);
        if out_h * out_w < 4 * MIN_PIXELS_PER_TASK {
            return self.conv_by_columns(x, conv, residual, (out_h, out_w));
        }
        let mut data = vec![0.0; out_h * out_w * conv.outputs];
        data.par_chunks_mut(pixels_per_task * conv.outputs)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * pixels_per_task;
                let pixels = out.len() / conv.outputs;
                with_im2col(pixels * taps, |rows| {
                    for (i, row) in rows.chunks_exact_mut(taps).enumerate() {
                        let (oy, ox) = ((first + i) / out_w, (first + i) % out_w);
                        gather(x, conv, oy, ox, row);
                    }
                    let res = residual.map(|r| &r[first * conv.outputs..][..out.len()]);
                    pointwise(self.isa, rows, &conv.packed, Activation::None, res, out);
                });
            });
        Map {
            height: out_h,
            width: out_w,
            channels: conv.outputs,
            data,
        }
    }
}

impl FaceResNet {
    /// [`FaceResNet::conv`] of a small map: its im2col rows gathered once, then each column
    /// group of the GEMM computed by its own task into its own buffer, and the columns merged.
    fn conv_by_columns(
        &self,
        x: &Map,
        conv: &Conv,
        residual: Option<&[f32]>,
        (out_h, out_w): (usize, usize),
    ) -> Map {
        let (pixels, n) = (out_h * out_w, conv.outputs);
        let taps = conv.kernel * conv.kernel * x.channels;
        let mut rows = vec![0.0; pixels * taps];
        for (i, row) in rows.chunks_exact_mut(taps).enumerate() {
            gather(x, conv, i / out_w, i % out_w, row);
        }
        let parts: Vec<(usize, Vec<f32>)> = (0..conv.packed.group_count())
            .into_par_iter()
            .map(|group| {
                let mut out = vec![0.0; pixels * n];
                let only = group..group + 1;
                pointwise_groups(
                    self.isa,
                    &rows,
                    &conv.packed,
                    Activation::None,
                    residual,
                    &mut out,
                    only,
                );
                (group, out)
            })
            .collect();
        let mut data = vec![0.0; pixels * n];
        for (group, part) in parts {
            let columns = conv.packed.group_columns(group);
            for (to, from) in data.chunks_exact_mut(n).zip(part.chunks_exact(n)) {
                to[columns.clone()].copy_from_slice(&from[columns.clone()]);
            }
        }
        Map {
            height: out_h,
            width: out_w,
            channels: n,
            data,
        }
    }
}

/// The im2col row of output pixel (`oy`, `ox`): its window's pixels, `(dy, dx, c)` order,
/// zeros where the window leaves the map.
fn gather(x: &Map, conv: &Conv, oy: usize, ox: usize, row: &mut [f32]) {
    for dy in 0..conv.kernel {
        let y = (oy * conv.stride + dy) as isize - conv.pad as isize;
        for dx in 0..conv.kernel {
            let xx = (ox * conv.stride + dx) as isize - conv.pad as isize;
            let to = &mut row[(dy * conv.kernel + dx) * x.channels..][..x.channels];
            if y < 0 || y >= x.height as isize || xx < 0 || xx >= x.width as isize {
                to.fill(0.0);
            } else {
                let from = (y as usize * x.width + xx as usize) * x.channels;
                to.copy_from_slice(&x.data[from..from + x.channels]);
            }
        }
    }
}

thread_local! {
    /// Each thread's im2col rows, kept between convolutions: a fresh buffer of this size is a
    /// fresh mapping from the OS, whose page faults cost more than the gather itself.
    static IM2COL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `work` on this thread's im2col buffer, `len` long (its values are whatever the last
/// use left: [`gather`] writes every element).
fn with_im2col<T>(len: usize, work: impl FnOnce(&mut [f32]) -> T) -> T {
    IM2COL.with(|cell| {
        let mut rows = cell.borrow_mut();
        if rows.len() < len {
            rows.resize(len, 0.0);
        }
        work(&mut rows[..len])
    })
}

fn relu(values: &mut [f32]) {
    for v in values {
        *v = v.max(0.0);
    }
}

/// `kernel`x`kernel` pooling with `stride` and no padding: each output is `fold` over its
/// window, from `start`, then scaled by `scale`.
fn pool(
    x: &Map,
    kernel: usize,
    stride: usize,
    start: f32,
    fold: fn(f32, f32) -> f32,
    scale: f32,
) -> Map {
    let out_h = 1 + (x.height - kernel) / stride;
    let out_w = 1 + (x.width - kernel) / stride;
    let mut data = vec![start; out_h * out_w * x.channels];
    for oy in 0..out_h {
        for ox in 0..out_w {
            let out = &mut data[(oy * out_w + ox) * x.channels..][..x.channels];
            for dy in 0..kernel {
                for dx in 0..kernel {
                    let from = ((oy * stride + dy) * x.width + ox * stride + dx) * x.channels;
                    for (o, &v) in out.iter_mut().zip(&x.data[from..from + x.channels]) {
                        *o = fold(*o, v);
                    }
                }
            }
            out.iter_mut().for_each(|o| *o *= scale);
        }
    }
    Map {
        height: out_h,
        width: out_w,
        channels: x.channels,
        data,
    }
}

fn max_pool(x: &Map, kernel: usize, stride: usize) -> Map {
    pool(x, kernel, stride, f32::NEG_INFINITY, f32::max, 1.0)
}

fn avg_pool_2x2(x: &Map) -> Map {
    pool(x, 2, 2, 0.0, |a, b| a + b, 0.25)
}

/// dlib's `add_prev` of two maps that may differ in size and channels: the result takes the
/// larger of each dimension, and each input is added where it has values.
fn add_padded(a: &Map, b: &Map) -> Map {
    let (h, w, c) = (
        a.height.max(b.height),
        a.width.max(b.width),
        a.channels.max(b.channels),
    );
    let mut data = vec![0.0; h * w * c];
    for m in [a, b] {
        for y in 0..m.height {
            for x in 0..m.width {
                let from = (y * m.width + x) * m.channels;
                let to = (y * w + x) * c;
                for (o, &v) in data[to..to + m.channels]
                    .iter_mut()
                    .zip(&m.data[from..from + m.channels])
                {
                    *o += v;
                }
            }
        }
    }
    Map {
        height: h,
        width: w,
        channels: c,
        data,
    }
}
