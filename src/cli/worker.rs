//! `facelab sweep FILE --queue-only` (queue a sweep's trials in the store and return) and
//! `facelab worker` (claim and run queued trials until told to stop): one line per trial on
//! stdout, refusals and lost claims on stderr.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use facelab::store::{redacted_url, Claim};
use facelab::sweep::space::Params;
use facelab::sweep::{Sweep, SweepEvents, TrialOutcome};
use facelab::worker::{self, WorkerEvents, WorkerOptions};

use super::progress::Bar;
use super::Context;

/// Queues the sweep a file describes for workers.
pub fn enqueue(ctx: &Context, path: &Path) -> anyhow::Result<ExitCode> {
    let sweep = Sweep::load(path)?;
    let backbones = ctx.backbones();
    let queued = worker::enqueue(
        &ctx.workspace,
        &sweep,
        &backbones,
        ctx.memory_limit,
        &Bar::new(),
    )?;
    if let Some(at) = queued.exhausted_at {
        println!(
            "the search space has only {at} distinct parameter sets: queued {at} of {} trials",
            queued.total
        );
    }
    println!(
        "sweep {}: {} trials queued ({} new) in {}; start workers with: facelab worker --sweep {}",
        queued.sweep_id,
        queued.exhausted_at.unwrap_or(queued.total),
        queued.added,
        redacted_url(&ctx.workspace.store_location()),
        queued.sweep_id
    );
    Ok(ExitCode::SUCCESS)
}

/// `facelab worker`'s options.
#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Only this sweep (an id or prefix; `facelab sweeps` lists them).
    #[arg(long)]
    sweep: Option<String>,
    /// Stop after running this many trials.
    #[arg(long, value_name = "N")]
    max_trials: Option<usize>,
    /// Stop after this many seconds with nothing to claim and no trial running elsewhere.
    #[arg(long, value_name = "SECONDS", value_parser = super::seconds)]
    idle_exit: Option<f64>,
    /// Seconds a running trial's heartbeat may be silent before another worker takes it over
    /// (its worker presumed dead); heartbeats are sent every quarter of this.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = super::seconds)]
    grace: f64,
}

/// Claims and runs trials until the queue is idle for `--idle-exit` or `--max-trials` ran.
pub fn run(ctx: &Context, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let backbones = ctx.backbones();
    let grace = Duration::from_secs_f64(args.grace);
    let options = WorkerOptions {
        sweep: args.sweep,
        max_trials: args.max_trials,
        idle_exit: args.idle_exit.map(Duration::from_secs_f64),
        grace,
        poll: Duration::from_secs(1).min(grace / 4),
    };
    eprintln!(
        "worker {} on {} (grace {:.0} s)",
        worker::worker_name(),
        redacted_url(&ctx.workspace.store_location()),
        args.grace
    );
    // SIGINT and SIGTERM (what SLURM and Kubernetes send before SIGKILL) stop the worker at
    // the next training step: its trial ends interrupted and goes back to the queue at once,
    // rather than after the grace period.
    let stop = super::stop_on_signal()?;
    let outcome = worker::run_worker(
        &ctx.workspace,
        &backbones,
        ctx.memory_limit,
        &options,
        &Printer { stop },
    )?;
    if outcome.cancelled {
        println!(
            "worker {}: stopped by a signal after {} trials; a trial it was running went back to the queue",
            outcome.worker, outcome.ran
        );
    } else {
        println!("worker {}: {} trials run", outcome.worker, outcome.ran);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what a worker does, and says when a signal asked it to stop.
struct Printer {
    stop: &'static AtomicBool,
}

impl SweepEvents for Printer {
    fn cancelled(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl WorkerEvents for Printer {
    fn refused(&self, sweep_id: &str, why: &str) {
        eprintln!("refusing sweep {sweep_id}: {why}");
    }

    fn claimed(&self, claim: &Claim, _params: &Params) {
        if let Some(old) = &claim.reclaimed_run {
            eprintln!(
                "sweep {} trial {}: taken over from a worker that stopped heartbeating (its run {old} deleted); attempt {}",
                claim.sweep_id, claim.number, claim.attempts
            );
        }
    }

    fn finished(&self, sweep_id: &str, metric: &str, trial: &TrialOutcome) {
        println!(
            "sweep {sweep_id} {}",
            super::sweep::trial_line(metric, trial)
        );
    }

    fn lost(&self, claim: &Claim) {
        eprintln!(
            "sweep {} trial {}: another worker took this trial over (this worker's heartbeat was late); left to it",
            claim.sweep_id, claim.number
        );
    }
}
