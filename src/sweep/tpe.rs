//! A tree-structured Parzen estimator, after Optuna's default `TPESampler` (univariate, as
//! Optuna is by default): the first [`STARTUP_TRIALS`] trials are random; after that the
//! finished trials are split into the best `gamma(n) = min(ceil(0.1 n), 25)` and the rest, each
//! parameter gets a Parzen density `l` over the best and `g` over the rest (a Gaussian on every
//! observation plus a wide prior, bandwidths from the distance to the neighbours, clipped as
//! Optuna clips them; for lists of values, a kernel per observation that puts most of its mass
//! on the observed value and spreads a little over every value, plus a uniform prior, as
//! Optuna's categorical kernel does), and of [`CANDIDATES`] draws from `l` the one with the
//! largest `l / g` is taken. Within each group, observations are weighted as Optuna's
//! `default_weights` weights them: equally up to 25, beyond that the older ones less.
//!
//! Pruned trials count among the rest (they did worse than the median), as Optuna ranks them
//! below finished ones. Failed trials are left out.

use rand::Rng;
use rand_distr::{Distribution as _, Normal};

use super::space::{Domain, Params, Space};
use super::spec::Goal;

/// Random trials before TPE starts modelling (Optuna's `n_startup_trials`).
pub const STARTUP_TRIALS: usize = 10;
/// Draws from `l` compared per parameter (Optuna's `n_ei_candidates`).
pub const CANDIDATES: usize = 24;

/// A trial TPE learns from: its parameters and its metric, or `None` if it was pruned.
#[derive(Debug, Clone)]
pub struct Observation {
    pub params: Params,
    pub value: Option<f64>,
}

