//! The classification head and its gradients (dfdx is imported here and by the ops of `dense`
//! and `cosine` alone).
//!
//! dfdx 0.13's `Linear<I, O>` is sized at compile time and its optimizers only visit
//! const-shaped modules, but here the layer sizes and the number of classes come from the YAML
//! and the dataset at run time. So the head is a list of runtime-shaped dense layers, each an
//! op of facelab's own on dfdx's tape (`dense`), with dfdx's ReLU, dropout and cross-entropy
//! between them; dfdx traces each batch and runs the backward pass. The parameters stay in
//! facelab's own buffers for the whole fit ([`HeadTrainer`]), where the optimizer (Keras's
//! rules, see `optim`) updates them in one fused pass, making each panel of a layer's weight
//! gradient just before it applies it: dfdx 0.13's public API has no mutable view of a
//! tensor's buffer, so parameters held as dfdx tensors cost a copy in per step.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use std::borrow::Cow;
use std::sync::{Arc, PoisonError};

use super::dense::{dense, GradientSlot, TrainingLayer};
use super::matmul::{matmul, Matrix, MatrixMut};
use super::optim::{Optimizer, Part};

/// One dense layer: `y = x @ weight + bias`, with `weight` as `[inputs, outputs]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// What the last layer's outputs mean, and how the layers before it are joined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output {
    /// Dense layers with ReLU between them; the last gives the logits of a softmax.
    Softmax,
    /// Linear layers (no ReLU); the last layer's input is L2-normalised and its weight columns
    /// (one per class, kept at unit length) give `scale` times the cosine as logits. Its bias
    /// stays zero. Cosine (CosFace) heads and whitened centroids both take this form.
    Cosine { scale: f32 },
}

/// The head's parameters: its layers and what their outputs mean.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadParams {
    pub layers: Vec<Dense>,
    pub output: Output,
}

impl HeadParams {
    /// A softmax head with Glorot-uniform weights and zero biases, as Keras's `Dense` starts.
    pub fn init(inputs: usize, hidden: &[usize], classes: usize, seed: u64) -> Self {
        HeadParams {
            layers: glorot_layers(inputs, hidden, classes, seed),
            output: Output::Softmax,
        }
    }

    /// A cosine head: a projection to `embedding` units (none when 0) and unit class columns.
    pub fn init_cosine(
        inputs: usize,
        embedding: usize,
        classes: usize,
        scale: f32,
        seed: u64,
    ) -> Self {
        let hidden: &[usize] = if embedding == 0 { &[] } else { &[embedding] };
        let mut layers = glorot_layers(inputs, hidden, classes, seed);
        if let Some(last) = layers.last_mut() {
            super::cosine::normalize_columns(&mut last.weight, last.outputs);
        }
        HeadParams {
            layers,
            output: Output::Cosine { scale },
        }
    }

    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }
}

/// Dense layers of the given sizes with Glorot-uniform weights and zero biases.
fn glorot_layers(inputs: usize, hidden: &[usize], classes: usize, seed: u64) -> Vec<Dense> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sizes: Vec<usize> = std::iter::once(inputs)
        .chain(hidden.iter().copied())
        .chain([classes])
        .collect();
    sizes
        .windows(2)
        .map(|pair| {
            let (i, o) = (pair[0], pair[1]);
            let limit = (6.0 / (i + o) as f64).sqrt() as f32;
            Dense {
                inputs: i,
                outputs: o,
                weight: (0..i * o).map(|_| rng.gen_range(-limit..=limit)).collect(),
                bias: vec![0.0; o],
            }
        })
        .collect()
}

/// Runs the head on dfdx's CPU device, whose random stream (seeded) drives dropout. Use a
/// runner from one thread at a time: dfdx 0.13's buffer cache checks for a free buffer and
/// takes it under two separate locks, so two threads can race for the last one, and the
/// panic that follows poisons the cache and aborts the process.
pub struct HeadRunner {
    dev: Cpu,
    dropout: f64,
    /// The cosine margin training subtracts from each row's true class (cosine heads).
    margin: f32,
}

impl HeadRunner {
    pub fn new(seed: u64, dropout: f64) -> Self {
        let dev = Cpu::seed_from_u64(seed);
        // Reuse freed buffers: every step allocates megabytes, and fresh pages cost page faults.
        dev.enable_cache();
        HeadRunner {
            dev,
            dropout,
            margin: 0.0,
        }
    }

    /// The same runner, training cosine heads with margin `margin`.
    pub fn with_margin(mut self, margin: f64) -> Self {
        self.margin = margin as f32;
        self
    }

