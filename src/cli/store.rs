//! `facelab store copy --from A --to B`: a history moved between stores, table by table, with
//! what was read and what was added.

use std::process::ExitCode;

use facelab::store::{copy_store, RunStore};

pub fn copy(from: &str, to: &str) -> anyhow::Result<ExitCode> {
    if !facelab::store::is_server_url(from) && !std::path::Path::new(from).is_file() {
        anyhow::bail!(
            "--from {from}: no such store file; give a facelab.db path or a postgres:// URL"
        );
    }
    let source = RunStore::open_location(from)?;
    let target = RunStore::open_location(to)?;
    let report = copy_store(&source, &target)?;
    for (table, read, added) in &report.tables {
        println!("{table:<10} {read:>7} read  {added:>7} added");
    }
    println!(
        "{} run(s) added; rows already in the target were left as they were",
        report.runs_added()
    );
    Ok(ExitCode::SUCCESS)
}
