//! The search space: each swept key's domain (a list of values, a float range, linear or
//! logarithmic, or an integer range, optionally quantised), how grid enumerates it, how a random
//! draw picks from it, and the numeric coordinates TPE models it in. A trial's parameters are a
//! map from dotted key to JSON value; their hash makes trials unique within a sweep.

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::Value;

use super::spec::{Distribution, ParamSpec};

/// A trial's parameters: dotted experiment key -> value.
pub type Params = BTreeMap<String, Value>;

/// Most combinations a grid may have; beyond this it is a random search in disguise.
pub const MAX_GRID: usize = 100_000;

/// Where one parameter's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    Values(Vec<Value>),
    Float {
        min: f64,
        max: f64,
        log: bool,
        q: Option<f64>,
    },
    Int {
        min: i64,
        max: i64,
        step: i64,
    },
}

/// The swept keys, sorted, each with its domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub params: Vec<(String, Domain)>,
}

impl Domain {
    /// The domain a parameter's spec describes, or what is wrong with it.
    pub fn from_spec(spec: &ParamSpec) -> Result<Domain, String> {
        if let Some(values) = &spec.values {
            if spec.min.is_some() || spec.max.is_some() || spec.distribution.is_some() {
                return Err("give values, or min and max, not both".into());
            }
            if values.is_empty() {
                return Err("values is empty; list at least one".into());
            }
            return Ok(Domain::Values(values.clone()));
        }
        let (Some(min), Some(max)) = (spec.min, spec.max) else {
            return Err("give values: [...] or both min and max".into());
        };
        if !(min.is_finite() && max.is_finite() && min <= max) {
            return Err(format!(
                "min {min} and max {max} are not a range (min <= max)"
            ));
        }
        let whole = |v: f64| v.fract() == 0.0 && v.abs() < 1e15;
        let distribution = spec.distribution.unwrap_or(if whole(min) && whole(max) {
            Distribution::IntUniform
        } else {
            Distribution::Uniform
        });
        if let Some(q) = spec.q {
            if !(q.is_finite() && q > 0.0) {
                return Err(format!("q {q} is not a positive step"));
            }
        }
        match distribution {
            Distribution::IntUniform => {
                let step = spec.q.unwrap_or(1.0);
                if !(whole(min) && whole(max) && whole(step)) {
                    return Err("int_uniform needs whole numbers for min, max and q".into());
                }
                Ok(Domain::Int {
                    min: min as i64,
                    max: max as i64,
                    step: step as i64,
                })
            }
            Distribution::Uniform => Ok(Domain::Float {
                min,
                max,
                log: false,
                q: spec.q,
            }),
            Distribution::LogUniform if min <= 0.0 => Err(format!(
                "log_uniform needs min > 0 (min and max are values, not exponents); got {min}"
            )),
            Distribution::LogUniform => Ok(Domain::Float {
                min,
                max,
                log: true,
                q: spec.q,
            }),
        }
    }

    /// Every value, for a grid; a float range needs a step `q` to be enumerated.
    pub fn grid_values(&self) -> Result<Vec<Value>, String> {
        match self {
            Domain::Values(values) => Ok(values.clone()),
            Domain::Int { min, max, step } => {
                let count = ((max - min) / step + 1) as usize;
                if count > MAX_GRID {
                    return Err(format!("{count} values are too many for a grid"));
                }
                Ok((0..count as i64)
                    .map(|i| Value::from(min + i * step))
                    .collect())
            }
            Domain::Float { q: None, .. } => Err(
                "a grid needs a list: give values: [...], or q to step through the range".into(),
            ),
            Domain::Float {
                min,
                max,
                q: Some(q),
                ..
            } => {
                let count = ((max - min) / q + 1e-9).floor() as usize + 1;
                if count > MAX_GRID {
                    return Err(format!("{count} values are too many for a grid"));
                }
                Ok((0..count).map(|i| float(min + i as f64 * q)).collect())
            }
        }
    }

    /// A value drawn uniformly from the domain (in the logarithm for a log range).
    pub fn sample(&self, rng: &mut impl Rng) -> Value {
        let (low, high) = self.internal_range();
        match self {
            Domain::Values(values) => values[rng.gen_range(0..values.len())].clone(),
            _ if low == high => self.from_internal(low),
            _ => self.from_internal(rng.gen_range(low..high)),
        }
    }

    /// The coordinate TPE models: a value's index, the float (or its logarithm), the integer.
    pub fn to_internal(&self, value: &Value) -> Option<f64> {
        match self {
            Domain::Values(values) => values.iter().position(|v| v == value).map(|i| i as f64),
            Domain::Float { log: true, .. } => value.as_f64().map(f64::ln),
            Domain::Float { .. } | Domain::Int { .. } => value.as_f64(),
        }
    }

    /// The value at a coordinate, rounded to the domain's step and kept inside it.
    pub fn from_internal(&self, x: f64) -> Value {
        match self {
            Domain::Values(values) => {
                values[(x.round().max(0.0) as usize).min(values.len() - 1)].clone()
            }
            Domain::Float { min, max, log, q } => {
                let v = if *log { x.exp() } else { x };
                let v = match q {
                    Some(q) => min + ((v - min) / q).round() * q,
                    None => v,
                };
                float(v.clamp(*min, *max))
            }
            Domain::Int { min, max, step } => {
                let steps = ((x - *min as f64) / *step as f64).round() as i64;
                Value::from((min + steps * step).clamp(*min, *max))
            }
        }
    }