    /// A device tensor holding `values`, from the device's buffer cache.
    fn tensor<S: Shape>(&self, values: &[f32], shape: S) -> Tensor<S, f32, Cpu> {
        let mut t = self.dev.zeros_like(&shape);
        t.copy_from(values);
        t
    }

    /// A trainer that owns `params` for the fit.
    pub fn trainer(&self, params: HeadParams) -> HeadTrainer<'_> {
        HeadTrainer {
            runner: self,
            gradients: params
                .layers
                .iter()
                .map(|_| GradientSlot::default())
                .collect(),
            layers: Arc::new(params.layers.iter().map(TrainingLayer::new).collect()),
            output: params.output,
        }
    }

    /// Logits `[rows, classes]` for `x` (`[rows, inputs]`), dropout off. The layers run on
    /// facelab's own products, reading the weights in place: through dfdx, each call copied
    /// every weight into a new tensor and packed it again for `gemm` (in a sweep, with a
    /// validation pass per fold and epoch, 12% of the time went there).
    pub fn logits(&self, params: &HeadParams, x: &[f32]) -> Vec<f32> {
        let rows = x.len() / params.inputs().max(1);
        let last = params.layers.len().saturating_sub(1);
        // The input is read where it is; each layer's output is a new buffer.
        let mut h = Cow::Borrowed(&x[..rows * params.inputs()]);
        for (i, l) in params.layers.iter().enumerate() {
            if let (Output::Cosine { scale }, true) = (params.output, i == last) {
                let mut cosines = super::cosine::cosines(&h, l);
                cosines.iter_mut().for_each(|v| *v *= scale);
                return cosines;
            }
            let mut y = vec![0.0; rows * l.outputs];
            matmul(
                Matrix::row_major(&h, l.inputs),
                Matrix::row_major(&l.weight, l.outputs),
                MatrixMut::row_major(&mut y, l.outputs),
                rows,
                l.inputs,
                l.outputs,
                Some(&l.bias),
                false,
            );
            if i < last && params.output == Output::Softmax {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            h = Cow::Owned(y);
        }
        h.into_owned()
    }

    /// How sure the head is of each row's best class: the largest probability of a softmax
    /// head, the largest cosine of a cosine head. The open-set threshold applies to it.
    pub fn acceptance(&self, params: &HeadParams, x: &[f32]) -> Vec<f32> {
        let classes = params.classes();
        let logits = self.logits(params, x);
        logits
            .chunks_exact(classes)
            .map(|row| acceptance_of(params.output, row))
            .collect()
    }
}

/// The head's parameters for a fit, and where each step's gradients land.
pub struct HeadTrainer<'r> {
    runner: &'r HeadRunner,
    /// Shared with the tape while a batch is traced; the trainer's alone between steps.
    layers: Arc<Vec<TrainingLayer>>,
    output: Output,
    gradients: Vec<GradientSlot>,
}

/// A batch traced through the head, before backward.
pub struct Forward {
    loss: Tensor<Rank0, f32, Cpu, OwnedTape<f32, Cpu>>,
    loss_value: f32,
    correct: usize,
}

/// What one training batch gave: the mean loss and the rows predicted right; its gradients wait
/// in the trainer for [`HeadTrainer::update`].
pub struct Batch {
    pub loss: f32,
    pub correct: usize,
}

