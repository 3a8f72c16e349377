//! torchvision's MobileNetV2 (width 1.0) as a feature extractor: the layer list built from a
//! state dict with every BatchNorm folded into its convolution, and the forward pass in NHWC
//! over the kernels in [`super::kernels`]. Output: the 1280 globally average-pooled features
//! of `features(x).mean([2, 3])`, and optionally the ImageNet logits of `classifier.1`.

use rayon::prelude::*;

use super::kernels::{
    depthwise_rows, pointwise, Activation, Isa, PackedDepthwise, PackedPointwise, Shape, TILE_ROWS,
};
use super::pth::StateDict;

/// Length of the feature vector.
pub const FEATURE_DIM: usize = 1280;
/// ImageNet classes of the classifier.
pub const CLASSES: usize = 1000;
const BN_EPS: f32 = 1e-5;
const STEM_CHANNELS: usize = 32;
/// torchvision's inverted-residual settings: expansion t, output channels c, repeats n, stride s.
const INVERTED_RESIDUAL_SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

struct InvertedResidual {
    expand: Option<PackedPointwise>,
    depthwise: PackedDepthwise,
    project: PackedPointwise,
    residual: bool,
}

/// The network with folded weights, ready to run.
pub struct MobileNetV2 {
    isa: Isa,
    stem: PackedPointwise,
    blocks: Vec<InvertedResidual>,
    last: PackedPointwise,
    classifier_weight: Vec<f32>,
    classifier_bias: Vec<f32>,
}

/// Pulls named tensors out of a state dict, checking their shapes.
struct Weights<'a> {
    state: &'a StateDict,
}

impl Weights<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32], String> {
        let t = self
            .state
            .get(name)
            .ok_or_else(|| format!("tensor {name} is missing"))?;
        if t.shape != shape {
            return Err(format!(
                "{name} has shape {:?}, expected {shape:?}",
                t.shape
            ));
        }
        t.as_f32().ok_or_else(|| format!("{name} is not float32"))
    }

    /// Conv weight `[out, rest...]` scaled by the BatchNorm at `bn`, and the folded bias.
    fn conv_bn(
        &self,
        conv: &str,
        bn: &str,
        shape: &[usize],
    ) -> Result<(Vec<f32>, Vec<f32>), String> {
        let out = shape[0];
        let w = self.get(&format!("{conv}.weight"), shape)?;
        let gamma = self.get(&format!("{bn}.weight"), &[out])?;
        let beta = self.get(&format!("{bn}.bias"), &[out])?;
        let mean = self.get(&format!("{bn}.running_mean"), &[out])?;
        let var = self.get(&format!("{bn}.running_var"), &[out])?;
        let per_out = w.len() / out;
        let mut weight = Vec::with_capacity(w.len());
        let mut bias = Vec::with_capacity(out);
        for o in 0..out {
            let scale = gamma[o] / (var[o] + BN_EPS).sqrt();
            weight.extend(w[o * per_out..(o + 1) * per_out].iter().map(|x| x * scale));
            bias.push(beta[o] - mean[o] * scale);
        }
        Ok((weight, bias))
    }

    fn pointwise(
        &self,
        conv: &str,
        bn: &str,
        out: usize,
        inp: usize,
    ) -> Result<PackedPointwise, String> {
        let (w, b) = self.conv_bn(conv, bn, &[out, inp, 1, 1])?;
        Ok(PackedPointwise::new(&w, &b, out, inp))
    }

    fn depthwise(
        &self,
        conv: &str,
        bn: &str,
        channels: usize,
        stride: usize,
    ) -> Result<PackedDepthwise, String> {
        let (w, b) = self.conv_bn(conv, bn, &[channels, 1, 3, 3])?;
        Ok(PackedDepthwise::new(&w, &b, channels, stride))
    }
}

