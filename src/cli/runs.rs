//! `facelab runs`, `facelab show RUN` and `facelab rm RUN`: the run store from the terminal.

use std::process::ExitCode;

use facelab::model;
use facelab::run::open_store;
use facelab::store::RunRecord;
use serde_json::json;

use super::train::format_epoch;
use super::Context;
use crate::text::short;

/// Columns `facelab runs` shows and can sort by.
pub const COLUMNS: [&str; 9] = [
    "id",
    "experiment",
    "status",
    "started",
    "epochs",
    "val_accuracy",
    "val_loss",
    "test_accuracy",
    "duration",
];

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

pub fn list(
    ctx: &Context,
    sort: &str,
    descending: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    if !COLUMNS.contains(&sort) {
        anyhow::bail!("cannot sort by '{sort}'; columns: {}", COLUMNS.join(", "));
    }
    let store = open_store(&ctx.workspace)?;
    let mut runs = store.runs()?;
    runs.sort_by(|a, b| {
        let order = cell(a, sort)
            .partial_cmp(&cell(b, sort))
            .unwrap_or(std::cmp::Ordering::Equal);
        if descending {
            order.reverse()
        } else {
            order
        }
    });
    match format {
        Format::Json => {
            let rows: Vec<_> = runs.iter().map(run_json).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(COLUMNS)?;
            for r in &runs {
                w.write_record(COLUMNS.map(|c| cell(r, c).to_string()))?;
            }
            w.flush()?;
        }
        Format::Table => print_table(&runs),
    }
    Ok(ExitCode::SUCCESS)
}

fn run_json(r: &RunRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("a run serialises");
    v["duration_seconds"] = json!(r.duration_seconds());
    v
}

/// A sortable, printable cell: numbers compare as numbers, missing values first.
#[derive(PartialEq, PartialOrd)]
enum Cell {
    Missing,
    Number(f64),
    Text(String),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Cell::Missing => Ok(()),
            Cell::Number(n) if n.fract() == 0.0 => write!(f, "{n}"),
            Cell::Number(n) => write!(f, "{n:.4}"),
            Cell::Text(t) => f.write_str(t),
        }
    }
}

fn cell(r: &RunRecord, column: &str) -> Cell {
    let number = |v: Option<f64>| v.map_or(Cell::Missing, Cell::Number);
    match column {
        "id" => Cell::Text(r.id.clone()),
        "experiment" => Cell::Text(r.experiment.clone()),
        "status" => Cell::Text(r.status.as_str().into()),
        "started" => Cell::Text(r.started_at.clone()),
        "epochs" => Cell::Number(r.epochs as f64),
        "val_accuracy" => number(r.best_val_accuracy),
        "val_loss" => number(r.val_loss),
        "test_accuracy" => number(r.test_accuracy),
        "duration" => number(r.duration_seconds()),
        _ => Cell::Missing,
    }
}

fn print_table(runs: &[RunRecord]) {
    if runs.is_empty() {
        println!("No runs yet. Train one: facelab train experiments/seed.yaml");
        return;
    }
    println!(
        "{:<8}  {:<16}  {:<11}  {:<19}  {:>6}  {:>7}  {:>8}  {:>8}  {:>8}",
        "id",
        "experiment",
        "status",
        "started",
        "epochs",
        "val_acc",
        "val_loss",
        "test_acc",
        "duration"
    );
    for r in runs {
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
        println!(
            "{:<8}  {:<16}  {:<11}  {:<19}  {:>6}  {:>7}  {:>8}  {:>8}  {:>8}",
            r.id,
            short(&r.experiment, 16),
            r.status.as_str(),
            r.started_at
                .get(..19)
                .unwrap_or(&r.started_at)
                .replace('T', " "),
            r.epochs,
            f(r.best_val_accuracy),
            f(r.val_loss),
            f(r.test_accuracy),
            r.duration_seconds()
                .map_or("-".into(), |s| format!("{s:.1}s")),
        );
    }
}

pub fn show(ctx: &Context, id: &str) -> anyhow::Result<ExitCode> {
    let store = open_store(&ctx.workspace)?;
    let run = store.run(id)?;
    println!(
        "run {}  experiment {}  status {}",
        run.id,
        run.experiment,
        run.status.as_str()
    );
    println!(
        "started {}  ended {}",
        run.started_at,
        run.ended_at.as_deref().unwrap_or("-")
    );
    if let Some(acc) = run.test_accuracy {
        println!("test accuracy {acc:.4}");
    }
    if let Some(e) = run.best_epoch {
        println!("best epoch {e}");
    }
    if let Some(err) = &run.error {
        println!("error: {err}");
    }
    println!("\nepochs:");
    for m in store.epochs(&run.id)? {
        println!("  {:>3}  {}", m.epoch, format_epoch(&m));
    }
    if let Some(c) = store.confusion(&run.id)? {
        let width = c
            .labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 16);
        println!("\nconfusion matrix on the test set (rows: actual, columns: predicted):");
        print!("  {:width$}", "");
        for l in &c.labels {
            print!("  {:>width$}", short(l, width));
        }
        println!();
        for (label, row) in c.labels.iter().zip(&c.counts) {
            print!("  {:width$}", short(label, width));
            for n in row {
                print!("  {n:>width$}");
            }
            println!();
        }
        println!("\n  {:width$}  precision  recall", "class");
        for ((label, p), r) in c.labels.iter().zip(&c.precision).zip(&c.recall) {
            let f = |v: &Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
            println!("  {:width$}  {:>9}  {:>6}", short(label, width), f(p), f(r));
        }
    }
    println!("\nconfig:\n{}", run.config_yaml.trim_end());
    Ok(ExitCode::SUCCESS)
}

pub fn remove(ctx: &Context, id: &str) -> anyhow::Result<ExitCode> {
    let store = open_store(&ctx.workspace)?;
    let run = store.run(id)?;
    store.delete_run(&run.id)?;
    let dir = model::run_dir(&ctx.workspace.models_dir(), &run.id);
    if dir.is_dir() {
        std::fs::remove_dir_all(&dir)?;
    }
    println!("removed run {}", run.id);
    Ok(ExitCode::SUCCESS)
}
