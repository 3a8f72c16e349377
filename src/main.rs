//! The facelab binary: parses the command line, runs the command through the library, prints
//! the error chain once and sets the exit code.

mod cli;
mod tui;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A bad experiment file is a usage error, like a bad flag.
            match e.downcast_ref::<facelab::Error>() {
                Some(facelab::Error::Config { .. }) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
