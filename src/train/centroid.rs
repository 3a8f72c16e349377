//! The centroid head: class centroids in a whitened space, fitted in closed form from cached
//! features (an LDA-like nearest-class-mean rule). The pooled within-class covariance `S_w`
//! is shrunk toward its mean eigenvalue, `S = (1 - a) S_w + a mean_eig I` (Ledoit-Wolf style, so
//! it is invertible with fewer images than feature dimensions); features and centroids, centred
//! on the mean of the class means, are multiplied by `S^-1/2`, and a face goes to the centroid
//! with the largest cosine. The result is a cosine head (`Output::Cosine`): the whitening is its
//! first layer and the unit whitened centroids its class columns, so it saves, loads and
//! predicts like any other head.
//!
//! `S^-1/2` comes from the eigen-decomposition of the smaller of the `N x N` Gram matrix of the
//! centred rows and the `d x d` scatter (nalgebra's symmetric eigensolver): with `N` rows,
//! `S = c I + k X^T X` has eigenvalue `c` outside the rows' span, so only `N` directions need
//! their own scale. A fit on 200 ORL images takes milliseconds.

use std::time::Instant;

use nalgebra::{DMatrix, SymmetricEigen};

use super::cv::{CvOutcome, Fold};
use super::head::{Dense, HeadParams, HeadRunner, Output};
use super::{evaluate, EpochMetrics, FitOutcome, LabeledFeatures, TrainObserver};
use crate::config::ExperimentConfig;
use crate::error::{Error, Result};

/// Fits whitened centroids for `classes` classes on `train`.
pub fn fit_centroids(
    train: &LabeledFeatures,
    classes: usize,
    shrinkage: f64,
    scale: f32,
) -> Result<HeadParams> {
    let d = train.dim;
    let means = class_means(train, classes)?;
    let centre: Vec<f64> = (0..d)
        .map(|j| means.iter().map(|m| m[j]).sum::<f64>() / classes as f64)
        .collect();
    // Within-class deviations, [rows, d].
    let rows = train.len();
    let deviations = DMatrix::from_fn(rows, d, |r, j| {
        f64::from(train.x[r * d + j]) - means[train.y[r]][j]
    });
    let whitening = inverse_square_root(&deviations, shrinkage)?;
    // One product for every centred class mean and the centre itself: [classes + 1, d].
    let to_project = DMatrix::from_fn(classes + 1, d, |row, j| match means.get(row) {
        Some(mean) => mean[j] - centre[j],
        None => centre[j],
    });
    let projected = to_project * &whitening;
    let mut class_columns = vec![0.0f32; d * classes];
    for class in 0..classes {
        for j in 0..d {
            class_columns[j * classes + class] = projected[(class, j)] as f32;
        }
    }
    super::cosine::normalize_columns(&mut class_columns, classes);
    let bias = (0..d).map(|j| -projected[(classes, j)] as f32).collect();
    Ok(HeadParams {
        layers: vec![
            Dense {
                inputs: d,
                outputs: d,
                weight: whitening.iter().map(|&v| v as f32).collect(),
                bias,
            },
            Dense {
                inputs: d,
                outputs: classes,
                weight: class_columns,
                bias: vec![0.0; classes],
            },
        ],
        output: Output::Cosine { scale },
    })
}

/// Each class's mean row; every class needs at least one row.
fn class_means(train: &LabeledFeatures, classes: usize) -> Result<Vec<Vec<f64>>> {
    let d = train.dim;
    let mut sums = vec![vec![0.0f64; d]; classes];
    let mut counts = vec![0usize; classes];
    for (row, &class) in train.x.chunks_exact(d).zip(&train.y) {
        counts[class] += 1;
        for (s, v) in sums[class].iter_mut().zip(row) {
            *s += f64::from(*v);
        }
    }
    if let Some(empty) = counts.iter().position(|&c| c == 0) {
        return Err(Error::InvalidArgument(format!(
            "class {empty} has no training images, so it has no centroid"
        )));
    }
    for (sum, count) in sums.iter_mut().zip(counts) {
        sum.iter_mut().for_each(|s| *s /= count as f64);
    }
    Ok(sums)
}

