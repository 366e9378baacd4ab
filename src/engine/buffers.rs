//! Reused byte buffers for operation blobs and decoded output. Allocating a fresh 2 MiB buffer
//! per operation costs a page fault per 4 KiB page and a zeroing pass; reusing a few buffers
//! keeps them mapped (and often in cache) for the whole update.

use std::sync::Mutex;

/// Buffers above this capacity are freed rather than kept: one huge operation must not pin its
/// memory for the rest of the update.
const MAX_KEPT_CAPACITY: usize = 4 << 20;

/// A bounded stack of spare buffers, shared by the pipeline's threads.
pub struct BufferPool {
    spare: Mutex<Vec<Vec<u8>>>,
    max_kept: usize,
}

impl BufferPool {
    /// A pool keeping at most `max_kept` spare buffers (0: a pool that only allocates).
    pub fn new(max_kept: usize) -> Self {
        BufferPool {
            spare: Mutex::new(Vec::with_capacity(max_kept)),
            max_kept,
        }
    }

    /// An empty buffer, with the capacity of a previous one when there is a spare.
    pub fn take(&self) -> Vec<u8> {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        spare.pop().unwrap_or_default()
    }

    /// Returns a buffer for reuse (its content is dropped).
    pub fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
        buf.clear();
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < self.max_kept {
            spare.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_number_of_buffers() {
        let pool = BufferPool::new(2);
        for _ in 0..3 {
            pool.give(Vec::with_capacity(4096));
        }
        pool.give(Vec::with_capacity(MAX_KEPT_CAPACITY + 1));
        let (a, b, c) = (pool.take(), pool.take(), pool.take());
        assert_eq!((a.capacity(), b.capacity(), c.capacity()), (4096, 4096, 0));
        assert!(a.is_empty());
        assert_eq!(BufferPool::new(0).take().capacity(), 0);
    }
}
