//! Durable checkpoints off the writer's path. A checkpoint may only be saved once everything it
//! claims is on stable storage, so each commit syncs the partitions written since the previous
//! one and then saves the checkpoint. Syncing a second's worth of writes takes a while; the
//! committer thread does it while the writer goes on writing later operations (which the
//! checkpoint does not claim, so they may or may not be in that sync: either is safe).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::Scope;

use super::checkpoint::{Checkpoint, CheckpointStore};
use super::TargetWrite;
use crate::err;
use crate::error::{Error, Result};

/// The writer's handle on the committer thread. At most one commit is in flight.
pub(super) struct Committer<'a> {
    targets: &'a [Box<dyn TargetWrite>],
    store: &'a dyn CheckpointStore,
    /// Partitions written since the last commit was handed over.
    dirty: Vec<bool>,
    requests: SyncSender<(Checkpoint, Vec<usize>)>,
    results: Receiver<Result<()>>,
    busy: bool,
}

impl<'a> Committer<'a> {
    /// Starts the committer thread in `scope`; it ends when the handle is dropped.
    pub fn spawn<'scope>(
        scope: &'scope Scope<'scope, '_>,
        targets: &'a [Box<dyn TargetWrite>],
        store: &'a dyn CheckpointStore,
    ) -> Self
    where
        'a: 'scope,
    {
        let (requests, inbox) = sync_channel::<(Checkpoint, Vec<usize>)>(1);
        let (outbox, results) = sync_channel(1);
        scope.spawn(move || {
            for (checkpoint, dirty) in inbox {
                let result = sync_then_save(targets, &dirty, store, &checkpoint);
                if outbox.send(result).is_err() {
                    return;
                }
            }
        });
        Committer {
            targets,
            store,
            dirty: vec![false; targets.len()],
            requests,
            results,
            busy: false,
        }
    }

    pub fn mark_dirty(&mut self, partition: usize) {
        self.dirty[partition] = true;
    }

    /// Reports the outcome of a finished commit. `Ok(true)`: the committer is free.
    pub fn poll(&mut self) -> Result<bool> {
        if self.busy {
            match self.results.try_recv() {
                Ok(result) => {
                    self.busy = false;
                    result?;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err(stopped()),
            }
        }
        Ok(!self.busy)
    }

    /// Hands `checkpoint` (the state after everything written so far) to the committer.
    /// Returns `false`, doing nothing, while the previous commit is still running.
    pub fn start(&mut self, checkpoint: &Checkpoint) -> Result<bool> {
        if !self.poll()? {
            return Ok(false);
        }
        let dirty = self.take_dirty();
        label(self.targets, &dirty, checkpoint)?;
        self.requests
            .send((checkpoint.clone(), dirty))
            .map_err(|_| stopped())?;
        self.busy = true;
        Ok(true)
    }

    /// Waits for the commit in flight, then commits `checkpoint` on the calling thread.
    pub fn finish(mut self, checkpoint: &Checkpoint) -> Result<()> {
        if self.busy {
            self.results.recv().map_err(|_| stopped())??;
            self.busy = false;
        }
        let dirty = self.take_dirty();
        label(self.targets, &dirty, checkpoint)?;
        sync_then_save(self.targets, &dirty, self.store, checkpoint)
    }

    fn take_dirty(&mut self) -> Vec<usize> {
        let dirty = (0..self.dirty.len()).filter(|&i| self.dirty[i]).collect();
        self.dirty.fill(false);
        dirty
    }
}

/// Marks the `dirty` snapshots' resume points for `checkpoint`, on the writing thread: the
/// label must fall exactly between the operations the checkpoint claims and the later ones.
fn label(targets: &[Box<dyn TargetWrite>], dirty: &[usize], checkpoint: &Checkpoint) -> Result<()> {
    for &i in dirty {
        targets[i]
            .label(u64::from(checkpoint.next_operation))
            .map_err(|e| Error::io("labelling a snapshot", e))?;
    }
    Ok(())
}

/// Makes the writes to `dirty` partitions durable, then records `checkpoint`: sync before
/// checkpoint.
fn sync_then_save(
    targets: &[Box<dyn TargetWrite>],
    dirty: &[usize],
    store: &dyn CheckpointStore,
    checkpoint: &Checkpoint,
) -> Result<()> {
    for &i in dirty {
        targets[i]
            .sync()
            .map_err(|e| Error::io("syncing a target partition", e))?;
    }
    store.save(checkpoint)
}

fn stopped() -> Error {
    err!(InstallFailed, "the checkpoint thread stopped")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checkpoint::Phase;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    /// A partition that records whether it was synced, and a store that records what it saved
    /// and how many syncs had happened by then.
    struct Target(Arc<AtomicU32>);
    impl TargetWrite for Target {
        fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn sync(&self) -> std::io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn size(&self) -> u64 {
            0
        }
    }
    struct Store(Arc<AtomicU32>, Mutex<Vec<(u32, u32)>>);
    impl CheckpointStore for Store {
        fn load(&self) -> Result<Option<Checkpoint>> {
            Ok(None)
        }
        fn save(&self, cp: &Checkpoint) -> Result<()> {
            let syncs = self.0.load(Ordering::SeqCst);
            self.1.lock().unwrap().push((cp.next_operation, syncs));
            Ok(())
        }
        fn clear(&self) -> Result<()> {
            Ok(())
        }
    }

    fn checkpoint(next_operation: u32) -> Checkpoint {
        Checkpoint {
            payload_id: [0; 32],
            payload_size: None,
            target_slot: "b".into(),
            phase: Phase::Writing,
            next_operation,
            next_data_offset: 0,
            payload_hash_state: vec![],
            file_hash_state: vec![],
            verified_partitions: 0,
            resume_failures: 0,
        }
    }

    #[test]
    fn syncs_dirty_partitions_before_each_save() {
        let syncs = Arc::new(AtomicU32::new(0));
        let targets: Vec<Box<dyn TargetWrite>> = vec![
            Box::new(Target(syncs.clone())),
            Box::new(Target(syncs.clone())),
        ];
        let store = Store(syncs.clone(), Mutex::new(vec![]));
        std::thread::scope(|s| {
            let mut committer = Committer::spawn(s, &targets, &store);
            committer.mark_dirty(0);
            committer.mark_dirty(1);
            assert!(committer.start(&checkpoint(1)).unwrap());
            // Nothing new written: the final commit syncs nothing more.
            committer.finish(&checkpoint(2)).unwrap();
        });
        assert_eq!(*store.1.lock().unwrap(), vec![(1, 2), (2, 2)]);
    }
}