impl HeadTrainer<'_> {
    /// The parameters as they stand, row-major (a copy: they train in panels).
    pub fn params(&self) -> HeadParams {
        HeadParams {
            layers: self.layers.iter().map(TrainingLayer::to_dense).collect(),
            output: self.output,
        }
    }

    /// The lengths of each layer's weights and bias as they train, for the optimizer's state.
    pub fn parameter_lengths(&self) -> Vec<(usize, usize)> {
        self.layers
            .iter()
            .map(|l| (l.weight.len(), l.bias.len()))
            .collect()
    }

    /// Forward and backward over one batch: `x` is `[rows, inputs]`, `labels` one per row.
    pub fn forward_backward(&self, x: &[f32], labels: &[usize]) -> Batch {
        Self::backward(self.forward(x, labels))
    }

    /// The batch through the head to its mean cross-entropy, on the tape.
    pub fn forward(&self, x: &[f32], labels: &[usize]) -> Forward {
        let dev = &self.runner.dev;
        let rows = labels.len();
        let last = self.layers.len() - 1;
        let (inputs, classes) = (self.layers[0].inputs, self.layers[last].outputs);
        let mut h = self.runner.tensor(x, (rows, inputs)).leaky_traced();
        let output = self.output;
        for (i, slot) in self.gradients.iter().enumerate() {
            if matches!(output, Output::Cosine { .. }) && i == last {
                h = super::cosine::l2_normalize_rows(h);
            }
            h = dense(h, &self.layers, i, slot, i > 0);
            if i < last && output == Output::Softmax {
                h = h.relu();
                if self.runner.dropout > 0.0 {
                    h = h.dropout(self.runner.dropout);
                }
            }
        }
        // Accuracy counts the head's own outputs, before any margin.
        let outputs = h.as_vec();
        let targets = one_hot(labels, classes);
        let logits = match output {
            Output::Softmax => h,
            Output::Cosine { scale } => {
                let margins: Vec<f32> = targets
                    .iter()
                    .map(|t| t * scale * self.runner.margin)
                    .collect();
                h * scale - dev.tensor_from_vec(margins, (rows, classes))
            }
        };
        let targets = dev.tensor_from_vec(targets, (rows, classes));
        let loss = cross_entropy_with_logits_loss(logits, targets);
        Forward {
            loss_value: loss.as_vec()[0],
            correct: count_correct(&outputs, labels, classes),
            loss,
        }
    }

    /// Runs dfdx's backward pass; the layers' gradients (see `dense::LayerGradients`) land in the
    /// trainer.
    pub fn backward(forward: Forward) -> Batch {
        // The layers keep their own gradients; dfdx's (of the activations) are done with here.
        drop(forward.loss.backward());
        Batch {
            loss: forward.loss_value,
            correct: forward.correct,
        }
    }

    /// One optimizer step with the gradients of `backward`'s batch (taken, so a step follows
    /// its own backward pass), on the parameters in place. Every weight gradient is made from
    /// the weights before the step: backward has already used them for the input gradients.
    pub fn update(&mut self, _backward_done: Batch, optimizer: &mut Optimizer) {
        let layers = Arc::get_mut(&mut self.layers)
            .expect("the tape released the parameters when backward finished");
        optimizer.begin_step();
        let cosine = matches!(self.output, Output::Cosine { .. });
        let last = layers.len() - 1;
        for (i, (layer, slot)) in layers.iter_mut().zip(&self.gradients).enumerate() {
            let grads = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if cosine && i == last {
                // Unit class columns: step along the sphere and back onto it; no bias.
                let (layout, rows, columns) = (layer.layout(), layer.inputs, layer.outputs);
                let mut gradient = grads.weight();
                super::cosine::project_to_tangent(
                    &layer.weight,
                    &mut gradient,
                    layout,
                    rows,
                    columns,
                );
                optimizer.update(i, Part::Weight, &mut layer.weight, &gradient);
                super::cosine::normalize_columns_in(&mut layer.weight, layout, rows, columns);
                continue;
            }
            optimizer.update_from_pieces(i, &mut layer.weight, grads.panel_len(), |range, out| {
                grads.weight_panel(range, out)
            });
            optimizer.update(i, Part::Bias, &mut layer.bias, &grads.bias);
        }
    }
}

/// A row's acceptance score from its logits (see [`HeadRunner::acceptance`]).
pub fn acceptance_of(output: Output, logits: &[f32]) -> f32 {
    let best = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    match output {
        Output::Softmax => super::softmax(logits).into_iter().fold(0.0, f32::max),
        Output::Cosine { scale } => best / scale,
    }
}

pub(super) fn one_hot(labels: &[usize], classes: usize) -> Vec<f32> {
    let mut out = vec![0.0; labels.len() * classes];
    for (row, &label) in labels.iter().enumerate() {
        out[row * classes + label] = 1.0;
    }
    out
}

/// Rows whose largest logit is at their label.
pub fn count_correct(logits: &[f32], labels: &[usize], classes: usize) -> usize {
    logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, &label)| argmax(row) == label)
        .count()
}

pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gradients one step applies: plain SGD with learning rate 1 moves each parameter by
    /// exactly minus its gradient.
    fn applied_gradients(
        params: &HeadParams,
        x: &[f32],
        labels: &[usize],
    ) -> Vec<(Vec<f32>, Vec<f32>)> {
        let runner = HeadRunner::new(0, 0.0);
        let mut trainer = runner.trainer(params.clone());
        let sgd = crate::config::OptimizerConfig::Sgd {
            lr: 1.0,
            momentum: 0.0,
        };
        let mut optimizer = Optimizer::new(&sgd, &trainer.parameter_lengths());
        let batch = trainer.forward_backward(x, labels);
        trainer.update(batch, &mut optimizer);
        let minus = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a - b).collect();
        params
            .layers
            .iter()
            .zip(&trainer.params().layers)
            .map(|(p, a)| (minus(&p.weight, &a.weight), minus(&p.bias, &a.bias)))
            .collect()
    }

    /// Numerical check of the gradients the trainer applies, on a head of three layers (so the
    /// input gradient of a middle layer is checked too).
    #[test]
    fn applied_gradients_match_finite_differences() {
        let params = HeadParams::init(3, &[4, 5], 2, 1);
        let x = [0.5, -1.0, 2.0, 1.5, 0.3, -0.7];
        let labels = [1, 0];
        let runner = HeadRunner::new(0, 0.0);
        let loss_at =
            |p: &HeadParams| runner.trainer(p.clone()).forward_backward(&x, &labels).loss as f64;
        for (layer, (gw, gb)) in applied_gradients(&params, &x, &labels).iter().enumerate() {
            for index in [0, gw.len() / 2, gw.len() - 1] {
                let mut plus = params.clone();
                let mut minus = params.clone();
                plus.layers[layer].weight[index] += 1e-3;
                minus.layers[layer].weight[index] -= 1e-3;
                let numeric = (loss_at(&plus) - loss_at(&minus)) / 2e-3;
                assert!(
                    (numeric - gw[index] as f64).abs() < 2e-3,
                    "layer {layer} w[{index}]: {numeric} vs {}",
                    gw[index]
                );
            }
            let mut plus = params.clone();
            let mut minus = params.clone();
            plus.layers[layer].bias[0] += 1e-3;
            minus.layers[layer].bias[0] -= 1e-3;
            let numeric = (loss_at(&plus) - loss_at(&minus)) / 2e-3;
            assert!(
                (numeric - gb[0] as f64).abs() < 2e-3,
                "layer {layer} b[0]: {numeric} vs {}",
                gb[0]
            );
        }
    }

    /// The dense op against dfdx's own matmul, bias and backward on the same head: the same
    /// loss and the same gradients, on a batch of 16 with sizes that leave ragged tiles.
    #[test]
    fn dense_op_agrees_with_dfdx_matmul() {
        let params = HeadParams::init(37, &[50, 21], 3, 9);
        let rows = 16;
        let x: Vec<f32> = (0..rows * 37)
            .map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0)
            .collect();
        let labels: Vec<usize> = (0..rows).map(|i| i % 3).collect();
        let ours = applied_gradients(&params, &x, &labels);
        let dev = Cpu::default();
        let tensor = |v: &[f32], shape: (usize, usize)| dev.tensor_from_vec(v.to_vec(), shape);
        let weights: Vec<_> = params
            .layers
            .iter()
            .map(|l| tensor(&l.weight, (l.inputs, l.outputs)))
            .collect();
        let biases: Vec<_> = params
            .layers
            .iter()
            .map(|l| dev.tensor_from_vec(l.bias.clone(), (l.outputs,)))
            .collect();
        let mut h = tensor(&x, (rows, 37)).leaky_traced();
        for (i, (w, b)) in weights.iter().zip(&biases).enumerate() {
            let out = (rows, w.shape().1);
            h = h.matmul(w.clone()) + b.leaky_trace().broadcast_like::<_, Axis<0>>(&out);
            if i < weights.len() - 1 {
                h = h.relu();
            }
        }
        let targets = dev.tensor_from_vec(one_hot(&labels, 3), (rows, 3));
        let grads = cross_entropy_with_logits_loss(h, targets).backward();
        for (i, (gw, gb)) in ours.iter().enumerate() {
            let (dw, db) = (
                grads.get(&weights[i]).as_vec(),
                grads.get(&biases[i]).as_vec(),
            );
            for (a, b) in gw.iter().zip(&dw).chain(gb.iter().zip(&db)) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "layer {i}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn no_rows_give_no_logits_and_no_scores() {
        let runner = HeadRunner::new(0, 0.0);
        for params in [
            HeadParams::init(3, &[2], 2, 7),
            HeadParams::init(1280, &[], 40, 7),
            HeadParams::init_cosine(3, 2, 2, 10.0, 7),
        ] {
            assert!(runner.logits(&params, &[]).is_empty());
            assert!(runner.acceptance(&params, &[]).is_empty());
        }
    }

    #[test]
    fn logits_agree_with_a_plain_forward_pass() {
        let params = HeadParams::init(3, &[2], 2, 7);
        let x = [1.0, 2.0, 3.0];
        let logits = HeadRunner::new(0, 0.0).logits(&params, &x);
        let dense = |l: &Dense, input: &[f32]| -> Vec<f32> {
            (0..l.outputs)
                .map(|o| {
                    l.bias[o]
                        + (0..l.inputs)
                            .map(|i| input[i] * l.weight[i * l.outputs + o])
                            .sum::<f32>()
                })
                .collect()
        };
        let hidden: Vec<f32> = dense(&params.layers[0], &x)
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
        let expected = dense(&params.layers[1], &hidden);
        for (a, e) in logits.iter().zip(&expected) {
            assert!((a - e).abs() < 1e-5);
        }
    }
}
