//! How much memory a run will take, estimated from its config and its dataset before anything
//! is allocated, so a config that cannot fit (`augment.copies: 1000000`, `head.hidden:
//! [100000000]`) is refused with the key to change instead of exhausting the machine.
//!
//! The estimate adds what grows with the config: the feature rows (each kept twice, as
//! extracted and as the training matrix), the head's parameters with their gradients, optimizer
//! state, checkpoint and the copies the training engine makes, the activations of a batch and
//! of the validation pass, and a fixed allowance for the backbone and its buffers (75 MB
//! measured at batch 32, rounded up).

use crate::config::{Experiment, OptimizerConfig};
use crate::error::Result;

/// The backbone, its activation buffers and the process itself.
const FIXED_BYTES: u64 = 256 << 20;
const F32: u64 = 4;

/// A run's memory, by part, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub features: u64,
    pub head: u64,
    pub activations: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        FIXED_BYTES
            .saturating_add(self.features)
            .saturating_add(self.head)
            .saturating_add(self.activations)
    }
}

/// The estimate for training `experiment` on `train_images` and `test_images` images.
pub fn estimate(
    experiment: &Experiment,
    train_images: usize,
    test_images: usize,
) -> MemoryEstimate {
    let c = &experiment.config;
    let rows = (train_images as u64)
        .saturating_mul(1 + c.augment.copies as u64)
        .saturating_add(test_images as u64);
    // Each row: its features twice (extraction, training matrix), its request and label.
    let dim = c.backbone.feature_dim();
    let features = rows.saturating_mul(2 * dim as u64 * F32 + 160);
    let widths: Vec<u64> = std::iter::once(dim)
        .chain(c.head.hidden.iter().copied())
        .map(|w| w as u64)
        .chain([2])
        .collect();
    let params = widths
        .windows(2)
        .map(|p| p[0].saturating_mul(p[1]).saturating_add(p[1]))
        .fold(0u64, u64::saturating_add);
    let optimizer_copies = match c.train.optimizer {
        OptimizerConfig::Adam { .. } => 2,
        OptimizerConfig::Rmsprop { .. } | OptimizerConfig::Sgd { .. } => 1,
    };
    // Weights, gradients, optimizer state, best weights, and the engine's two working copies.
    let head = params.saturating_mul(F32 * (4 + optimizer_copies));
    let widest_rows = (c.train.batch_size as u64).max(test_images as u64);
    let activations = widths
        .iter()
        .fold(0u64, |sum, w| sum.saturating_add(*w))
        .saturating_mul(widest_rows)
        .saturating_mul(F32 * 4);
    MemoryEstimate {
        features,
        head,
        activations,
    }
}

/// Refuses a run whose estimate is over `limit` bytes, naming the key that makes it large.
pub fn check(
    experiment: &Experiment,
    train_images: usize,
    test_images: usize,
    limit: u64,
) -> Result<()> {
    let e = estimate(experiment, train_images, test_images);
    if e.total() <= limit {
        return Ok(());
    }
    let key = if e.features >= e.head.max(e.activations) {
        if experiment.config.augment.copies > 0 {
            "augment.copies"
        } else {
            "data.dir"
        }
    } else if e.head >= e.activations {
        "head.hidden"
    } else {
        "train.batch_size"
    };
    Err(experiment.error(
        key,
        format!(
            "this run would need about {} (features {}, head {}, activations {}), over the memory limit of {}; make it smaller, or raise the limit with --memory-limit",
            human(e.total()),
            human(e.features),
            human(e.head),
            human(e.activations),
            human(limit)
        ),
    ))
}

/// Half of this machine's memory, or 4 GiB where it cannot be read.
pub fn default_limit() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        });
    total.map_or(4 << 30, |t| t / 2)
}

/// `4G`, `512M`, `2048K` or a plain number of bytes.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let scale: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "memory limit {text:?}: use a size such as 4G or 512M"
            ))
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("memory limit {text:?}: use a size such as 4G or 512M"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("memory limit {text:?} must be positive"));
    }
    Ok((value * scale as f64) as u64)
}

/// `1.3 GB`-style sizes for messages.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=1_048_575 => format!("{:.0} KB", b / 1e3),
        1_048_576..=1_073_741_823 => format!("{:.0} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(extra: &str) -> Experiment {
        let text = format!("data: {{dir: d, train: train, test: test}}\n{extra}");
        Experiment::parse(std::path::Path::new("x.yaml"), &text).unwrap()
    }

    #[test]
    fn the_seed_experiment_fits_easily() {
        let e = estimate(&experiment("augment: {copies: 4}\n"), 60, 12);
        assert!(e.total() < 512 << 20, "{e:?}");
    }

    #[test]
    fn a_million_copies_is_refused_naming_augment_copies() {
        let x = experiment("augment: {copies: 1000000}\n");
        let e = check(&x, 60, 12, 8 << 30).unwrap_err().to_string();
        assert!(
            e.contains("augment.copies") && e.contains("--memory-limit") && e.contains("GB"),
            "{e}"
        );
    }

    #[test]
    fn a_huge_hidden_layer_is_refused_naming_head_hidden() {
        for hidden in ["[100000000]", &format!("[{}]", vec!["4096"; 50].join(", "))] {
            let x = experiment(&format!("head: {{hidden: {hidden}}}\n"));
            let e = check(&x, 60, 12, 8 << 30).unwrap_err().to_string();
            assert!(e.contains("head.hidden"), "{e}");
        }
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").unwrap_err().contains("4G"));
        assert!(parse_size("-1G").is_err());
    }
}
