//! What lets a few threads share one forward pass: each member's share of a layer's pixels, a
//! spinning barrier between layers, and activation buffers written in disjoint ranges.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::super::kernels::Shape;
use super::forward::FUSED_MIN_HEIGHT;

/// A thread's place in a team.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    pub(crate) index: usize,
    pub(crate) count: usize,
}

impl Member {
    /// This member's contiguous share of the pixels of an activation of `shape`: whole rows
    /// where blocks run fused (they work in rows), an even split of pixels elsewhere.
    pub(super) fn share(self, shape: Shape) -> std::ops::Range<usize> {
        let (i, n) = (self.index, self.count);
        if shape.height >= FUSED_MIN_HEIGHT {
            let rows = shape.height * i / n..shape.height * (i + 1) / n;
            rows.start * shape.width..rows.end * shape.width
        } else {
            let pixels = shape.height * shape.width;
            pixels * i / n..pixels * (i + 1) / n
        }
    }
}

/// A barrier for a few threads that each hold a core: it spins, since the gaps between layers
/// are microseconds and a futex wake-up would cost as much as a small layer. Past a spin budget
/// it yields, so an oversubscribed machine is not made worse.
pub(crate) struct SpinBarrier {
    count: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    pub(crate) fn new(count: usize) -> Self {
        SpinBarrier {
            count,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    pub(crate) fn wait(&self) {
        if self.count == 1 {
            return;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.count {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

const SPINS_BEFORE_YIELD: u32 = 1 << 16;

/// An activation buffer that team members write in disjoint pixel ranges.
pub(crate) struct SharedBuffer {
    data: Box<[UnsafeCell<f32>]>,
}

// SAFETY: access goes through `slice`/`slice_mut`, whose callers keep writes disjoint and
// separate writes from other members' reads with a barrier.
unsafe impl Sync for SharedBuffer {}

impl SharedBuffer {
    pub(crate) fn new(len: usize) -> Self {
        SharedBuffer {
            data: (0..len).map(|_| UnsafeCell::new(0.0)).collect(),
        }
    }

    /// # Safety
    /// No other thread may write `range` while the returned slice lives.
    pub(crate) unsafe fn slice(&self, range: std::ops::Range<usize>) -> &[f32] {
        let cells = &self.data[range];
        std::slice::from_raw_parts(cells.as_ptr() as *const f32, cells.len())
    }

    /// # Safety
    /// No other thread may read or write `range` while the returned slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, range: std::ops::Range<usize>) -> &mut [f32] {
        let cells = &self.data[range];
        std::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), cells.len())
    }
}
