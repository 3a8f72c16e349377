//! `facelab train EXPERIMENT.yaml`: one line per epoch, then the test accuracy and the run id.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use facelab::config::{Experiment, Override};
use facelab::dataset::ExperimentData;
use facelab::run::{self, RunEvents};
use facelab::train::EpochMetrics;

use super::progress::Bar;
use super::Context;

struct PrintEpochs {
    epochs: usize,
}

impl RunEvents for PrintEpochs {
    fn started(&mut self, run_id: &str, data: &ExperimentData, skipped: &[(PathBuf, String)]) {
        let usable = |images: &[facelab::dataset::LabeledImage]| {
            images
                .iter()
                .filter(|i| !skipped.iter().any(|(p, _)| *p == i.path))
                .count()
        };
        let unreadable = if skipped.is_empty() {
            String::new()
        } else {
            format!(
                " ({} unreadable images left out, listed below)",
                skipped.len()
            )
        };
        println!(
            "run {run_id}: {} people, {} training and {} test images{unreadable}",
            data.classes.len(),
            usable(&data.train),
            usable(&data.test)
        );
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        println!("epoch {}/{}: {}", m.epoch, self.epochs, format_epoch(m));
    }
}

pub fn format_epoch(m: &EpochMetrics) -> String {
    let mut line = format!("loss {:.4} accuracy {:.4}", m.loss, m.accuracy);
    if let (Some(vl), Some(va)) = (m.val_loss, m.val_accuracy) {
        line.push_str(&format!(" val_loss {vl:.4} val_accuracy {va:.4}"));
    }
    line.push_str(&format!(" ({:.2} s)", m.seconds));
    line
}

pub fn run(ctx: &Context, path: &Path, overrides: &[String]) -> anyhow::Result<ExitCode> {
    let overrides = overrides
        .iter()
        .map(|text| {
            Override::parse(text).map_err(|message| facelab::Error::Config {
                path: path.to_owned(),
                line: None,
                key: "--set".into(),
                message,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let experiment = Experiment::load_with(path, &overrides)?;
    let backbones = ctx.backbones();
    let mut events = PrintEpochs {
        epochs: experiment.config.train.epochs,
    };
    let summary = run::train_experiment(
        &ctx.workspace,
        &experiment,
        &backbones,
        ctx.memory_limit,
        &Bar::new(),
        &mut events,
    )?;
    for (path, reason) in &summary.skipped {
        eprintln!(
            "skipped: {}: {}",
            crate::text::path(path),
            crate::text::clean(reason)
        );
    }
    if summary.stopped_early {
        println!("early stopping after epoch {}", summary.epochs.len());
    }
    let best = summary
        .best_epoch
        .map_or(String::new(), |e| format!(", best epoch {e}"));
    if let Some(selection) = &summary.selection {
        println!("{} (selection)", selection.summary());
    }
    match summary.test_accuracy {
        Some(acc) => println!("test accuracy {acc:.4}{best}"),
        None => println!("no test images, so no test accuracy{best}"),
    }
    println!(
        "run {} finished; head saved in {}",
        summary.run_id,
        crate::text::path(&summary.model_dir)
    );
    println!("{}", format_phases(&summary.phases));
    Ok(ExitCode::SUCCESS)
}

/// The run's phase times as `time: dataset 0.010 s, features 1.520 s, ...`, the line `bench
/// experiment` reads back.
pub fn format_phases(phases: &run::PhaseTimes) -> String {
    let parts: Vec<String> = phases
        .named()
        .iter()
        .map(|(name, seconds)| format!("{name} {seconds:.3} s"))
        .collect();
    format!("{PHASES_PREFIX}{}", parts.join(", "))
}

/// How the phase-times line starts.
pub const PHASES_PREFIX: &str = "time: ";
