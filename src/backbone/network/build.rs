//! Building the network from torchvision's state dict: every tensor looked up by name and
//! shape-checked, and every BatchNorm folded into the convolution before it.

use std::sync::Mutex;

use super::super::kernels::{Isa, PackedDepthwise, PackedPointwise};
use super::super::pth::StateDict;
use super::{
    InvertedResidual, MobileNetV2, CLASSES, FEATURE_DIM, INVERTED_RESIDUAL_SETTINGS, STEM_CHANNELS,
};

const BN_EPS: f32 = 1e-5;

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
            spare_activations: Mutex::new(Vec::new()),
        })
    }
}