/// `S^-1/2` (symmetric, `d x d`) for `S = (1 - a) X^T X / N + a mean_eig I`, with `X` the
/// `[N, d]` deviations and `a` the shrinkage.
fn inverse_square_root(x: &DMatrix<f64>, shrinkage: f64) -> Result<DMatrix<f64>> {
    let (n, d) = x.shape();
    let mean_eigenvalue = x.iter().map(|v| v * v).sum::<f64>() / (n as f64 * d as f64);
    let c = shrinkage * mean_eigenvalue;
    let k = (1.0 - shrinkage) / n as f64;
    if c <= 0.0 || !c.is_finite() {
        return Err(Error::InvalidArgument(
            "the training images of every class are identical, so there is no spread to whiten; add more varied images".into(),
        ));
    }
    // Orthonormal directions `u` (d x r) of X^T X with eigenvalues `lambda`.
    let (u, lambda) = if n < d {
        let eigen = SymmetricEigen::new(x * x.transpose());
        let keep: Vec<usize> = (0..n)
            .filter(|&i| eigen.eigenvalues[i] > 1e-12 * n as f64 * mean_eigenvalue)
            .collect();
        let mut u = DMatrix::zeros(d, keep.len());
        let mut lambda = Vec::with_capacity(keep.len());
        for (col, &i) in keep.iter().enumerate() {
            let l = eigen.eigenvalues[i];
            let v = x.transpose() * eigen.eigenvectors.column(i);
            u.set_column(col, &(v / l.sqrt()));
            lambda.push(l);
        }
        (u, lambda)
    } else {
        let eigen = SymmetricEigen::new(x.transpose() * x);
        let lambda = eigen.eigenvalues.iter().map(|l| l.max(0.0)).collect();
        (eigen.eigenvectors, lambda)
    };
    let base = c.powf(-0.5);
    let mut scaled = u.clone();
    for (mut column, l) in scaled.column_iter_mut().zip(&lambda) {
        column *= (c + k * l).powf(-0.5) - base;
    }
    let mut result = scaled * u.transpose();
    for i in 0..d {
        result[(i, i)] += base;
    }
    Ok(result)
}

/// A centroid run's "training": one closed-form fit, reported as a single epoch whose loss and
/// accuracy are on the training rows and whose `val_*` are on `val`.
pub fn fit(
    config: &ExperimentConfig,
    classes: usize,
    train: &LabeledFeatures,
    val: Option<&LabeledFeatures>,
    observer: &mut dyn TrainObserver,
) -> Result<FitOutcome> {
    let start = Instant::now();
    let params = fit_for(config, train, classes)?;
    let runner = HeadRunner::new(0, 0.0);
    let on_train = evaluate(&runner, &params, train);
    let on_val = val
        .filter(|v| !v.is_empty())
        .map(|v| evaluate(&runner, &params, v));
    let metrics = EpochMetrics {
        epoch: 1,
        loss: on_train.loss,
        accuracy: on_train.accuracy,
        val_loss: on_val.as_ref().map(|e| e.loss),
        val_accuracy: on_val.as_ref().map(|e| e.accuracy),
        seconds: start.elapsed().as_secs_f64(),
    };
    observer.epoch_finished(&metrics)?;
    Ok(FitOutcome {
        params,
        epochs: vec![metrics],
        best_epoch: Some(1),
        stopped_early: false,
    })
}

/// The centroid head of `config` fitted on `train`.
pub fn fit_for(
    config: &ExperimentConfig,
    train: &LabeledFeatures,
    classes: usize,
) -> Result<HeadParams> {
    let head = &config.head;
    fit_centroids(train, classes, head.shrinkage(), head.scale() as f32)
}

