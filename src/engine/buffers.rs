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

    /// A buffer with room for `len` bytes: the most recently returned spare that has it (blobs
    /// and outputs differ in size; growing a smaller one would copy it), else a new one. A
    /// spare keeps its old length and bytes, so that resizing it to `len` zeroes only what it
    /// never held; callers overwrite or clear it.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        match spare.iter().rposition(|buf| buf.capacity() >= len) {
            Some(i) => spare.remove(i),
            None => Vec::with_capacity(len),
        }
    }

    /// Returns a buffer for reuse.
    pub fn give(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
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
            pool.give(vec![1; 4096]);
        }
        pool.give(Vec::with_capacity(MAX_KEPT_CAPACITY + 1));
        let (a, b) = (pool.take(100), pool.take(4096));
        assert_eq!((a.capacity(), b.capacity()), (4096, 4096));
        assert_eq!(a, vec![1; 4096], "a spare comes back as it was given");
        assert_eq!(
            pool.take(10).capacity(),
            10,
            "a new buffer once the spares are gone"
        );
        assert_eq!(BufferPool::new(0).take(0).capacity(), 0);
    }

    #[test]
    fn a_spare_too_small_is_left_for_a_smaller_request() {
        let pool = BufferPool::new(4);
        pool.give(Vec::with_capacity(8192));
        pool.give(Vec::with_capacity(1024));
        assert_eq!(pool.take(4096).capacity(), 8192);
        assert_eq!(pool.take(1000).capacity(), 1024);
    }
}
