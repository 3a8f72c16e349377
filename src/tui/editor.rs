//! Opening an experiment file in the user's editor from the UI, as gitui and lazygit do: the
//! terminal leaves full-screen mode for the editor and comes back after it, and the input
//! thread stops reading keys meanwhile (they are the editor's). The editor is `$VISUAL`, else
//! `$EDITOR`, else `vi`; either may carry arguments (`code -w`).

use std::io::stdout;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};

/// How long the input thread waits for a key while holding the gate: the most an editor waits
/// to take the keyboard.
const POLL: Duration = Duration::from_millis(100);

/// Held by the input thread while it waits for an event, and by [`edit`] while the editor runs.
#[derive(Default)]
pub struct InputGate(Mutex<()>);

impl InputGate {
    /// The next terminal event, or `None` when none came within [`POLL`] (ask again).
    pub fn next_event(&self) -> std::io::Result<Option<Event>> {
        let _held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if event::poll(POLL)? {
            event::read().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Suspends the UI, runs the editor on `file` and restores the UI; then checks the file as an
/// experiment. `Err` holds what to tell the user: the editor could not run, or the file's
/// first problem.
pub fn edit(
    terminal: &mut ratatui::DefaultTerminal,
    gate: &InputGate,
    file: &Path,
) -> anyhow::Result<Result<(), String>> {
    let _keys = gate.0.lock().unwrap_or_else(PoisonError::into_inner);
    disable_raw_mode()?;
    execute!(stdout(), LeaveAlternateScreen)?;
    terminal.show_cursor()?;
    let ran = run_editor(file);
    enable_raw_mode()?;
    execute!(stdout(), EnterAlternateScreen)?;
    terminal.hide_cursor()?;
    terminal.clear()?;
    Ok(ran.and_then(|()| {
        facelab::config::Experiment::load(file)
            .map(drop)
            .map_err(|e| crate::text::clean(&e.to_string()).into_owned())
    }))
}

/// Runs the editor on `file` and waits for it.
fn run_editor(file: &Path) -> Result<(), String> {
    let setting = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_owned());
    let mut words = setting.split_whitespace();
    let program = words.next().unwrap_or("vi");
    let status = std::process::Command::new(program)
        .args(words)
        .arg(file)
        .status()
        .map_err(|e| format!("could not start the editor '{setting}': {e}; set $EDITOR"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the editor '{setting}' ended with {status}"))
    }
}