/// How many of `n` trials count as good.
fn gamma(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// The prior's weight beside the observations' (Optuna's `prior_weight`).
const PRIOR_WEIGHT: f64 = 1.0;
/// Observations (newest first) that keep full weight (Optuna's `default_weights`).
const FULL_WEIGHT_OBSERVATIONS: usize = 25;

/// Optuna's `default_weights` for `n` observations in trial order: all 1 below 25; otherwise
/// the newest 25 weigh 1 and the older ones ramp up linearly from `1 / n`.
fn observation_weights(n: usize) -> Vec<f64> {
    if n < FULL_WEIGHT_OBSERVATIONS {
        return vec![1.0; n];
    }
    let ramp = n - FULL_WEIGHT_OBSERVATIONS;
    let step = |i: usize| match ramp {
        1 => 1.0 / n as f64,
        _ => 1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64,
    };
    (0..ramp)
        .map(step)
        .chain(std::iter::repeat_n(1.0, FULL_WEIGHT_OBSERVATIONS))
        .collect()
}

/// Each observation's mixture weight and then the prior's, summing to 1.
fn mixture_weights(observations: usize) -> Vec<f64> {
    let mut weights = observation_weights(observations);
    weights.push(PRIOR_WEIGHT);
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

/// Index `i` with probability `weights[i]` (which sum to 1).
fn pick(weights: &[f64], rng: &mut impl Rng) -> usize {
    let mut u = rng.gen::<f64>();
    for (i, &w) in weights.iter().enumerate() {
        if u < w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

/// The next trial's parameters given the trials so far.
pub fn suggest(space: &Space, history: &[Observation], goal: Goal, rng: &mut impl Rng) -> Params {
    if history.len() < STARTUP_TRIALS {
        return space.sample(rng);
    }
    let mut ranked: Vec<(usize, &Observation)> = history.iter().enumerate().collect();
    ranked.sort_by(|(_, a), (_, b)| match (a.value, b.value) {
        (Some(x), Some(y)) if goal.better(x, y) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) if goal.better(y, x) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    });
    let good_count = gamma(ranked.len()).min(ranked.iter().filter(|o| o.1.value.is_some()).count());
    let (good, rest) = ranked.split_at_mut(good_count.max(1));
    // Back in trial order, which the weights of older observations follow.
    good.sort_by_key(|&(trial, _)| trial);
    rest.sort_by_key(|&(trial, _)| trial);
    space
        .params
        .iter()
        .map(|(key, domain)| {
            let coordinates = |set: &[(usize, &Observation)]| -> Vec<f64> {
                set.iter()
                    .filter_map(|(_, o)| o.params.get(key).and_then(|v| domain.to_internal(v)))
                    .collect()
            };
            let x = suggest_one(domain, &coordinates(good), &coordinates(rest), rng);
            (key.clone(), domain.from_internal(x))
        })
        .collect()
}

/// The best of [`CANDIDATES`] draws from the good trials' density, by `log l - log g`.
fn suggest_one(domain: &Domain, good: &[f64], rest: &[f64], rng: &mut impl Rng) -> f64 {
    let (low, high) = domain.internal_range();
    if let Domain::Values(values) = domain {
        let l = Categorical::new(values.len(), good);
        let g = Categorical::new(values.len(), rest);
        return best_candidate(|rng| l.sample(rng), |x| l.log_p(x) - g.log_p(x), rng);
    }
    if low == high {
        return low;
    }
    let l = Parzen::new(good, low, high);
    let g = Parzen::new(rest, low, high);
    best_candidate(|rng| l.sample(rng), |x| l.log_p(x) - g.log_p(x), rng)
}

fn best_candidate<R: Rng>(
    mut draw: impl FnMut(&mut R) -> f64,
    score: impl Fn(f64) -> f64,
    rng: &mut R,
) -> f64 {
    let mut best = (f64::NEG_INFINITY, f64::NAN);
    for _ in 0..CANDIDATES {
        let x = draw(rng);
        let s = score(x);
        if s > best.0 || best.1.is_nan() {
            best = (s, x);
        }
    }
    best.1
}

/// A mixture of Gaussians truncated to `[low, high]`: one per observation and a prior
/// centred on the range with the range as its width, weighted by [`mixture_weights`].
struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    weights: Vec<f64>,
    low: f64,
    high: f64,
}

impl Parzen {
    fn new(observations: &[f64], low: f64, high: f64) -> Self {
        let span = high - low;
        let mut mus: Vec<f64> = observations.to_vec();
        mus.push((low + high) / 2.0);
        let mut order: Vec<usize> = (0..mus.len()).collect();
        order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
        // Optuna's bandwidth: the larger gap to a sorted neighbour (the bounds at the ends),
        // clipped to [span / min(100, 1 + n), span]; the prior keeps the full span.
        let min_sigma = span / (100.0f64).min(1.0 + mus.len() as f64);
        let mut sigmas = vec![span; mus.len()];
        for (rank, &i) in order.iter().enumerate() {
            let left = if rank == 0 { low } else { mus[order[rank - 1]] };
            let right = if rank + 1 == order.len() {
                high
            } else {
                mus[order[rank + 1]]
            };
            sigmas[i] = (mus[i] - left).max(right - mus[i]).clamp(min_sigma, span);
        }
        let prior = mus.len() - 1;
        sigmas[prior] = span;
        Parzen {
            mus,
            sigmas,
            weights: mixture_weights(observations.len()),
            low,
            high,
        }
    }

    fn sample(&self, rng: &mut impl Rng) -> f64 {
        let i = pick(&self.weights, rng);
        let normal = Normal::new(self.mus[i], self.sigmas[i]).expect("sigma is positive");
        for _ in 0..100 {
            let x = normal.sample(rng);
            if (self.low..=self.high).contains(&x) {
                return x;
            }
        }
        self.mus[i].clamp(self.low, self.high)
    }

    fn log_p(&self, x: f64) -> f64 {
        let p: f64 = self
            .mus
            .iter()
            .zip(&self.sigmas)
            .zip(&self.weights)
            .map(|((&mu, &sigma), &weight)| {
                let mass =
                    normal_cdf((self.high - mu) / sigma) - normal_cdf((self.low - mu) / sigma);
                let z = (x - mu) / sigma;
                weight * (-0.5 * z * z).exp()
                    / (sigma * (2.0 * std::f64::consts::PI).sqrt() * mass.max(1e-12))
            })
            .sum();
        p.max(1e-300).ln()
    }
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2))
}

/// The mixture of Optuna's categorical kernels: each observation's puts 1 on its value and
/// `PRIOR_WEIGHT / (n + 1)` on every value (then normalised), the prior's is uniform, and the
/// kernels are weighted by [`mixture_weights`].
struct Categorical {
    p: Vec<f64>,
}

