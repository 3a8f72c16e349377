//! The one HTTP client set-up for everything facelab downloads (weights, the face cascade):
//! bounded waits, so a dead network gives an error instead of a hang.

use std::time::Duration;

/// An agent that gives up on connecting after 10 s and on a silent connection after 30 s
/// (per read, so a slow but steady download of large weights still completes).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_per_read(Some(Duration::from_secs(30)))
        .build()
        .into()
}