impl MobileNetV2 {
    /// Builds the network from torchvision's state dict; the error names the offending tensor.
    pub fn from_state_dict(state: &StateDict, isa: Isa) -> Result<Self, String> {
        let weights = Weights { state };
        let (stem_w, stem_b) =
            weights.conv_bn("features.0.0", "features.0.1", &[STEM_CHANNELS, 3, 3, 3])?;
        let stem = PackedPointwise::new(&stem_w, &stem_b, STEM_CHANNELS, 27);

        let mut blocks = Vec::new();
        let mut channels = STEM_CHANNELS;
        let mut index = 1;
        for (t, c, n, s) in INVERTED_RESIDUAL_SETTINGS {
            for repeat in 0..n {
                let stride = if repeat == 0 { s } else { 1 };
                let hidden = channels * t;
                let p = format!("features.{index}.conv");
                let (expand, dw, proj, proj_bn) = if t == 1 {
                    (None, "0", "1", "2")
                } else {
                    let expand = weights.pointwise(
                        &format!("{p}.0.0"),
                        &format!("{p}.0.1"),
                        hidden,
                        channels,
                    )?;
                    (Some(expand), "1", "2", "3")
                };
                blocks.push(InvertedResidual {
                    expand,
                    depthwise: weights.depthwise(
                        &format!("{p}.{dw}.0"),
                        &format!("{p}.{dw}.1"),
                        hidden,
                        stride,
                    )?,
                    project: weights.pointwise(
                        &format!("{p}.{proj}"),
                        &format!("{p}.{proj_bn}"),
                        c,
                        hidden,
                    )?,
                    residual: stride == 1 && channels == c,
                });
                channels = c;
                index += 1;
            }
        }
        let last = weights.pointwise(
            &format!("features.{index}.0"),
            &format!("features.{index}.1"),
            FEATURE_DIM,
            channels,
        )?;
        let classifier_weight = weights
            .get("classifier.1.weight", &[CLASSES, FEATURE_DIM])?
            .to_vec();
        let classifier_bias = weights.get("classifier.1.bias", &[CLASSES])?.to_vec();
        Ok(MobileNetV2 {
            isa,
            stem,
            blocks,
            last,
            classifier_weight,
            classifier_bias,
        })
    }

    /// Features of each image; `images` are CHW float32 of `shape` (3 channels), normalised.
    /// A single image is split across threads layer by layer; a batch is split by image.
    pub fn features(&self, images: &[&[f32]], shape: Shape) -> Vec<Vec<f32>> {
        let expected = 3 * shape.height * shape.width;
        assert!(
            images.iter().all(|im| im.len() == expected),
            "image is not [3, h, w]"
        );
        if images.len() == 1 {
            let mut scratch = Scratch::default();
            return vec![self.forward(images[0], shape, &mut scratch, Parallelism::WithinImage)];
        }
        images
            .par_iter()
            .map_init(Scratch::default, |scratch, image| {
                self.forward(image, shape, scratch, Parallelism::None)
            })
            .collect()
    }

    /// ImageNet logits from one feature vector (the classifier's dropout is off in eval).
    pub fn logits(&self, features: &[f32]) -> Vec<f32> {
        assert_eq!(features.len(), FEATURE_DIM);
        self.classifier_weight
            .chunks_exact(FEATURE_DIM)
            .zip(&self.classifier_bias)
            .map(|(row, b)| b + row.iter().zip(features).map(|(w, x)| w * x).sum::<f32>())
            .collect()
    }

    fn forward(&self, image: &[f32], input: Shape, s: &mut Scratch, par: Parallelism) -> Vec<f32> {
        let mut shape = Shape {
            height: (input.height - 1) / 2 + 1,
            width: (input.width - 1) / 2 + 1,
        };
        im2col_stem(image, input, shape, &mut s.expanded);
        let pixels = shape.height * shape.width;
        resize(&mut s.x, pixels * STEM_CHANNELS);
        self.pointwise(
            par,
            &s.expanded,
            &self.stem,
            Activation::Relu6,
            None,
            &mut s.x,
        );

        for block in &self.blocks {
            let hidden = match &block.expand {
                Some(expand) => {
                    resize(&mut s.expanded, shape.height * shape.width * expand.n);
                    self.pointwise(par, &s.x, expand, Activation::Relu6, None, &mut s.expanded);
                    &s.expanded
                }
                None => &s.x,
            };
            let dw = &block.depthwise;
            let out_shape = Shape {
                height: dw.output_size(shape.height),
                width: dw.output_size(shape.width),
            };
            resize(
                &mut s.depthwise,
                out_shape.height * out_shape.width * dw.channels,
            );
            self.depthwise(par, hidden, shape, dw, &mut s.depthwise);
            shape = out_shape;
            resize(&mut s.y, shape.height * shape.width * block.project.n);
            let residual = block.residual.then_some(s.x.as_slice());
            self.pointwise(
                par,
                &s.depthwise,
                &block.project,
                Activation::None,
                residual,
                &mut s.y,
            );
            std::mem::swap(&mut s.x, &mut s.y);
        }

        let pixels = shape.height * shape.width;
        resize(&mut s.y, pixels * FEATURE_DIM);
        self.pointwise(par, &s.x, &self.last, Activation::Relu6, None, &mut s.y);
        global_average_pool(&s.y, FEATURE_DIM)
    }

