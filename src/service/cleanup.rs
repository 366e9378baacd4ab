//! Finishing the previous update after the reboot into its slot, as update_engine's
//! CleanupPreviousUpdateAction does at every start: wait until the boot completed
//! (`sys.boot_completed=1`) and the running slot is marked successful (update_verifier does
//! that through the boot HAL once it has read the verified partitions), then let the engine
//! finish what the update needs afterwards ([`Engine::finish_previous_update`]: the rollback
//! floors, and a Virtual A/B snapshot update's merge, or its cancel when the old slot was
//! booted again). Progress and the result go to whoever asked (`cleanupSuccessfulUpdate`); a
//! caller that asks after the end hears the result at once.
//!
//! Nothing here times out: update_engine waits as long, and a device whose slot is never
//! marked successful is rolled back by its bootloader.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::service::backend::UpdateBackend;
use crate::service::listeners::Gone;
use crate::sysprop::Properties;

/// Someone waiting for the cleanup: a `cleanupSuccessfulUpdate` callback.
pub trait CleanupListener: Send + Sync {
    /// `progress` from 0 to 1.
    fn on_progress(&self, progress: f32) -> std::result::Result<(), Gone>;
    /// The cleanup ended.
    fn on_complete(&self, result: &Result<()>);
}

/// The previous update's cleanup, run once per start of the service.
pub struct Cleanup {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    progress: f32,
    result: Option<std::result::Result<(), (crate::ErrorCode, String)>>,
    waiting: Vec<Arc<dyn CleanupListener>>,
}

/// Where the cleanup learns that the boot completed.
pub enum BootCompletion {
    /// `sys.boot_completed=1` in these properties (read again at every poll).
    Property(Arc<dyn Properties>),
    /// No boot to wait for (a host device directory).
    Already,
}

/// The steps' share of the progress bar.
const BOOTED: f32 = 0.25;
const MARKED: f32 = 0.5;

impl Cleanup {
    /// Starts the cleanup on a thread of its own, polling every `poll`.
    pub fn start(
        engine: Arc<dyn UpdateBackend>,
        boot: BootCompletion,
        poll: Duration,
    ) -> Result<Arc<Cleanup>> {
        let cleanup = Arc::new(Cleanup {
            inner: Mutex::default(),
        });
        let worker = cleanup.clone();
        std::thread::Builder::new()
            .name("cleanup".to_owned())
            .spawn(move || {
                let result = worker.run(engine.as_ref(), &boot, poll);
                match &result {
                    Ok(()) => log::info!("previous update cleaned up"),
                    Err(e) => log::error!("cleaning up the previous update: {e}"),
                }
                worker.finish(result);
            })
            .map_err(|e| Error::io("starting the cleanup thread", e))?;
        Ok(cleanup)
    }

    fn run(&self, engine: &dyn UpdateBackend, boot: &BootCompletion, poll: Duration) -> Result<()> {
        if let BootCompletion::Property(props) = boot {
            while props.get("sys.boot_completed")?.as_deref() != Some("1") {
                std::thread::sleep(poll);
            }
        }
        self.progress(BOOTED);
        loop {
            let slots = engine.slot_info()?;
            let marked = slots
                .slots
                .iter()
                .any(|s| s.slot == slots.current && s.successful);
            if marked {
                break;
            }
            std::thread::sleep(poll);
        }
        self.progress(MARKED);
        // The merge, if there is one, fills the rest of the bar.
        engine.finish_previous_update(&mut |p| {
            self.progress(MARKED + (1.0 - MARKED) * p.clamp(0.0, 1.0));
        })?;
        self.progress(1.0);
        Ok(())
    }

    /// Adds a listener: it hears the progress so far at once, then every step and the result;
    /// after the end, only the result.
    pub fn subscribe(&self, listener: Arc<dyn CleanupListener>) {
        let mut inner = self.lock();
        match &inner.result {
            Some(result) => {
                let result = to_result(result);
                drop(inner);
                listener.on_complete(&result);
            }
            None => {
                if listener.on_progress(inner.progress).is_ok() {
                    inner.waiting.push(listener);
                }
            }
        }
    }

    /// The result, once the cleanup ended.
    pub fn result(&self) -> Option<Result<()>> {
        self.lock().result.as_ref().map(to_result)
    }

    fn progress(&self, progress: f32) {
        let mut inner = self.lock();
        inner.progress = progress;
        inner.waiting.retain(|l| l.on_progress(progress).is_ok());
    }

    fn finish(&self, result: Result<()>) {
        let mut inner = self.lock();
        inner.result = Some(result.map_err(|e| (e.code, e.message)));
        let stored = inner.result.as_ref().map(to_result);
        let waiting = std::mem::take(&mut inner.waiting);
        drop(inner);
        if let Some(result) = stored {
            for listener in waiting {
                listener.on_complete(&result);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn to_result(stored: &std::result::Result<(), (crate::ErrorCode, String)>) -> Result<()> {
    stored
        .as_ref()
        .map(|_| ())
        .map_err(|(code, message)| Error::new(*code, message.clone()))
}
