//! The facelab binary: parses the command line, runs the command through the library, prints
//! the error chain once and sets the exit code.

mod cli;
mod text;
mod tui;

use std::process::ExitCode;

fn main() -> ExitCode {
    restore_default_sigpipe();
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", text::clean_lines(&format!("{e:#}")));
            // A bad experiment file is a usage error, like a bad flag.
            match e.downcast_ref::<facelab::Error>() {
                Some(facelab::Error::Config { .. }) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Rust ignores SIGPIPE, so `facelab runs --json | head` would fail with a "broken pipe" panic;
/// like other command-line tools, end quietly when the reader goes away.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
