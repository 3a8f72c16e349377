//! The arithmetic of cosine heads (CosFace, and the whitened centroids that share its form):
//! unit-length class columns, the tangent step that keeps them so, row normalisation on dfdx's
//! tape, and cosines at inference. Weights are `[inputs, outputs]` row-major, so a class is a
//! column.

use dfdx::prelude::*;

use super::dense::Traced;
use super::head::Dense;
use super::l2_normalize_row;
use super::layout::{column_offsets, Layout};

/// Scales every column of `weight` (`[rows, columns]` row-major) to unit length.
pub fn normalize_columns(weight: &mut [f32], columns: usize) {
    let rows = weight.len() / columns.max(1);
    normalize_columns_in(weight, Layout::row_major(columns), rows, columns);
}

/// Scales every column of the `rows x columns` matrix `weight` (in `layout`) to unit length.
pub fn normalize_columns_in(weight: &mut [f32], layout: Layout, rows: usize, columns: usize) {
    for column in 0..columns {
        let norm = column_offsets(layout, rows, column)
            .map(|i| weight[i] * weight[i])
            .sum::<f32>()
            .sqrt();
        if norm > 0.0 {
            column_offsets(layout, rows, column).for_each(|i| weight[i] /= norm);
        }
    }
}

/// Removes from each column's gradient its part along the (unit) column: the gradient of the
/// loss through `w / |w|` at `|w| = 1`. Both are `rows x columns` in `layout`.
pub fn project_to_tangent(
    weight: &[f32],
    gradient: &mut [f32],
    layout: Layout,
    rows: usize,
    columns: usize,
) {
    for column in 0..columns {
        let along: f32 = column_offsets(layout, rows, column)
            .map(|i| weight[i] * gradient[i])
            .sum();
        column_offsets(layout, rows, column).for_each(|i| gradient[i] -= along * weight[i]);
    }
}

/// Each row of a traced `[rows, width]` activation scaled to unit length, on the tape.
pub fn l2_normalize_rows(h: Traced) -> Traced {
    let shape = *h.shape();
    let norms = h
        .retaped::<OwnedTape<f32, Cpu>>()
        .square()
        .sum::<(usize,), Axis<1>>()
        .sqrt()
        + 1e-12;
    h / norms.broadcast_like::<_, Axis<1>>(&shape)
}

/// Cosines `[rows, classes]` between the rows of `h` (`[rows, layer.inputs]`) and the class
/// columns of `layer`.
pub fn cosines(h: &[f32], layer: &Dense) -> Vec<f32> {
    let mut columns = layer.weight.clone();
    normalize_columns(&mut columns, layer.outputs);
    let mut out = Vec::with_capacity(h.len() / layer.inputs.max(1) * layer.outputs);
    let mut row = vec![0.0f32; layer.inputs];
    for input in h.chunks_exact(layer.inputs) {
        row.copy_from_slice(input);
        l2_normalize_row(&mut row);
        let mut sums = vec![0.0f32; layer.outputs];
        for (x, w_row) in row.iter().zip(columns.chunks_exact(layer.outputs)) {
            for (s, w) in sums.iter_mut().zip(w_row) {
                *s += x * w;
            }
        }
        out.extend(sums);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_come_out_unit_length_and_cosines_are_cosines() {
        let mut weight = vec![3.0, 0.0, 4.0, 2.0];
        normalize_columns(&mut weight, 2);
        assert_eq!(weight, [0.6, 0.0, 0.8, 1.0]);
        let layer = Dense {
            inputs: 2,
            outputs: 2,
            weight,
            bias: vec![0.0; 2],
        };
        let c = cosines(&[0.0, 5.0, 1.0, 0.0], &layer);
        let expected = [0.8, 1.0, 0.6, 0.0];
        for (a, e) in c.iter().zip(expected) {
            assert!((a - e).abs() < 1e-6, "{c:?}");
        }
    }

    #[test]
    fn the_tangent_gradient_is_orthogonal_to_its_column() {
        let mut weight = vec![1.0, 2.0, -2.0, 0.5, 0.3, 1.0];
        normalize_columns(&mut weight, 2);
        let mut gradient = vec![0.4, -1.0, 0.7, 2.0, -0.3, 0.1];
        project_to_tangent(&weight, &mut gradient, Layout::row_major(2), 3, 2);
        for column in 0..2 {
            let dot: f32 = (0..3)
                .map(|r| weight[r * 2 + column] * gradient[r * 2 + column])
                .sum();
            assert!(dot.abs() < 1e-6, "column {column}: {dot}");
        }
    }

    #[test]
    fn row_normalisation_on_the_tape_matches_the_plain_one_and_its_gradient() {
        let dev = Cpu::default();
        let x = vec![3.0f32, 4.0, 1.0, -2.0];
        let h: Traced = dev
            .tensor_from_vec(x.clone(), (2usize, 2usize))
            .leaky_traced();
        let normalized = l2_normalize_rows(h);
        let values = normalized.as_vec();
        assert!((values[0] - 0.6).abs() < 1e-6 && (values[1] - 0.8).abs() < 1e-6);
        // d/dx of (x0 / |x|) at (3, 4): (|x|^2 - x0^2) / |x|^3 = 16/125, and -x0 x1/|x|^3.
        let source = dev.tensor_from_vec(x, (2usize, 2usize));
        let traced = l2_normalize_rows(source.leaky_trace());
        let pick = dev.tensor_from_vec(vec![1.0f32, 0.0, 0.0, 0.0], (2usize, 2usize));
        let grads = (traced * pick).sum::<Rank0, _>().backward();
        let g = grads.get(&source).as_vec();
        assert!((g[0] - 16.0 / 125.0).abs() < 1e-5, "{g:?}");
        assert!((g[1] + 12.0 / 125.0).abs() < 1e-5, "{g:?}");
    }
}