    /// The coordinates' range: `[0, n - 1]` for values, the (log) bounds for ranges.
    pub fn internal_range(&self) -> (f64, f64) {
        match self {
            Domain::Values(values) => (0.0, (values.len() - 1) as f64),
            Domain::Float { min, max, log, .. } if *log => (min.ln(), max.ln()),
            Domain::Float { min, max, .. } => (*min, *max),
            Domain::Int { min, max, .. } => (*min as f64, *max as f64),
        }
    }

    pub fn is_categorical(&self) -> bool {
        matches!(self, Domain::Values(_))
    }
}

/// A float as JSON, without the noise of binary rounding (0.30000000000000004 -> 0.3).
fn float(v: f64) -> Value {
    let short: f64 = format!("{v:.12e}").parse().unwrap_or(v);
    serde_json::Number::from_f64(short).map_or(Value::Null, Value::Number)
}

impl Space {
    /// How many grid combinations there are, or why the space cannot be a grid.
    pub fn grid_size(&self) -> Result<usize, (String, String)> {
        let mut size = 1usize;
        for (key, domain) in &self.params {
            let n = domain.grid_values().map_err(|m| (key.clone(), m))?.len();
            size = size.saturating_mul(n);
            if size > MAX_GRID {
                return Err((
                    key.clone(),
                    format!(
                        "the grid has more than {MAX_GRID} combinations; use method: random or tpe"
                    ),
                ));
            }
        }
        Ok(size)
    }

    /// The grid's `index`-th combination, the last key changing fastest.
    pub fn grid_point(&self, mut index: usize) -> Params {
        let mut params = Params::new();
        for (key, domain) in self.params.iter().rev() {
            let values = domain.grid_values().expect("grid_size checked the grid");
            params.insert(key.clone(), values[index % values.len()].clone());
            index /= values.len();
        }
        params
    }

    /// One random draw of every parameter.
    pub fn sample(&self, rng: &mut impl Rng) -> Params {
        self.params
            .iter()
            .map(|(key, domain)| (key.clone(), domain.sample(rng)))
            .collect()
    }
}

/// A short, stable hash of a trial's parameters: equal parameters, equal hash.
pub fn params_hash(params: &Params) -> String {
    let text = serde_json::to_string(params).expect("JSON values serialise");
    blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn spec(yaml: &str) -> ParamSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn domains_are_read_from_their_specs() {
        assert_eq!(
            Domain::from_spec(&spec("{min: 1, max: 5}")).unwrap(),
            Domain::Int {
                min: 1,
                max: 5,
                step: 1
            }
        );
        let log = Domain::from_spec(&spec("{min: 0.0001, max: 0.1, distribution: log_uniform}"));
        assert!(matches!(log, Ok(Domain::Float { log: true, .. })));
        for (bad, why) in [
            ("{min: 0, max: 1, distribution: log_uniform}", "min > 0"),
            ("{values: []}", "empty"),
            ("{min: 2.0, max: 1.0}", "not a range"),
            ("{max: 1.0}", "both min and max"),
            ("{values: [1], min: 0}", "not both"),
        ] {
            let e = Domain::from_spec(&spec(bad)).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn draws_stay_inside_their_domain_and_follow_the_step() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let log =
            Domain::from_spec(&spec("{min: 0.0001, max: 0.1, distribution: log_uniform}")).unwrap();
        let draws: Vec<f64> = (0..2000)
            .map(|_| log.sample(&mut rng).as_f64().unwrap())
            .collect();
        assert!(draws.iter().all(|v| (0.0001..=0.1).contains(v)));
        // Uniform in the logarithm: about a third of the draws in each decade.
        let low_decade = draws.iter().filter(|&&v| v < 0.001).count();
        assert!((550..780).contains(&low_decade), "{low_decade}");
        let stepped = Domain::from_spec(&spec("{min: 0.0, max: 0.5, q: 0.1}")).unwrap();
        for _ in 0..100 {
            let v = stepped.sample(&mut rng).as_f64().unwrap();
            assert!(((v * 10.0).round() - v * 10.0).abs() < 1e-9, "{v}");
        }
        assert_eq!(stepped.grid_values().unwrap().len(), 6);
    }

    #[test]
    fn the_grid_enumerates_every_combination_once() {
        let space = Space {
            params: vec![
                (
                    "a".into(),
                    Domain::Values(vec![1.into(), 2.into(), 3.into()]),
                ),
                (
                    "b".into(),
                    Domain::Int {
                        min: 0,
                        max: 1,
                        step: 1,
                    },
                ),
            ],
        };
        assert_eq!(space.grid_size().unwrap(), 6);
        let hashes: std::collections::BTreeSet<String> =
            (0..6).map(|i| params_hash(&space.grid_point(i))).collect();
        assert_eq!(hashes.len(), 6);
        assert_eq!(space.grid_point(1)["b"], Value::from(1));
        let continuous = Space {
            params: vec![(
                "lr".into(),
                Domain::Float {
                    min: 0.1,
                    max: 1.0,
                    log: false,
                    q: None,
                },
            )],
        };
        assert_eq!(continuous.grid_size().unwrap_err().0, "lr");
    }
}