    fn pointwise(
        &self,
        par: Parallelism,
        input: &[f32],
        layer: &PackedPointwise,
        act: Activation,
        residual: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let rows = input.len() / layer.k;
        let chunk_rows = par.rows_per_task(rows, TILE_ROWS);
        if chunk_rows >= rows {
            return pointwise(self.isa, input, layer, act, residual, out);
        }
        out.par_chunks_mut(chunk_rows * layer.n)
            .enumerate()
            .for_each(|(i, out_chunk)| {
                let r0 = i * chunk_rows;
                let r1 = r0 + out_chunk.len() / layer.n;
                let res = residual.map(|r| &r[r0 * layer.n..r1 * layer.n]);
                pointwise(
                    self.isa,
                    &input[r0 * layer.k..r1 * layer.k],
                    layer,
                    act,
                    res,
                    out_chunk,
                );
            });
    }

    fn depthwise(
        &self,
        par: Parallelism,
        input: &[f32],
        shape: Shape,
        layer: &PackedDepthwise,
        out: &mut [f32],
    ) {
        let out_h = layer.output_size(shape.height);
        let row_len = layer.output_size(shape.width) * layer.channels;
        let chunk_rows = par.rows_per_task(out_h, 1);
        out.par_chunks_mut(chunk_rows * row_len)
            .enumerate()
            .for_each(|(i, out_chunk)| {
                let r0 = i * chunk_rows;
                let rows = r0..r0 + out_chunk.len() / row_len;
                depthwise_rows(self.isa, input, shape, layer, rows, out_chunk);
            });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parallelism {
    None,
    WithinImage,
}

impl Parallelism {
    /// Rows each task takes, a multiple of `granule`: one task when not splitting.
    fn rows_per_task(self, rows: usize, granule: usize) -> usize {
        match self {
            Parallelism::None => rows.max(1),
            Parallelism::WithinImage => {
                let tasks = rayon::current_num_threads().max(1);
                rows.div_ceil(tasks).div_ceil(granule).max(1) * granule
            }
        }
    }
}

/// Activation buffers reused across layers and images.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    y: Vec<f32>,
    expanded: Vec<f32>,
    depthwise: Vec<f32>,
}

fn resize(buf: &mut Vec<f32>, len: usize) {
    buf.resize(len, 0.0);
}

/// The stem's 3x3 stride-2 patches of a CHW image as `[out_pixels, 27]` rows, ordered
/// `(channel, ky, kx)` like torch's weight, zero outside the image.
fn im2col_stem(image: &[f32], input: Shape, out: Shape, patches: &mut Vec<f32>) {
    let plane = input.height * input.width;
    resize(patches, out.height * out.width * 27);
    for oy in 0..out.height {
        for ox in 0..out.width {
            let row = &mut patches[(oy * out.width + ox) * 27..][..27];
            for (k, value) in row.iter_mut().enumerate() {
                let (channel, ky, kx) = (k / 9, k / 3 % 3, k % 3);
                let iy = (oy * 2 + ky).wrapping_sub(1);
                let ix = (ox * 2 + kx).wrapping_sub(1);
                // wrapping_sub turns the -1 border into a huge index, caught by the bound check.
                *value = if iy < input.height && ix < input.width {
                    image[channel * plane + iy * input.width + ix]
                } else {
                    0.0
                };
            }
        }
    }
}

fn global_average_pool(x: &[f32], channels: usize) -> Vec<f32> {
    let pixels = x.len() / channels;
    let mut sum = vec![0.0f32; channels];
    for px in x.chunks_exact(channels) {
        for (s, v) in sum.iter_mut().zip(px) {
            *s += v;
        }
    }
    sum.iter().map(|s| s / pixels as f32).collect()
}
