//! Trained heads kept in the store (`head.safetensors` and `head.json` of a run), so a run
//! trained on one machine can predict on any machine that reaches a shared store. A dense
//! [1024, 512] head over 40 people is 7.4 MB; a centroid head of 40 people 6.8 MB.

use super::db::args;
use super::RunStore;
use crate::error::Result;

/// A head as its run's folder holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredHead {
    pub safetensors: Vec<u8>,
    pub meta_json: String,
}

impl RunStore {
    /// Keeps (or replaces) a run's head.
    pub fn put_head(&self, run_id: &str, head: &StoredHead) -> Result<()> {
        self.exec(
            "INSERT INTO heads (run_id, safetensors, meta_json) VALUES (?1, ?2, ?3)
             ON CONFLICT (run_id) DO UPDATE SET safetensors = excluded.safetensors, meta_json = excluded.meta_json",
            args![run_id, head.safetensors.clone(), &head.meta_json],
        )?;
        Ok(())
    }

    /// A run's head, if the store keeps it.
    pub fn head(&self, run_id: &str) -> Result<Option<StoredHead>> {
        let rows = self.rows(
            "SELECT safetensors, meta_json FROM heads WHERE run_id = ?1",
            args![run_id],
        )?;
        Ok(rows.first().map(|r| StoredHead {
            safetensors: r.blob(0),
            meta_json: r.text(1),
        }))
    }
}
