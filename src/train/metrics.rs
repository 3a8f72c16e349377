//! Classification metrics of a trained head on a labelled set: the confusion matrix and the
//! per-class precision and recall derived from it.

/// `counts[actual][predicted]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionMatrix {
    pub counts: Vec<Vec<u32>>,
}

/// One class's figures; `None` where the denominator is zero.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMetrics {
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub support: u32,
}

impl ConfusionMatrix {
    pub fn new(classes: usize, actual: &[usize], predicted: &[usize]) -> Self {
        let mut counts = vec![vec![0; classes]; classes];
        for (&a, &p) in actual.iter().zip(predicted) {
            counts[a][p] += 1;
        }
        ConfusionMatrix { counts }
    }

    pub fn accuracy(&self) -> f64 {
        let total: u32 = self.counts.iter().flatten().sum();
        let right: u32 = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        if total == 0 {
            0.0
        } else {
            right as f64 / total as f64
        }
    }

    pub fn per_class(&self) -> Vec<ClassMetrics> {
        let n = self.counts.len();
        (0..n)
            .map(|c| {
                let right = self.counts[c][c] as f64;
                let predicted: u32 = (0..n).map(|a| self.counts[a][c]).sum();
                let support: u32 = self.counts[c].iter().sum();
                ClassMetrics {
                    precision: (predicted > 0).then(|| right / predicted as f64),
                    recall: (support > 0).then(|| right / support as f64),
                    support,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_accuracy_from_counts() {
        let m = ConfusionMatrix::new(3, &[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0]);
        assert_eq!(m.counts, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]);
        assert!((m.accuracy() - 0.6).abs() < 1e-12);
        let pc = m.per_class();
        assert_eq!(pc[0].precision, Some(0.5));
        assert_eq!(pc[1].precision, Some(2.0 / 3.0));
        assert_eq!(pc[1].recall, Some(1.0));
        assert_eq!(
            (pc[2].precision, pc[2].recall, pc[2].support),
            (None, Some(0.0), 1)
        );
    }
}
