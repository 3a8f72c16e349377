//! `facelab sweep FILE` (run or resume a sweep), `sweep resume|show|export ID` and `sweeps`:
//! one line per trial on stdout, a bar with trials done and the best so far on stderr.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;

use facelab::run::open_store;
use facelab::store::RunStatus;
use facelab::sweep::report::SweepReport;
use facelab::sweep::space::Params;
use facelab::sweep::spec::Goal;
use facelab::sweep::{run_sweep, Sweep, SweepEvents, TrialOutcome};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::progress::Bar;
use super::runs::Format;
use super::Context;

/// Runs (or resumes) the sweep a file describes.
pub fn run(ctx: &Context, path: &Path) -> anyhow::Result<ExitCode> {
    let sweep = Sweep::load(path)?;
    run_loaded(ctx, &sweep)
}

/// Resumes a sweep from the file it was run from; the file must still describe it.
pub fn resume(ctx: &Context, id: &str) -> anyhow::Result<ExitCode> {
    let record = open_store(&ctx.workspace)?.sweep(id)?;
    let sweep = Sweep::load(Path::new(&record.file))?;
    if sweep.resolved_yaml() != record.spec_yaml
        || sweep.base.resolved_yaml() != record.experiment_yaml
    {
        anyhow::bail!(
            "sweep {}: {} or its base experiment changed since the sweep began, so it would be a different sweep; run `facelab sweep {}` to start that one",
            record.id,
            record.file,
            record.file
        );
    }
    run_loaded(ctx, &sweep)
}

fn run_loaded(ctx: &Context, sweep: &Sweep) -> anyhow::Result<ExitCode> {
    let backbones = ctx.backbones();
    let printer = TrialPrinter {
        metric: sweep.spec.metric.name.as_str(),
        goal: sweep.spec.metric.goal(),
        bar: ProgressBar::new(sweep.total_trials() as u64).with_style(
            ProgressStyle::with_template("trials [{bar:30}] {pos}/{len} {msg}")
                .expect("static template")
                .progress_chars("=> "),
        ),
        best: Mutex::new(None),
    };
    let outcome = run_sweep(
        &ctx.workspace,
        sweep,
        &backbones,
        ctx.memory_limit,
        &Bar::new(),
        &printer,
    )?;
    printer.bar.finish_and_clear();
    if let Some(at) = outcome.exhausted_at {
        println!(
            "the search space has no more distinct parameters: stopped after {at} of {} trials",
            outcome.total
        );
    }
    let report = SweepReport::load(&open_store(&ctx.workspace)?, &outcome.sweep_id)?;
    println!(
        "sweep {}: {} of {} trials done ({} run now, {} before)",
        outcome.sweep_id,
        report.finished_trials,
        report.sweep.total_trials,
        outcome.ran.len(),
        outcome.already_done
    );
    print_selected(&report);
    Ok(ExitCode::SUCCESS)
}

/// Prints each trial as it ends and keeps the bar's "best so far".
struct TrialPrinter {
    metric: &'static str,
    goal: Goal,
    bar: ProgressBar,
    best: Mutex<Option<(f64, usize)>>,
}

impl SweepEvents for TrialPrinter {
    fn started(&self, sweep_id: &str, total: usize, done: usize) {
        self.bar.set_position(done as u64);
        self.bar.suspend(|| {
            println!("sweep {sweep_id}: {total} trials, {done} already done");
        });
    }

    fn trial_finished(&self, t: &TrialOutcome) {
        let line = trial_line(self.metric, t);
        let mut best = self.best.lock().unwrap_or_else(|p| p.into_inner());
        if let (RunStatus::Finished, Some(m)) = (t.status, t.metric) {
            if best.is_none_or(|(b, _)| self.goal.better(m, b)) {
                *best = Some((m, t.number));
            }
        }
        if let Some((b, n)) = *best {
            self.bar
                .set_message(format!("best {} {b:.4} (trial {n})", self.metric));
        }
        self.bar.suspend(|| println!("{line}"));
        if t.status != RunStatus::Interrupted {
            self.bar.inc(1);
        }
    }
}

/// One finished trial as `sweep` and `worker` print it.
pub(super) fn trial_line(metric: &str, t: &TrialOutcome) -> String {
    let figure = match (t.status, t.metric) {
        (RunStatus::Finished, Some(m)) => format!("{} {m:.4}", metric),
        _ => format!("{} -", metric),
    };
    let test = t.test_accuracy.map_or("-".into(), |a| format!("{a:.4}"));
    format!(
        "trial {:>3}  {:<11}  {figure}  (test {test})  {}  [{} epochs, run {}]{}",
        t.number,
        t.status.as_str(),
        params_text(&t.params),
        t.epochs,
        t.run_id.as_deref().unwrap_or("-"),
        t.error
            .as_deref()
            .filter(|_| t.status == RunStatus::Failed)
            .map_or(String::new(), |e| format!(": {}", crate::text::clean(e)))
    )
}

fn params_text(params: &Params) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::text::param_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_selected(report: &SweepReport) {
    match report.best_trial() {
        Some(best) => println!(
            "selected: trial {} by {} {:.4} (run {}); its test accuracy {} is reported, never used to select",
            best.number,
            report.sweep.metric,
            best.metric.unwrap_or(f64::NAN),
            best.run_id.as_deref().unwrap_or("-"),
            best.test_accuracy.map_or("-".into(), |a| format!("{a:.4}"))
        ),
        None => println!("no trial has finished yet"),
    }
}