/// Cross-validation of the centroid head: one fit per fold, the means reported as one epoch.
pub fn cross_validate(
    config: &ExperimentConfig,
    classes: usize,
    train: &LabeledFeatures,
    folds: &[Fold],
    observer: &mut dyn TrainObserver,
) -> Result<CvOutcome> {
    let start = Instant::now();
    let runner = HeadRunner::new(0, 0.0);
    let mut sums = [0.0f64; 4];
    for fold in folds {
        let rows = train.subset(&fold.train_rows);
        let params = fit_for(config, &rows, classes)?;
        let (on_train, on_val) = (
            evaluate(&runner, &params, &rows),
            evaluate(&runner, &params, &fold.val),
        );
        let figures = [
            on_train.loss,
            on_train.accuracy,
            on_val.loss,
            on_val.accuracy,
        ];
        for (sum, value) in sums.iter_mut().zip(figures) {
            *sum += value;
        }
    }
    let n = folds.len().max(1) as f64;
    let metrics = EpochMetrics {
        epoch: 1,
        loss: sums[0] / n,
        accuracy: sums[1] / n,
        val_loss: Some(sums[2] / n),
        val_accuracy: Some(sums[3] / n),
        seconds: start.elapsed().as_secs_f64(),
    };
    observer.epoch_finished(&metrics)?;
    Ok(CvOutcome {
        epochs: vec![metrics],
        chosen_epoch: 1,
        stopped_early: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes that differ along a direction of small within-class spread, while a
    /// direction of large spread (noise, with a correlated copy) is shared.
    fn elongated_blobs(per_class: usize) -> LabeledFeatures {
        let mut set = LabeledFeatures::new(3);
        for k in 0..per_class {
            let t = (k as f32 * 0.618).fract() - 0.5;
            let s = (k as f32 * 0.377).fract() - 0.5;
            for class in 0..2 {
                set.push(
                    &[10.0 * t, 0.4 * class as f32 + 0.1 * s, 1.0 + 0.05 * t],
                    class,
                );
            }
        }
        set
    }

    #[test]
    fn whitening_makes_the_within_class_covariance_the_shrunk_identity() {
        let x = DMatrix::from_row_slice(4, 2, &[1.0, 0.0, -1.0, 0.0, 0.0, 0.5, 0.0, -0.5]);
        let p = inverse_square_root(&x, 0.2).unwrap();
        // S = 0.8 X^T X / 4 + 0.2 * mean_eig I with X^T X = diag(2, 0.5), mean_eig = 2.5/8.
        let s = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![
            0.8 * 0.5 + 0.2 * 2.5 / 8.0,
            0.8 * 0.125 + 0.2 * 2.5 / 8.0,
        ]));
        let identity = &p * s * &p;
        for i in 0..2 {
            for j in 0..2 {
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((identity[(i, j)] - expected).abs() < 1e-9, "{identity}");
            }
        }
    }

    #[test]
    fn both_eigen_routes_give_the_same_whitening() {
        let rows: Vec<f64> = (0..15)
            .map(|i| ((i * 37 % 11) as f64) / 5.0 - 1.0)
            .collect();
        let few_rows = DMatrix::from_row_slice(3, 5, &rows);
        let via_gram = inverse_square_root(&few_rows, 0.3).unwrap();
        let mut padded = DMatrix::zeros(6, 5);
        padded.view_mut((0, 0), (3, 5)).copy_from(&few_rows);
        // Zero rows add nothing to X^T X; rescale k = (1 - a) / N for the doubled N.
        let via_scatter = inverse_square_root(&(padded * 2f64.sqrt()), 0.3).unwrap();
        assert!((via_gram - via_scatter).abs().max() < 1e-9);
    }

    #[test]
    fn centroids_name_the_classes_of_new_rows() {
        let train = elongated_blobs(20);
        let params = fit_centroids(&train, 2, 0.1, 30.0).unwrap();
        let eval = evaluate(&HeadRunner::new(0, 0.0), &params, &elongated_blobs(13));
        assert_eq!(eval.accuracy, 1.0);
        let column_norm = |c: usize| -> f32 {
            (0..3)
                .map(|j| params.layers[1].weight[j * 2 + c].powi(2))
                .sum::<f32>()
                .sqrt()
        };
        assert!((column_norm(0) - 1.0).abs() < 1e-5 && (column_norm(1) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn a_class_without_rows_is_an_error() {
        let train = elongated_blobs(3);
        let e = fit_centroids(&train, 3, 0.2, 30.0).unwrap_err().to_string();
        assert!(e.contains("class 2"), "{e}");
    }
}
