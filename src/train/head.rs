//! The classification head and its gradients: the only module that imports dfdx.
//!
//! dfdx 0.13's `Linear<I, O>` is sized at compile time and its optimizers only visit
//! const-shaped modules, but here the layer sizes and the number of classes come from the YAML
//! and the dataset at run time. So the head is a list of runtime-shaped dense layers held as
//! `Tensor<(usize, usize)>` weights for the whole fit ([`HeadTrainer`]): each step traces the
//! batch through them with a leaky tape, and the optimizer (facelab's own, Keras's rules, see
//! `optim`) reads each gradient where `backward()` left it and updates the parameters in one
//! fused pass. dfdx's public API gives no mutable view of a tensor's buffer, so the updated
//! values go back into the persistent tensors with one `copy_from` per tensor.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::optim::{Optimizer, Part};

/// One dense layer: `y = x @ weight + bias`, with `weight` as `[inputs, outputs]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The head's parameters: hidden layers (ReLU after each) and the output layer (logits).
#[derive(Debug, Clone, PartialEq)]
pub struct HeadParams {
    pub layers: Vec<Dense>,
}

impl HeadParams {
    /// Glorot-uniform weights and zero biases, as Keras's `Dense` starts.
    pub fn init(inputs: usize, hidden: &[usize], classes: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sizes: Vec<usize> = std::iter::once(inputs)
            .chain(hidden.iter().copied())
            .chain([classes])
            .collect();
        let layers = sizes
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
            .collect();
        HeadParams { layers }
    }

    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }
}

/// Runs the head on dfdx's CPU device, whose random stream (seeded) drives dropout.
pub struct HeadRunner {
    dev: Cpu,
    dropout: f64,
}

impl HeadRunner {
    pub fn new(seed: u64, dropout: f64) -> Self {
        let dev = Cpu::seed_from_u64(seed);
        // Reuse freed buffers: every step allocates megabytes, and fresh pages cost page faults.
        dev.enable_cache();
        HeadRunner { dev, dropout }
    }

    /// A device tensor holding `values`, from the device's buffer cache.
    fn tensor<S: Shape>(&self, values: &[f32], shape: S) -> Tensor<S, f32, Cpu> {
        let mut t = self.dev.zeros_like(&shape);
        t.copy_from(values);
        t
    }

    /// A trainer holding `params` as device tensors for the fit.
    pub fn trainer(&self, params: &HeadParams) -> HeadTrainer<'_> {
        HeadTrainer {
            runner: self,
            weights: params
                .layers
                .iter()
                .map(|l| self.tensor(&l.weight, (l.inputs, l.outputs)))
                .collect(),
            biases: params
                .layers
                .iter()
                .map(|l| self.tensor(&l.bias, (l.outputs,)))
                .collect(),
        }
    }

    /// Logits `[rows, classes]` for `x` (`[rows, inputs]`), dropout off.
    pub fn logits(&self, params: &HeadParams, x: &[f32]) -> Vec<f32> {
        let rows = x.len() / params.inputs().max(1);
        let mut h = self.tensor(x, (rows, params.inputs()));
        let last = params.layers.len() - 1;
        for (i, l) in params.layers.iter().enumerate() {
            let w = self.tensor(&l.weight, (l.inputs, l.outputs));
            let b = self.tensor(&l.bias, (l.outputs,));
            h = h.matmul(w) + b.broadcast_like::<_, Axis<0>>(&(rows, l.outputs));
            if i < last {
                h = h.relu();
            }
        }
        h.as_vec()
    }
}

/// The head's parameters as device tensors, kept in step with a [`HeadParams`] for a whole
/// fit, so a step neither allocates nor copies its weights in.
pub struct HeadTrainer<'r> {
    runner: &'r HeadRunner,
    weights: Vec<Tensor<(usize, usize), f32, Cpu>>,
    biases: Vec<Tensor<(usize,), f32, Cpu>>,
}

/// What one training batch gave: the mean loss, the rows predicted right, and the gradients
/// (still in dfdx's buffers) for [`HeadTrainer::apply`].
pub struct Batch {
    pub loss: f32,
    pub correct: usize,
    gradients: Gradients<f32, Cpu>,
}

/// A batch traced through the head, before backward.
pub struct Forward {
    loss: Tensor<Rank0, f32, Cpu, OwnedTape<f32, Cpu>>,
    loss_value: f32,
    correct: usize,
}

