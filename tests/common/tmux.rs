//! A facelab TUI in a real terminal: a detached tmux session, keys sent and the screen read
//! with capture-pane; the session is killed when dropped, a failed test's included.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::weights_path;

pub fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed (.ci/run installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A detached tmux session running facelab in `workspace`, killed when dropped (so a failed
/// assertion does not leave it running).
pub struct Session {
    name: String,
}

impl Session {
    pub fn start(name: &str, workspace: &Path) -> Session {
        Self::start_with(name, workspace, "")
    }

    /// [`Session::start`] with `env` (`NAME=value ...`) in facelab's environment.
    pub fn start_with(name: &str, workspace: &Path, env: &str) -> Session {
        let command = format!(
            "cd {} && FACELAB_WEIGHTS={} {env} {}",
            workspace.display(),
            weights_path().display(),
            assert_cmd::cargo::cargo_bin("facelab").display()
        );
        let name = format!("{name}-{}", std::process::id());
        tmux(&[
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            "140",
            "-y",
            "40",
            &command,
        ]);
        Session { name }
    }

    /// The tmux session's name, for tmux commands of the test's own.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn keys(&self, keys: &[&str]) {
        for key in keys {
            tmux(&["send-keys", "-t", &self.name, key]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Types `text` as it is (no key names).
    pub fn type_text(&self, text: &str) {
        tmux(&["send-keys", "-t", &self.name, "-l", text]);
        std::thread::sleep(Duration::from_millis(150));
    }

    pub fn wait_for(&self, needle: &str) -> String {
        wait_for(&self.name, needle)
    }

    /// Sends q and waits for facelab to end the session.
    pub fn quit(&self) {
        self.keys(&["q"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tmux(&["list-sessions"]).contains(&self.name) {
            assert!(Instant::now() < deadline, "facelab did not quit on q");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .output();
    }
}

/// Polls the pane until `needle` shows up, or fails with the last screen.
pub fn wait_for(session: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let screen = tmux(&["capture-pane", "-t", session, "-p"]);
        if screen.contains(needle) {
            return screen;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
