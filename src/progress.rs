//! How long-running library work reports progress without knowing who draws it: the CLI turns
//! these calls into progress bars, tests and quiet callers pass [`NoProgress`].

/// Receives progress of one task at a time.
pub trait Progress: Sync {
    /// A task starts; `total` is its size in `unit`s when known.
    fn start(&self, task: &str, total: Option<u64>);
    /// `done` more units are finished.
    fn advance(&self, done: u64);
    /// The task is over, successfully or not.
    fn finish(&self);
}

/// Discards all progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _task: &str, _total: Option<u64>) {}
    fn advance(&self, _done: u64) {}
    fn finish(&self) {}
}
