//! Benchmarks the CLI exposes as `facelab bench`: each reports a median over timed runs after
//! warm-up, so they can be compared with the ONNX Runtime anchor measured in the same session.

pub mod store;

use std::time::Instant;

use crate::backbone::MobileNet;
use crate::image_prep::INPUT_SIZE;

/// Backbone throughput at one batch size.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneBench {
    pub batch: usize,
    pub ms_per_image: f64,
    /// The process's peak resident memory so far (VmHWM), where the OS reports it.
    pub peak_rss_mb: Option<f64>,
}

const WARMUP_RUNS: usize = 3;

/// Times `backbone` on random inputs: median of `runs` timed batches after warm-up.
pub fn backbone(backbone: &MobileNet, batch: usize, runs: usize) -> BackboneBench {
    let inputs: Vec<Vec<f32>> = (0..batch)
        .map(|i| pseudo_normal(3 * INPUT_SIZE * INPUT_SIZE, i as u64))
        .collect();
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let seconds = median_seconds(runs, || {
        std::hint::black_box(backbone.features_chw(&refs));
    });
    BackboneBench {
        batch,
        ms_per_image: 1000.0 * seconds / batch as f64,
        peak_rss_mb: peak_rss_mb(),
    }
}

/// The median seconds of `runs` calls of `work` (at least one), after warm-up calls.
fn median_seconds(runs: usize, mut work: impl FnMut()) -> f64 {
    for _ in 0..WARMUP_RUNS {
        work();
    }
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64()
        })
        .collect();
    median(&mut times)
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Roughly standard-normal values from a fixed seed (sum of uniforms), like the anchor's input.
fn pseudo_normal(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| (0..4).map(|_| uniform()).sum::<f32>() * 1.732 - 3.464)
        .collect()
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Milliseconds per 150x150 chip of dlib's face ResNet at a batch size: the median of `runs`
/// timed batches of made-up chips after warm-up.
pub fn face_chips(net: &crate::backbone::dlib::FaceResNet, batch: usize, runs: usize) -> f64 {
    use crate::backbone::dlib::CHIP_SIZE;
    let chips: Vec<Vec<u8>> = (0..batch)
        .map(|i| {
            pseudo_normal(CHIP_SIZE * CHIP_SIZE * 3, i as u64)
                .iter()
                .map(|v| (128.0 + 40.0 * v).clamp(0.0, 255.0) as u8)
                .collect()
        })
        .collect();
    let refs: Vec<&[u8]> = chips.iter().map(Vec::as_slice).collect();
    let seconds = median_seconds(runs, || {
        std::hint::black_box(net.descriptors(&refs));
    });
    1000.0 * seconds / batch as f64
}

/// Live recognition's speed over a folder of frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecognizeBench {
    pub frames: usize,
    pub faces: usize,
    /// Medians over the timed frames, milliseconds.
    pub ms_per_frame: f64,
    pub ms_detect: f64,
    pub ms_features: f64,
    pub ms_naming: f64,
}

/// Times `recognizer` on `frames` for `rounds` passes after one warm-up pass; each frame's
/// time and phases are medians over every timed frame.
pub fn recognize(
    recognizer: &mut crate::recognize::Recognizer,
    frames: &[image::RgbImage],
    rounds: usize,
) -> RecognizeBench {
    for frame in frames {
        recognizer.recognize(frame, "warm-up");
    }
    let mut totals = Vec::new();
    let mut phases = [Vec::new(), Vec::new(), Vec::new()];
    let mut faces = 0;
    for _ in 0..rounds.max(1) {
        for frame in frames {
            let start = Instant::now();
            faces += recognizer.recognize(frame, "bench").faces.len();
            totals.push(start.elapsed().as_secs_f64() * 1000.0);
            let t = recognizer.timing;
            for (phase, seconds) in phases.iter_mut().zip([t.detect, t.features, t.naming]) {
                phase.push(seconds * 1000.0);
            }
        }
    }
    let [detect, features, naming] = phases.map(|mut p| median(&mut p));
    RecognizeBench {
        frames: totals.len(),
        faces,
        ms_per_frame: median(&mut totals),
        ms_detect: detect,
        ms_features: features,
        ms_naming: naming,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn pseudo_normal_is_centred_and_deterministic() {
        let a = pseudo_normal(10_000, 1);
        assert_eq!(a, pseudo_normal(10_000, 1));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.05, "mean {mean}");
    }
}

/// Head training speed: one step is forward, backward and the update.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainBench {
    pub ms_per_step: f64,
    /// The parts of a step (medians): the forward and backward passes on dfdx's tape (with
    /// facelab's dense op; backward stops at the activations' gradients), and the update, which
    /// makes the weight gradients a panel at a time and applies them.
    pub ms_forward: f64,
    pub ms_backward: f64,
    pub ms_update: f64,
    pub parameters: usize,
}

