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
//! Convolutions run as an im2col gather into the backbone's packed GEMM (`kernels::pointwise`),
//! the 3x3 stride-1 ones on larger maps as Winograd's F(2x2, 3x3) over the same GEMM
//! (`winograd`); the forward pass is in `forward`.

use std::path::Path;
use std::sync::Mutex;

use super::buffers::Buffers;
use super::serial::{Reader, Tensor};
use super::winograd::{self, Winograd};
use crate::backbone::kernels::{Isa, PackedPointwise};
use crate::error::Result;

/// Side of the face chips the network takes.
pub const CHIP_SIZE: usize = 150;
/// Length of a descriptor.
pub const DESCRIPTOR_DIM: usize = 128;

/// A convolution with the `affine` after it folded in, packed for the GEMM.
pub(super) struct Conv {
    pub(super) inputs: usize,
    pub(super) outputs: usize,
    pub(super) kernel: usize,
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) kernel_run: KernelRun,
}

/// How a convolution runs, chosen when the network is read from the size of its output map.
pub(super) enum KernelRun {
    /// An im2col gather and one GEMM over these weights.
    Im2col(PackedPointwise),
    /// Winograd's F(2x2, 3x3): the 3x3 stride-1 convolutions on maps of at least
    /// [`winograd::MIN_SIDE`] pixels.
    Winograd(Winograd),
}

/// The side of a convolution's output (dlib's rule above); `None` when the kernel is larger
/// than the padded input.
pub(super) fn conv_side(input: usize, kernel: usize, stride: usize, pad: usize) -> Option<usize> {
    Some(1 + (input + 2 * pad).checked_sub(kernel)? / stride)
}

/// The side of an unpadded pool's output; `None` when the window is larger than the input.
pub(super) fn pool_side(input: usize, kernel: usize, stride: usize) -> Option<usize> {
    Some(1 + input.checked_sub(kernel)? / stride)
}

/// A residual block: two convolutions; `down` when the first has stride 2 and the skip path is
/// average-pooled.
pub(super) struct Block {
    pub(super) first: Conv,
    pub(super) second: Conv,
    pub(super) down: bool,
}

/// The network, ready to run (the forward pass is in `forward`).
pub struct FaceResNet {
    pub(super) mean: [f32; 3],
    pub(super) stem: Conv,
    pub(super) blocks: Vec<Block>,
    /// `[256][128]`: the final linear layer, inputs by outputs.
    pub(super) fc: Vec<f32>,
    pub(super) fc_inputs: usize,
    pub(super) isa: Isa,
    /// Layer buffers of earlier chips, for reuse.
    pub(super) spare: Mutex<Vec<Buffers>>,
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
    // The map entering the next layer: its channels and side.
    let (mut channels, mut side) = (3, CHIP_SIZE);
    let conv_affine = |it: &mut std::iter::Peekable<std::vec::IntoIter<Layer>>,
                       channels: &mut usize,
                       side: &mut usize|
     -> Result<Conv> {
        match (it.next(), it.next()) {
            (Some(Layer::Conv { params, spec }), Some(Layer::Affine(affine))) => {
                let [_, kernel, _, stride, pad] = spec;
                let out = conv_side(*side, kernel, stride, pad).ok_or_else(|| {
                    r.error(format!("convolution {spec:?} on a {side}x{side} map"))
                })?;
                let conv = fold(&params, &affine, spec, *channels, out)
                    .map_err(|why| r.error(format!("convolution {spec:?}: {why}")))?;
                (*channels, *side) = (conv.outputs, out);
                Ok(conv)
            }
            _ => Err(r.error("expected a convolution followed by affine")),
        }
    };
    let stem = conv_affine(&mut it, &mut channels, &mut side)?;
    if !matches!(it.next(), Some(Layer::Relu))
        || !matches!(it.next(), Some(Layer::MaxPool([3, 3, 2, 0])))
    {
        return Err(r.error("the stem does not end in relu and a 3x3/2 max pool"));
    }
    side = pool_side(side, 3, 2).ok_or_else(|| r.error("a stem too small to pool"))?;
    let mut blocks = Vec::new();
    while matches!(it.peek(), Some(Layer::Conv { .. })) {
        let input_side = side;
        let first = conv_affine(&mut it, &mut channels, &mut side)?;
        if !matches!(it.next(), Some(Layer::Relu)) {
            return Err(r.error("a block without relu between its convolutions"));
        }
        let second = conv_affine(&mut it, &mut channels, &mut side)?;
        let down = first.stride == 2;
        if down {
            // dlib's add_prev takes the larger of the block's map and its pooled input.
            let pooled = pool_side(input_side, 2, 2)
                .ok_or_else(|| r.error("a down-sampling block on a map too small to pool"))?;
            side = side.max(pooled);
        }
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
        spare: Mutex::new(Vec::new()),
    })
}

/// Folds `affine` (per-channel gamma, then beta) into the convolution and packs its weights for
/// how it runs on its `out_side` output map (weights in im2col order: for output `n`,
/// `[(dy * k + dx) * inputs + c]`).
fn fold(
    params: &Tensor,
    affine: &Tensor,
    [outputs, kernel, _, stride, pad]: [usize; 5],
    inputs: usize,
    out_side: usize,
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
    let kernel_run = if (kernel, stride, pad) == (3, 1, 1) && out_side >= winograd::MIN_SIDE {
        KernelRun::Winograd(Winograd::new(&weight, &bias, inputs, outputs))
    } else {
        KernelRun::Im2col(PackedPointwise::new(&weight, &bias, outputs, taps))
    };
    Ok(Conv {
        inputs,
        outputs,
        kernel,
        stride,
        pad,
        kernel_run,
    })
}