impl Categorical {
    fn new(categories: usize, observations: &[f64]) -> Self {
        let weights = mixture_weights(observations.len());
        let spread = PRIOR_WEIGHT / (observations.len() + 1) as f64;
        let kernel_total = 1.0 + spread * categories as f64;
        let prior_weight = weights[observations.len()];
        let mut p = vec![prior_weight / categories as f64; categories];
        for (&x, &weight) in observations.iter().zip(&weights) {
            let observed = (x as usize).min(categories - 1);
            let (on, off) = (
                weight * (1.0 + spread) / kernel_total,
                weight * spread / kernel_total,
            );
            for (value, share) in p.iter_mut().enumerate() {
                *share += if value == observed { on } else { off };
            }
        }
        Categorical { p }
    }

    fn sample(&self, rng: &mut impl Rng) -> f64 {
        pick(&self.p, rng) as f64
    }

    fn log_p(&self, x: f64) -> f64 {
        self.p[(x as usize).min(self.p.len() - 1)].ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// TPE on a one-dimensional bowl with its minimum at 0.7 should concentrate its
    /// suggestions near it, much more than random search does.
    #[test]
    fn suggestions_concentrate_near_the_optimum() {
        let space = Space {
            params: vec![(
                "x".into(),
                Domain::Float {
                    min: 0.0,
                    max: 1.0,
                    log: false,
                    q: None,
                },
            )],
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut history = Vec::new();
        for _ in 0..60 {
            let params = suggest(&space, &history, Goal::Minimize, &mut rng);
            let x = params["x"].as_f64().unwrap();
            history.push(Observation {
                params,
                value: Some((x - 0.7).powi(2)),
            });
        }
        let late_near = history[40..]
            .iter()
            .filter(|o| (o.params["x"].as_f64().unwrap() - 0.7).abs() < 0.1)
            .count();
        // Random search would put about 4 of 20 within 0.1 of the optimum.
        assert!(late_near >= 12, "{late_near} of 20 near the optimum");
    }

    #[test]
    fn weights_follow_optunas_default_weights() {
        assert_eq!(observation_weights(3), vec![1.0; 3]);
        assert_eq!(observation_weights(24), vec![1.0; 24]);
        assert_eq!(observation_weights(25), vec![1.0; 25]);
        // np.linspace(1 / 30, 1, 5) then 25 ones.
        let w = observation_weights(30);
        let ramp = [1.0 / 30.0, 0.275, 0.516_666_7, 0.758_333_3, 1.0];
        for (got, want) in w.iter().zip(ramp) {
            assert!((got - want).abs() < 1e-6, "{w:?}");
        }
        assert!(w[5..].iter().all(|&x| x == 1.0) && w.len() == 30);
        let m = mixture_weights(2);
        assert_eq!(m, vec![1.0 / 3.0; 3]);
    }

    /// The probabilities Optuna's categorical Parzen estimator gives (worked by hand from
    /// `_calculate_categorical_distributions` and the mixture weights).
    #[test]
    fn category_probabilities_are_optunas() {
        // One observation of value 0 out of 3: its kernel is [1.5, 0.5, 0.5] / 2.5, the
        // prior's [1/3; 3], each weighted 1/2.
        let one = Categorical::new(3, &[0.0]);
        let want = [
            0.5 * 0.6 + 0.5 / 3.0,
            0.5 * 0.2 + 0.5 / 3.0,
            0.5 * 0.2 + 0.5 / 3.0,
        ];
        for (got, want) in one.p.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{:?}", one.p);
        }
        // No observations: the prior alone.
        assert_eq!(Categorical::new(4, &[]).p, vec![0.25; 4]);
        let many = Categorical::new(2, &[1.0, 1.0, 0.0]);
        assert!((many.p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(many.p[1] > many.p[0]);
    }

    #[test]
    fn categories_that_did_well_are_proposed_more() {
        let space = Space {
            params: vec![(
                "c".into(),
                Domain::Values(vec!["a".into(), "b".into(), "c".into()]),
            )],
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut history = Vec::new();
        for _ in 0..50 {
            let params = suggest(&space, &history, Goal::Maximize, &mut rng);
            let value = if params["c"] == "b" { 1.0 } else { 0.0 };
            history.push(Observation {
                params,
                value: Some(value),
            });
        }
        let late_b = history[30..]
            .iter()
            .filter(|o| o.params["c"] == "b")
            .count();
        assert!(late_b >= 12, "{late_b} of 20 are the best category");
    }
}
