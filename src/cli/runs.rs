//! `facelab runs`, `facelab show RUN` and `facelab rm RUN`: the run store from the terminal.

use std::process::ExitCode;

use facelab::run::{delete_run, open_store};
use facelab::store::{sort_runs, RunColumn, RunRecord, SelectionKind};
use serde_json::json;

use super::train::format_epoch;
use super::Context;
use crate::text::{clean, clean_lines, label_width, short, LABEL_WIDTH};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl Format {
    /// The format `--json` / `--csv` ask for (clap keeps them apart), else a table.
    pub fn from_flags(json: bool, csv: bool) -> Format {
        match (json, csv) {
            (true, _) => Format::Json,
            (_, true) => Format::Csv,
            _ => Format::Table,
        }
    }
}

pub fn list(
    ctx: &Context,
    sort: RunColumn,
    reverse: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let store = open_store(&ctx.workspace)?;
    let runs = sort_runs(store.runs()?, sort, reverse);
    match format {
        Format::Json => {
            let rows: Vec<_> = runs.iter().map(run_json).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(RunColumn::ALL.map(RunColumn::name))?;
            for r in &runs {
                w.write_record(RunColumn::ALL.map(|c| c.cell(r).to_string()))?;
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

pub fn show(ctx: &Context, id: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(&ctx.workspace)?;
    let run = store.run(id)?;
    let open_set = store.open_set(&run.id)?;
    if as_json {
        let mut v = run_json(&run);
        v["config_yaml"] = json!(run.config_yaml);
        v["history"] = json!(store.epochs(&run.id)?);
        v["confusion"] = json!(store.confusion(&run.id)?);
        v["open_set"] = match &open_set {
            Some(report) => {
                let mut o = json!(report);
                o["figures"] = json!(report.figures());
                o
            }
            None => serde_json::Value::Null,
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "run {}  experiment {}  status {}",
        run.id,
        clean(&run.experiment),
        run.status.as_str()
    );
    println!(
        "started {}  ended {}",
        run.started_at,
        run.ended_at.as_deref().unwrap_or("-")
    );
    if let Some(selection) = &run.selection {
        println!("{} (selection)", selection.summary());
    }
    if let Some(acc) = run.test_accuracy {
        println!("test accuracy {acc:.4}");
    }
    if let Some(trial) = &run.sweep {
        println!("trial {} of sweep {}", trial.number, trial.sweep_id);
    }
    if let Some(e) = run.best_epoch {
        println!("best epoch {e}");
    }
    if let Some(err) = &run.error {
        println!("error: {}", clean_lines(err));
    }
    match run.selection.map(|s| s.kind) {
        Some(SelectionKind::Cv) => {
            println!("\nepochs (val_* are means over the validation folds):")
        }
        Some(SelectionKind::Val) => println!("\nepochs (val_* on the held-out validation images):"),
        None => println!("\nepochs:"),
    }
    for m in store.epochs(&run.id)? {
        println!("  {:>3}  {}", m.epoch, format_epoch(&m));
    }
    if let Some(c) = store.confusion(&run.id)? {
        let width = label_width(&c.labels, 4, LABEL_WIDTH);
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
    if let Some(report) = &open_set {
        println!("\nopen set:");
        for line in crate::text::open_set_summary(report)
            .into_iter()
            .chain(crate::text::score_histogram(report, 40))
        {
            println!("  {line}");
        }
    }
    println!("\nconfig:\n{}", clean_lines(run.config_yaml.trim_end()));
    Ok(ExitCode::SUCCESS)
}

/// Deletes the runs named; every name is resolved before anything is deleted, and more than one
/// run needs `--yes`.
pub fn remove(ctx: &Context, ids: &[String], yes: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(&ctx.workspace)?;
    let runs = ids
        .iter()
        .map(|id| store.run(id))
        .collect::<Result<Vec<_>, _>>()?;
    if runs.len() > 1 && !yes {
        let names: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        anyhow::bail!(
            "this would delete {} runs ({}); add --yes to confirm",
            runs.len(),
            names.join(", ")
        );
    }
    for run in runs {
        delete_run(&store, &ctx.workspace, &run.id)?;
        println!("removed run {}", run.id);
    }
    Ok(ExitCode::SUCCESS)
}