/// Times training steps of a head over random features with RMSprop (Keras defaults).
pub fn train_step(hidden: &[usize], classes: usize, batch: usize, steps: usize) -> TrainBench {
    use crate::config::OptimizerConfig;
    use crate::train::head::{HeadParams, HeadRunner, HeadTrainer};
    use crate::train::optim::Optimizer;

    crate::train::flush_denormals_on_all_threads();
    let dim = crate::backbone::FEATURE_DIM;
    let params = HeadParams::init(dim, hidden, classes, 1);
    let parameters = params
        .layers
        .iter()
        .map(|l| l.weight.len() + l.bias.len())
        .sum();
    let runner = HeadRunner::new(1, 0.0);
    let mut trainer = runner.trainer(params);
    let mut optimizer = Optimizer::new(&OptimizerConfig::default(), &trainer.parameter_lengths());
    let x = pseudo_normal(batch * dim, 7);
    let labels: Vec<usize> = (0..batch).map(|i| i % classes).collect();
    let mut phases: [Vec<f64>; 4] = Default::default();
    for step in 0..WARMUP_RUNS + steps.max(1) {
        let t0 = Instant::now();
        let forward = trainer.forward(&x, &labels);
        let t1 = Instant::now();
        let batch = HeadTrainer::backward(forward);
        let t2 = Instant::now();
        trainer.update(batch, &mut optimizer);
        let t3 = Instant::now();
        if step >= WARMUP_RUNS {
            for (phase, (a, b)) in phases
                .iter_mut()
                .zip([(t0, t1), (t1, t2), (t2, t3), (t0, t3)])
            {
                phase.push((b - a).as_secs_f64() * 1000.0);
            }
        }
    }
    let [mut forward, mut backward, mut update, mut total] = phases;
    TrainBench {
        ms_per_step: median(&mut total),
        ms_forward: median(&mut forward),
        ms_backward: median(&mut backward),
        ms_update: median(&mut update),
        parameters,
    }
}

/// Face detection speed: median milliseconds per image over `images`, on this thread alone.
pub fn detect(
    cascade: &crate::capture::cascade::Cascade,
    images: &[image::GrayImage],
    params: &crate::capture::cascade::DetectParams,
    rounds: usize,
) -> f64 {
    for image in images.iter().take(WARMUP_RUNS) {
        std::hint::black_box(cascade.detect(image, params));
    }
    let mut times: Vec<f64> = (0..rounds.max(1))
        .flat_map(|_| images.iter())
        .map(|image| {
            let start = Instant::now();
            std::hint::black_box(cascade.detect(image, params));
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    median(&mut times)
}

/// A fresh workspace for timing `experiment` from an empty feature cache and run store: it holds
/// `experiments/<file name>`, the experiment with its data folder made absolute (so the images
/// are read where they are). The folder is removed when the returned guard drops.
pub fn cold_workspace(
    source_root: &std::path::Path,
    experiment: &crate::config::Experiment,
) -> crate::error::Result<(tempfile::TempDir, std::path::PathBuf)> {
    use crate::error::Error;
    let dir = tempfile::Builder::new()
        .prefix("facelab-bench-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut moved = experiment.clone();
    moved.config.data.dir = std::path::absolute(source_root.join(&experiment.config.data.dir))
        .map_err(|e| Error::io(source_root, e))?;
    let experiments = dir.path().join("experiments");
    std::fs::create_dir_all(&experiments).map_err(|e| Error::io(&experiments, e))?;
    let file_name = experiment
        .path
        .file_name()
        .map_or_else(|| "experiment.yaml".into(), |n| n.to_owned());
    let path = experiments.join(file_name);
    crate::fsutil::write_atomically(&path, moved.resolved_yaml().as_bytes())?;
    Ok((dir, path))
}

/// Milliseconds (median over `rounds` passes) to make one augmented copy of a training image
/// as the feature extraction does: the transform of the 224x224 input square, on one thread.
/// `squares` are the images already at the input size.
pub fn augment(
    squares: &[image::RgbImage],
    spec: &crate::config::AugmentConfig,
    rounds: usize,
) -> f64 {
    use crate::augment::Transform;
    let side = INPUT_SIZE as u32;
    let mut times = Vec::new();
    for round in 0..WARMUP_RUNS + rounds.max(1) {
        for (i, square) in squares.iter().enumerate() {
            let content = blake3::hash(&(i as u64).to_le_bytes());
            let transform = Transform::draw(spec, 42, &content, round, side, side);
            let start = Instant::now();
            let copy = transform.apply(square);
            let elapsed = start.elapsed().as_secs_f64() * 1000.0;
            std::hint::black_box(copy);
            if round >= WARMUP_RUNS {
                times.push(elapsed);
            }
        }
    }
    median(&mut times)
}

/// A fresh workspace for timing a sweep from an empty feature cache and run store: its base
/// experiment moved as [`cold_workspace`] moves one, and the sweep file beside it pointing at
/// it, with `trials` replaced when given. Returns the guard and the sweep file.
pub fn cold_sweep_workspace(
    source_root: &std::path::Path,
    sweep: &crate::sweep::Sweep,
    trials: Option<usize>,
) -> crate::error::Result<(tempfile::TempDir, std::path::PathBuf)> {
    let (dir, base) = cold_workspace(source_root, &sweep.base)?;
    let mut spec = sweep.spec.clone();
    spec.experiment = base;
    if trials.is_some() {
        spec.trials = trials;
    }
    let path = dir.path().join("experiments/sweep.yaml");
    let text = serde_norway::to_string(&spec).expect("a sweep spec serialises");
    crate::fsutil::write_atomically(&path, text.as_bytes())?;
    Ok((dir, path))
}
