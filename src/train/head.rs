//! The classification head and its gradients: the only module that imports dfdx.
//!
//! dfdx 0.13's `Linear<I, O>` is sized at compile time and its optimizers only visit
//! const-shaped modules, but here the layer sizes and the number of classes come from the YAML
//! and the dataset at run time. So the head is a list of runtime-shaped dense layers: each step
//! builds `Tensor<(usize, usize)>` weights, traces the batch through them with a leaky tape,
//! and reads every parameter's gradient back from `backward()`. The optimizer updates are
//! facelab's own (see `optim`), fused into one pass over each parameter.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

/// Gradients of the mean cross-entropy, shaped like the parameters.
#[derive(Debug, Clone)]
pub struct HeadGradients {
    pub layers: Vec<(Vec<f32>, Vec<f32>)>,
}

/// What one training batch gave.
#[derive(Debug, Clone)]
pub struct BatchResult {
    pub loss: f32,
    pub correct: usize,
    pub gradients: HeadGradients,
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

    /// Forward and backward over one batch: `x` is `[rows, inputs]`, `labels` one per row.
    pub fn train_batch(&self, params: &HeadParams, x: &[f32], labels: &[usize]) -> BatchResult {
        let rows = labels.len();
        let classes = params.classes();
        let weights: Vec<_> = params
            .layers
            .iter()
            .map(|l| self.tensor(&l.weight, (l.inputs, l.outputs)))
            .collect();
        let biases: Vec<_> = params
            .layers
            .iter()
            .map(|l| self.tensor(&l.bias, (l.outputs,)))
            .collect();
        let mut h = self.tensor(x, (rows, params.inputs())).leaky_traced();
        let last = params.layers.len() - 1;
        for (i, (w, b)) in weights.iter().zip(&biases).enumerate() {
            // [rows, in] @ [in, out] + [out] broadcast over rows -> [rows, out]
            let out = (rows, w.shape().1);
            h = h.matmul(w.clone()) + b.leaky_trace().broadcast_like::<_, Axis<0>>(&out);
            if i < last {
                h = h.relu();
                if self.dropout > 0.0 {
                    h = h.dropout(self.dropout);
                }
            }
        }
        let logits = h.as_vec();
        let targets = self
            .dev
            .tensor_from_vec(one_hot(labels, classes), (rows, classes));
        let loss = cross_entropy_with_logits_loss(h, targets);
        let loss_value = loss.as_vec()[0];
        let grads = loss.backward();
        let gradients = HeadGradients {
            layers: weights
                .iter()
                .zip(&biases)
                .map(|(w, b)| (read(&grads.get(w)), read(&grads.get(b))))
                .collect(),
        };
        BatchResult {
            loss: loss_value,
            correct: count_correct(&logits, labels, classes),
            gradients,
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

/// A tensor's values: one memcpy (`as_vec` walks element by element).
fn read<S: Shape>(t: &Tensor<S, f32, Cpu>) -> Vec<f32> {
    let mut out = vec![0.0; t.shape().num_elements()];
    t.copy_into(&mut out);
    out
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

    /// Numerical check of the dfdx gradients on a tiny head.
    #[test]
    fn gradients_match_finite_differences() {
        let params = HeadParams::init(3, &[4], 2, 1);
        let x = [0.5, -1.0, 2.0, 1.5, 0.3, -0.7];
        let labels = [1, 0];
        let runner = HeadRunner::new(0, 0.0);
        let result = runner.train_batch(&params, &x, &labels);
        let loss_at = |p: &HeadParams| runner.train_batch(p, &x, &labels).loss as f64;
        for (layer, (gw, gb)) in result.gradients.layers.iter().enumerate() {
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
