//! Optuna's `MedianPruner`: after `min_epochs`, a trial stops when the best value it has
//! reached so far is worse than the median of the earlier finished trials' values at the same
//! epoch, once `startup_trials` trials have finished.

use super::spec::Goal;

#[derive(Debug, Clone, PartialEq)]
pub struct MedianPruner {
    pub min_epochs: usize,
    pub startup_trials: usize,
    pub goal: Goal,
}

impl MedianPruner {
    /// Whether to stop a trial at `epoch` (1-based) whose monitored values so far are `own`,
    /// given the earlier finished trials' curves (`earlier[t][e - 1]` is trial t's epoch e).
    pub fn should_prune(&self, epoch: usize, own: &[f64], earlier: &[Vec<f64>]) -> bool {
        if epoch <= self.min_epochs || earlier.len() < self.startup_trials || own.is_empty() {
            return false;
        }
        let mut at_epoch: Vec<f64> = earlier
            .iter()
            .filter_map(|curve| curve.get(epoch - 1).copied())
            .filter(|v| v.is_finite())
            .collect();
        if at_epoch.is_empty() {
            return false;
        }
        at_epoch.sort_by(f64::total_cmp);
        let n = at_epoch.len();
        let median = if n % 2 == 1 {
            at_epoch[n / 2]
        } else {
            (at_epoch[n / 2 - 1] + at_epoch[n / 2]) / 2.0
        };
        let best_so_far = own
            .iter()
            .copied()
            .reduce(|a, b| if self.goal.better(b, a) { b } else { a })
            .unwrap_or(f64::NAN);
        !best_so_far.is_finite() || self.goal.better(median, best_so_far)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pruner(min_epochs: usize, startup_trials: usize) -> MedianPruner {
        MedianPruner {
            min_epochs,
            startup_trials,
            goal: Goal::Maximize,
        }
    }

    #[test]
    fn prunes_only_below_the_median_after_warm_up_and_start_up() {
        let earlier = vec![
            vec![0.5, 0.6, 0.7],
            vec![0.4, 0.5, 0.9],
            vec![0.3, 0.4, 0.8],
        ];
        let p = pruner(1, 3);
        assert!(p.should_prune(2, &[0.1, 0.2], &earlier), "0.2 < median 0.5");
        assert!(
            !p.should_prune(2, &[0.1, 0.5], &earlier),
            "equal to the median is kept"
        );
        assert!(!p.should_prune(1, &[0.0], &earlier), "within min_epochs");
        assert!(
            !pruner(1, 4).should_prune(2, &[0.1, 0.2], &earlier),
            "too few trials"
        );
        // The best value so far counts, as in Optuna: a dip after a good epoch is kept.
        assert!(!p.should_prune(3, &[0.1, 0.9, 0.1], &earlier));
        assert!(
            !p.should_prune(4, &[0.1, 0.2, 0.3, 0.1], &earlier),
            "no one got that far"
        );
        let minimize = MedianPruner {
            goal: Goal::Minimize,
            ..pruner(0, 1)
        };
        assert!(minimize.should_prune(1, &[0.6], &earlier));
        assert!(!minimize.should_prune(1, &[0.3], &earlier));
    }
}