impl HeadTrainer<'_> {
    /// Forward and backward over one batch: `x` is `[rows, inputs]`, `labels` one per row.
    pub fn forward_backward(&self, x: &[f32], labels: &[usize]) -> Batch {
        Self::backward(self.forward(x, labels))
    }

    /// The batch through the head to its mean cross-entropy, on the tape.
    pub fn forward(&self, x: &[f32], labels: &[usize]) -> Forward {
        let dev = &self.runner.dev;
        let rows = labels.len();
        let inputs = self.weights[0].shape().0;
        let classes = self.weights.last().expect("a head has a layer").shape().1;
        let mut h = self.runner.tensor(x, (rows, inputs)).leaky_traced();
        let last = self.weights.len() - 1;
        for (i, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            // [rows, in] @ [in, out] + [out] broadcast over rows -> [rows, out]
            let out = (rows, w.shape().1);
            // The bias is traced itself: its broadcast must be on the tape for its gradient.
            h = h.matmul(w.clone()) + b.leaky_trace().broadcast_like::<_, Axis<0>>(&out);
            if i < last {
                h = h.relu();
                if self.runner.dropout > 0.0 {
                    h = h.dropout(self.runner.dropout);
                }
            }
        }
        let logits = h.as_vec();
        let targets = dev.tensor_from_vec(one_hot(labels, classes), (rows, classes));
        let loss = cross_entropy_with_logits_loss(h, targets);
        Forward {
            loss_value: loss.as_vec()[0],
            correct: count_correct(&logits, labels, classes),
            loss,
        }
    }

    /// The gradients of a traced batch.
    pub fn backward(forward: Forward) -> Batch {
        Batch {
            loss: forward.loss_value,
            correct: forward.correct,
            gradients: forward.loss.backward(),
        }
    }

    /// One optimizer step with the batch's gradients: [`HeadTrainer::update`], then
    /// [`HeadTrainer::refresh`].
    pub fn apply(&mut self, batch: Batch, params: &mut HeadParams, optimizer: &mut Optimizer) {
        self.update(batch, params, optimizer);
        self.refresh(params);
    }

    /// Updates `params` in place with the batch's gradients, read where dfdx left them.
    pub fn update(&self, batch: Batch, params: &mut HeadParams, optimizer: &mut Optimizer) {
        let mut grads = batch.gradients;
        optimizer.begin_step();
        for (i, layer) in params.layers.iter_mut().enumerate() {
            let gw = gradient(&mut grads, &self.weights[i]);
            optimizer.update(i, Part::Weight, &mut layer.weight, gw);
            let gb = gradient(&mut grads, &self.biases[i]);
            optimizer.update(i, Part::Bias, &mut layer.bias, gb);
        }
    }

    /// Copies `params` into the device tensors (in place: the tape that shared their buffers
    /// is gone once its gradients are).
    pub fn refresh(&mut self, params: &HeadParams) {
        for ((w, b), layer) in self
            .weights
            .iter_mut()
            .zip(&mut self.biases)
            .zip(&params.layers)
        {
            w.copy_from(&layer.weight);
            b.copy_from(&layer.bias);
        }
    }
}

/// A parameter's gradient, in dfdx's buffer (every parameter takes part in the forward pass, so
/// backward has allocated it).
fn gradient<'g, S: Shape>(
    grads: &'g mut Gradients<f32, Cpu>,
    t: &Tensor<S, f32, Cpu>,
) -> &'g [f32] {
    grads
        .get_or_alloc_mut(t)
        .expect("backward allocated every parameter's gradient")
}

fn one_hot(labels: &[usize], classes: usize) -> Vec<f32> {
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
        let mut trainer = runner.trainer(params);
        let sgd = crate::config::OptimizerConfig::Sgd {
            lr: 1.0,
            momentum: 0.0,
        };
        let mut optimizer = Optimizer::new(&sgd, params);
        let mut after = params.clone();
        let batch = trainer.forward_backward(x, labels);
        trainer.apply(batch, &mut after, &mut optimizer);
        let minus = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a - b).collect();
        params
            .layers
            .iter()
            .zip(&after.layers)
            .map(|(p, a)| (minus(&p.weight, &a.weight), minus(&p.bias, &a.bias)))
            .collect()
    }

    /// Numerical check of the gradients dfdx computes and the trainer applies, on a tiny head.
    #[test]
    fn applied_gradients_match_finite_differences() {
        let params = HeadParams::init(3, &[4], 2, 1);
        let x = [0.5, -1.0, 2.0, 1.5, 0.3, -0.7];
        let labels = [1, 0];
        let runner = HeadRunner::new(0, 0.0);
        let loss_at = |p: &HeadParams| runner.trainer(p).forward_backward(&x, &labels).loss as f64;
        for (layer, (gw, gb)) in applied_gradients(&params, &x, &labels).iter().enumerate() {
            for (index, analytic) in [(0usize, gw[0]), (gw.len() - 1, gw[gw.len() - 1])] {
                let mut plus = params.clone();
                let mut minus = params.clone();
                plus.layers[layer].weight[index] += 1e-3;
                minus.layers[layer].weight[index] -= 1e-3;
                let numeric = (loss_at(&plus) - loss_at(&minus)) / 2e-3;
                assert!(
                    (numeric - analytic as f64).abs() < 2e-3,
                    "layer {layer} w[{index}]: {numeric} vs {analytic}"
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

    /// After a step the trainer's tensors hold the updated parameters: its next loss is the
    /// loss a fresh trainer computes from them.
    #[test]
    fn a_step_refreshes_the_device_tensors() {
        let mut params = HeadParams::init(3, &[4], 2, 5);
        let x = [0.5, -1.0, 2.0, 1.5, 0.3, -0.7];
        let labels = [1, 0];
        let runner = HeadRunner::new(0, 0.0);
        let mut trainer = runner.trainer(&params);
        let mut optimizer = Optimizer::new(&crate::config::OptimizerConfig::default(), &params);
        let first = trainer.forward_backward(&x, &labels);
        let first_loss = first.loss;
        trainer.apply(first, &mut params, &mut optimizer);
        let next = trainer.forward_backward(&x, &labels).loss;
        let fresh = runner.trainer(&params).forward_backward(&x, &labels).loss;
        assert_ne!(next, first_loss);
        assert_eq!(next, fresh);
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
