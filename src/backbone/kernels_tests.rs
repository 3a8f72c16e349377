//! Tests of the backbone's kernels: every instruction set this CPU runs against plain loops.

use super::*;
use crate::test_values::pseudo_random;

fn pointwise_reference(
    input: &[f32],
    w: &[f32],
    b: &[f32],
    n: usize,
    k: usize,
    act: Activation,
    res: Option<&[f32]>,
) -> Vec<f32> {
    let rows = input.len() / k;
    let mut out = vec![0.0; rows * n];
    for p in 0..rows {
        for c in 0..n {
            let mut v = b[c]
                + (0..k)
                    .map(|kk| input[p * k + kk] * w[c * k + kk])
                    .sum::<f32>();
            if act == Activation::Relu6 {
                v = v.clamp(0.0, 6.0);
            }
            out[p * n + c] = v + res.map_or(0.0, |r| r[p * n + c]);
        }
    }
    out
}

fn depthwise_reference(
    input: &[f32],
    shape: Shape,
    w: &[f32],
    b: &[f32],
    c: usize,
    stride: usize,
) -> Vec<f32> {
    let oh = (shape.height - 1) / stride + 1;
    let ow = (shape.width - 1) / stride + 1;
    let mut out = vec![0.0; oh * ow * c];
    for oy in 0..oh {
        for ox in 0..ow {
            for ch in 0..c {
                let mut v = b[ch];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let iy = (oy * stride + ky) as isize - 1;
                        let ix = (ox * stride + kx) as isize - 1;
                        if iy >= 0
                            && ix >= 0
                            && (iy as usize) < shape.height
                            && (ix as usize) < shape.width
                        {
                            v += input[((iy as usize) * shape.width + ix as usize) * c + ch]
                                * w[ch * 9 + ky * 3 + kx];
                        }
                    }
                }
                out[(oy * ow + ox) * c + ch] = v.clamp(0.0, 6.0);
            }
        }
    }
    out
}

fn assert_close(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len());
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
            "index {i}: {a} vs {e}"
        );
    }
}

#[test]
fn pointwise_matches_reference_for_ragged_shapes() {
    // Row counts that leave partial tiles, and widths that leave partial panels and groups.
    for &(rows, k, n) in &[
        (25, 7, 24),
        (12, 32, 16),
        (13, 27, 32),
        (49, 20, 56),
        (3, 5, 1),
    ] {
        let input = pseudo_random(rows * k, 1);
        let w = pseudo_random(n * k, 2);
        let b = pseudo_random(n, 3);
        let res = pseudo_random(rows * n, 4);
        let packed = PackedPointwise::new(&w, &b, n, k);
        for isa in Isa::runnable() {
            for (act, residual) in [
                (Activation::Relu6, None),
                (Activation::None, Some(res.as_slice())),
            ] {
                let mut out = vec![f32::NAN; rows * n];
                pointwise(isa, &input, &packed, act, residual, &mut out);
                let expected = pointwise_reference(&input, &w, &b, n, k, act, residual);
                assert_close(&out, &expected);
            }
        }
    }
}

#[test]
fn depthwise_matches_reference_for_both_strides_and_ragged_channels() {
    for &(h, w, c, stride) in &[(7, 5, 16, 1), (8, 9, 24, 2), (1, 1, 32, 1), (5, 4, 3, 2)] {
        let shape = Shape {
            height: h,
            width: w,
        };
        let input = pseudo_random(h * w * c, 5);
        let weight = pseudo_random(c * 9, 6);
        let bias = pseudo_random(c, 7);
        let layer = PackedDepthwise::new(&weight, &bias, c, stride);
        let oh = layer.output_size(h);
        let ow = layer.output_size(w);
        let expected = depthwise_reference(&input, shape, &weight, &bias, c, stride);
        for isa in Isa::runnable() {
            let mut out = vec![f32::NAN; oh * ow * c];
            depthwise(isa, &input, shape, &layer, 0..oh * ow, &mut out);
            assert_close(&out, &expected);
            // Pieces that start and end mid-row fill the same output.
            let split = [0, 1, oh * ow / 2 + 1, oh * ow];
            let mut pieces = vec![f32::NAN; oh * ow * c];
            for w in split.windows(2).filter(|w| w[0] < w[1]) {
                depthwise(
                    isa,
                    &input,
                    shape,
                    &layer,
                    w[0]..w[1],
                    &mut pieces[w[0] * c..w[1] * c],
                );
            }
            assert_close(&pieces, &expected);
        }
    }
}
