//! The dense layer as an op on dfdx's tape: `y = x @ W + b` forward, and backward the input's
//! gradient (when it needs one), the bias's, and the two factors of the weights' (made into it by
//! the optimizer, see [`LayerGradients`]), with facelab's own products (`matmul`). dfdx traces
//! everything around it (ReLU, dropout, the cross-entropy) and runs the backward pass; this op
//! reads the weights where the trainer keeps them, so a step neither copies them into dfdx tensors
//! nor has dfdx allocate, zero and return their gradients. While a head trains its weights, their
//! gradients and the optimizer's state are in panels (see `layout`), and become row-major [`Dense`]
//! layers again when the trainer hands them out.

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use dfdx::prelude::*;

use super::head::Dense;
use super::layout::{from_panels, panels_len, to_panels, Layout, BLOCK_COLS};
use super::matmul::{matmul, transpose, Matrix, MatrixMut};

/// A dense layer as it trains: `weight` is `[inputs, outputs]` in panels.
#[derive(Debug, Clone)]
pub struct TrainingLayer {
    pub inputs: usize,
    pub outputs: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl TrainingLayer {
    pub fn new(layer: &Dense) -> Self {
        TrainingLayer {
            inputs: layer.inputs,
            outputs: layer.outputs,
            weight: to_panels(&layer.weight, layer.inputs, layer.outputs),
            bias: layer.bias.clone(),
        }
    }

    /// The layer with its weights row-major.
    pub fn to_dense(&self) -> Dense {
        Dense {
            inputs: self.inputs,
            outputs: self.outputs,
            weight: from_panels(&self.weight, self.inputs, self.outputs),
            bias: self.bias.clone(),
        }
    }

    /// Where the weights (and their gradient, and the optimizer's state for them) are.
    pub fn layout(&self) -> Layout {
        Layout::panels(self.inputs)
    }

    fn weights(&self) -> Matrix<'_> {
        Matrix {
            data: &self.weight,
            layout: self.layout(),
        }
    }
}

/// A traced `[rows, columns]` activation.
pub type Traced = Tensor<(usize, usize), f32, Cpu, OwnedTape<f32, Cpu>>;

/// One layer's gradients from the backward pass: the bias's, and what the weights' is made of
/// (`x^T @ dy`). The weight gradient is as big as the weights, so rather than store it the
/// optimizer has it made a panel at a time, each used while it is in cache ([`weight_panel`]).
///
/// [`weight_panel`]: LayerGradients::weight_panel
#[derive(Debug, Default)]
pub struct LayerGradients {
    /// The layer's input, transposed: `[inputs, rows]`.
    input_t: Vec<f32>,
    /// The loss's gradient at the layer's output: `[rows, outputs]`.
    output: Vec<f32>,
    rows: usize,
    inputs: usize,
    outputs: usize,
    pub bias: Vec<f32>,
}

impl LayerGradients {
    /// The elements of one panel of the weight gradient (and of the weights).
    pub fn panel_len(&self) -> usize {
        Layout::panels(self.inputs).block
    }

    /// The weight gradient held in `range` of the panels, which must be one whole panel, into
    /// `out`.
    pub fn weight_panel(&self, range: Range<usize>, out: &mut [f32]) {
        let panel_len = self.panel_len();
        assert!(range.start.is_multiple_of(panel_len) && range.len() == panel_len);
        let first = range.start / panel_len * BLOCK_COLS;
        let width = BLOCK_COLS.min(self.outputs - first);
        if width < BLOCK_COLS {
            out.fill(0.0);
        }
        matmul(
            Matrix::row_major(&self.input_t, self.rows),
            Matrix::row_major(&self.output[first..], self.outputs),
            MatrixMut::row_major(out, BLOCK_COLS),
            self.inputs,
            self.rows,
            width,
            None,
            false,
        );
    }

    /// The whole weight gradient, in panels.
    pub fn weight(&self) -> Vec<f32> {
        let panel_len = self.panel_len();
        let mut gradient = vec![0.0; panels_len(self.inputs, self.outputs)];
        for (panel, out) in gradient.chunks_exact_mut(panel_len).enumerate() {
            let start = panel * panel_len;
            self.weight_panel(start..start + panel_len, out);
        }
        gradient
    }
}

/// Where a layer's backward pass leaves its gradients, shared with the trainer.
pub type GradientSlot = Arc<Mutex<LayerGradients>>;

/// `x @ W + b` of layer `index` of `layers` on `x`'s tape; its gradients go to `slot`.
/// `needs_input_gradient` is false for the first layer, whose input (the features) is not
/// trained.
pub fn dense(
    x: Traced,
    layers: &Arc<Vec<TrainingLayer>>,
    index: usize,
    slot: &GradientSlot,
    needs_input_gradient: bool,
) -> Traced {
    let layer = &layers[index];
    let (x, mut tape) = x.split_tape();
    let (rows, inputs) = *x.shape();
    assert_eq!(inputs, layer.inputs, "the input width is the layer's");
    let x_values = x.as_vec();
    let mut y = vec![0.0; rows * layer.outputs];
    matmul(
        Matrix::row_major(&x_values, inputs),
        layer.weights(),
        MatrixMut::row_major(&mut y, layer.outputs),
        rows,
        inputs,
        layer.outputs,
        Some(&layer.bias),
        false,
    );
    let out = x.device().tensor_from_vec(y, (rows, layer.outputs));
    let backward = Backward {
        x_values,
        input: needs_input_gradient.then(|| x.clone()),
        output: out.clone(),
        layers: Arc::clone(layers),
        index,
        slot: Arc::clone(slot),
    };
    tape.add_backward_op(move |grads| backward.run(grads));
    out.put_tape(tape)
}

/// What the backward pass of one dense op needs.
struct Backward {
    x_values: Vec<f32>,
    /// The input tensor, when its gradient is wanted (its id is the key in dfdx's gradients).
    input: Option<Tensor<(usize, usize), f32, Cpu>>,
    output: Tensor<(usize, usize), f32, Cpu>,
    layers: Arc<Vec<TrainingLayer>>,
    index: usize,
    slot: GradientSlot,
}

impl Backward {
    fn layer(&self) -> &TrainingLayer {
        &self.layers[self.index]
    }

    fn run(&self, grads: &mut Gradients<f32, Cpu>) -> Result<(), CpuError> {
        let (rows, outputs) = *self.output.shape();
        let inputs = self.layer().inputs;
        let dy: Vec<f32> = grads.get_or_alloc_mut(&self.output)?.to_vec();
        if let Some(input) = &self.input {
            // dx^T = W @ dy^T: [inputs, outputs] @ [outputs, rows], W read in its panels.
            let dy_t = transpose(&dy, rows, outputs);
            let mut dx_t = vec![0.0; inputs * rows];
            matmul(
                self.layer().weights(),
                Matrix::row_major(&dy_t, rows),
                MatrixMut::row_major(&mut dx_t, rows),
                inputs,
                outputs,
                rows,
                None,
                false,
            );
            let dx = grads.get_or_alloc_mut(input)?;
            for (i, column) in dx_t.chunks_exact(rows).enumerate() {
                for (r, g) in column.iter().enumerate() {
                    dx[r * inputs + i] += g;
                }
            }
        }
        let mut bias = vec![0.0; outputs];
        for row in dy.chunks_exact(outputs) {
            for (b, g) in bias.iter_mut().zip(row) {
                *b += g;
            }
        }
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = LayerGradients {
            input_t: transpose(&self.x_values, rows, inputs),
            output: dy,
            rows,
            inputs,
            outputs,
            bias,
        };
        Ok(())
    }
}