/// `facelab sweeps`: every sweep with its progress.
pub fn list(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(&ctx.workspace)?;
    let reports: Vec<SweepReport> = store
        .sweeps()?
        .into_iter()
        .map(|s| SweepReport::load(&store, &s.id))
        .collect::<Result<_, _>>()?;
    if json {
        let rows: Vec<_> = reports
            .iter()
            .map(|r| {
                json!({
                    "id": r.sweep.id,
                    "name": r.sweep.name,
                    "status": r.status,
                    "finished_trials": r.finished_trials,
                    "total_trials": r.sweep.total_trials,
                    "method": r.sweep.method,
                    "metric": r.sweep.metric,
                    "goal": r.sweep.goal,
                    "best_trial": r.best,
                    "best_metric": r.best_trial().and_then(|t| t.metric),
                    "file": r.sweep.file,
                    "created_at": r.sweep.created_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if reports.is_empty() {
        println!("No sweeps yet. Run one: facelab sweep experiments/sweeps/recommended.yaml");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<8}  {:<20}  {:<8}  {:<6}  {:>9}  {:<12}  {:>8}",
        "id", "name", "status", "method", "trials", "metric", "best"
    );
    for r in &reports {
        println!(
            "{:<8}  {:<20}  {:<8}  {:<6}  {:>9}  {:<12}  {:>8}",
            r.sweep.id,
            crate::text::short(&crate::text::clean(&r.sweep.name), 20),
            r.status,
            r.sweep.method,
            format!("{}/{}", r.finished_trials, r.sweep.total_trials),
            r.sweep.metric,
            r.best_trial()
                .and_then(|t| t.metric)
                .map_or("-".into(), |m| format!("{m:.4}"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `facelab sweep show ID`: trials best first, one column per parameter, the selected trial
/// and the parameters' importance.
pub fn show(ctx: &Context, id: &str, format: Format) -> anyhow::Result<ExitCode> {
    let report = SweepReport::load(&open_store(&ctx.workspace)?, id)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            let mut header = vec![
                "number".to_owned(),
                "status".into(),
                report.sweep.metric.clone(),
            ];
            header.push("test_accuracy".into());
            header.push("epochs".into());
            header.push("run_id".into());
            header.extend(report.keys.iter().cloned());
            w.write_record(&header)?;
            for t in &report.trials {
                let mut row = vec![
                    t.number.to_string(),
                    t.status.clone(),
                    t.metric.map_or(String::new(), |m| m.to_string()),
                    t.test_accuracy.map_or(String::new(), |a| a.to_string()),
                    t.epochs.to_string(),
                    t.run_id.clone().unwrap_or_default(),
                ];
                row.extend(report.keys.iter().map(|k| {
                    t.params
                        .get(k)
                        .map_or(String::new(), crate::text::param_text)
                }));
                w.write_record(&row)?;
            }
            w.flush()?;
        }
        Format::Table => print_report(&report),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &SweepReport) {
    let s = &report.sweep;
    println!(
        "sweep {}  {}  {}  {} of {} trials done  method {}  selects by {} ({})",
        s.id,
        crate::text::clean(&s.name),
        report.status,
        report.finished_trials,
        s.total_trials,
        s.method,
        s.metric,
        s.goal
    );
    let width = |k: &str| k.len().clamp(8, 24);
    let mut header = format!(
        "{:>5}  {:<11}  {:>12}  {:>9}  {:>6}  {:<8}",
        "trial", "status", s.metric, "(test)", "epochs", "run"
    );
    for k in &report.keys {
        header.push_str(&format!(
            "  {:<w$}",
            crate::text::short(k, width(k)),
            w = width(k)
        ));
    }
    println!("{header}");
    for t in &report.trials {
        let mut line = format!(
            "{:>5}  {:<11}  {:>12}  {:>9}  {:>6}  {:<8}",
            t.number,
            t.status,
            t.metric.map_or("-".into(), |m| format!("{m:.4}")),
            t.test_accuracy.map_or("-".into(), |a| format!("{a:.4}")),
            t.epochs,
            t.run_id.as_deref().unwrap_or("-")
        );
        for k in &report.keys {
            let value = t.params.get(k).map_or("-".into(), crate::text::param_text);
            line.push_str(&format!(
                "  {:<w$}",
                crate::text::short(&value, width(k)),
                w = width(k)
            ));
        }
        println!("{line}");
    }
    println!(
        "(test) is each trial's test accuracy, for information: trials are selected by {} only",
        s.metric
    );
    print_selected(report);
    println!(
        "\nimportance (share of {}'s variance each parameter explains alone):",
        s.metric
    );
    for (k, v) in &report.importance {
        let bar = "#".repeat((v * 30.0).round() as usize);
        println!("  {:<24}  {v:.2}  {bar}", crate::text::short(k, 24));
    }
}

/// `facelab sweep export ID [TRIAL]`: the selected (or given) trial's resolved experiment.
pub fn export(ctx: &Context, id: &str, trial: Option<usize>) -> anyhow::Result<ExitCode> {
    let store = open_store(&ctx.workspace)?;
    let report = SweepReport::load(&store, id)?;
    let number = match trial.or(report.best) {
        Some(n) => n,
        None => anyhow::bail!(
            "sweep {}: no trial has finished yet, so none is selected; give a trial number",
            report.sweep.id
        ),
    };
    let Some(row) = report.trials.iter().find(|t| t.number == number) else {
        anyhow::bail!(
            "sweep {} has no trial {number} (it has {})",
            report.sweep.id,
            report.trials.len()
        );
    };
    let Some(run_id) = &row.run_id else {
        anyhow::bail!(
            "trial {number} of sweep {} has not run yet",
            report.sweep.id
        );
    };
    let run = store.run(run_id)?;
    print!(
        "# trial {number} of sweep {} ({}), run {}\n{}",
        report.sweep.id,
        crate::text::clean(&report.sweep.name),
        run.id,
        run.config_yaml
    );
    Ok(ExitCode::SUCCESS)
}
