//! A small but real [`Engine`] for testing the service: it "updates" by copying a raw
//! image (from a `file://` URL or a descriptor) into the other slot's image file, in
//! chunks with a pause between them, so that tests can watch, suspend and cancel it. It
//! keeps a checkpoint so that an interrupted copy resumes, and keeps its slot state in
//! files.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use abupdate::error::{Error, Result};
use abupdate::service::{
    ApplyRequest, Control, Engine, PayloadSource, Phase, Progress, RollbackFloor, SlotInfo,
    SlotState,
};

pub struct CopyEngine {
    dir: PathBuf,
    current: u32,
    chunk: usize,
    pause: Duration,
}

impl CopyEngine {
    /// Slot images and state live in `dir`; slot `current` runs.
    pub fn new(dir: &Path, current: u32, chunk: usize, pause: Duration) -> CopyEngine {
        fs::create_dir_all(dir).unwrap();
        CopyEngine {
            dir: dir.to_owned(),
            current,
            chunk,
            pause,
        }
    }

    pub fn image(&self, slot: u32) -> PathBuf {
        self.dir.join(format!("slot_{slot}.img"))
    }

    fn target(&self) -> u32 {
        1 - self.current
    }

    fn read_number(&self, name: &str) -> Result<Option<u64>> {
        match fs::read_to_string(self.dir.join(name)) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| abupdate::err!(SlotError, "{name}: {text:?}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(name, e)),
        }
    }

    fn write_number(&self, name: &str, n: u64) -> Result<()> {
        fs::write(self.dir.join(name), n.to_string()).map_err(|e| Error::io(name, e))
    }

    fn checkpoint(&self) -> Result<Option<(u64, u64)>> {
        let done = self.read_number("checkpoint_done")?;
        let total = self.read_number("checkpoint_total")?;
        Ok(done.zip(total))
    }

    fn open_source(&self, request: &ApplyRequest) -> Result<File> {
        match &request.source {
            PayloadSource::Url(url) => {
                let Some(path) = url.strip_prefix("file://") else {
                    abupdate::bail!(DownloadFailed, "only file:// URLs: {url}");
                };
                File::open(path).map_err(|e| abupdate::err!(DownloadFailed, "{path}: {e}"))
            }
            PayloadSource::File(file) => file.try_clone().map_err(|e| Error::io("payload fd", e)),
        }
    }

    fn pass(
        &self,
        phase: Phase,
        total: u64,
        start: u64,
        progress: &mut dyn FnMut(Progress),
        control: &Control,
        mut step: impl FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let mut buf = vec![0; self.chunk];
        let mut done = start;
        while done < total {
            control.checkpoint()?;
            let n = usize::try_from((total - done).min(self.chunk as u64)).unwrap_or(self.chunk);
            step(done, &mut buf[..n])?;
            done += n as u64;
            if phase == Phase::Downloading {
                self.write_number("checkpoint_done", done)?;
            }
            progress(Progress { phase, done, total });
            std::thread::sleep(self.pause);
        }
        Ok(())
    }
}

impl Engine for CopyEngine {
    fn apply(
        &self,
        request: &ApplyRequest,
        progress: &mut dyn FnMut(Progress),
        control: &Control,
    ) -> Result<()> {
        let mut source = self.open_source(request)?;
        let len = source
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("payload", e))?;
        let total = match request.size {
            0 => len.saturating_sub(request.offset),
            n if request.offset + n <= len => n,
            n => abupdate::bail!(SizeMismatch, "{n} bytes at {} past {len}", request.offset),
        };
        let start = match self.checkpoint()? {
            Some((done, was)) if was == total && done <= total => done,
            _ => 0,
        };
        self.write_number("checkpoint_total", total)?;
        let target = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(self.image(self.target()))
            .map_err(|e| Error::io("target image", e))?;
        let offset = request.offset;
        self.pass(
            Phase::Downloading,
            total,
            start,
            progress,
            control,
            |at, buf| {
                source
                    .read_exact_at(buf, offset + at)
                    .map_err(|e| Error::io("reading payload", e))?;
                target
                    .write_all_at(buf, at)
                    .map_err(|e| Error::io("writing target", e))
            },
        )?;
        target
            .set_len(total)
            .map_err(|e| Error::io("target size", e))?;
        let mut written = vec![0; self.chunk];
        self.pass(Phase::Verifying, total, 0, progress, control, |at, buf| {
            source
                .read_exact_at(buf, offset + at)
                .map_err(|e| Error::io("reading payload", e))?;
            let mine = &mut written[..buf.len()];
            target
                .read_exact_at(mine, at)
                .map_err(|e| Error::io("reading target", e))?;
            match mine == buf {
                true => Ok(()),
                false => Err(abupdate::err!(PartitionHash, "target differs at byte {at}")),
            }
        })?;
        control.checkpoint()?;
        progress(Progress {
            phase: Phase::Finalizing,
            done: 0,
            total: 1,
        });
        target
            .sync_all()
            .map_err(|e| Error::io("syncing target", e))?;
        self.write_number("active", u64::from(self.target()))?;
        for name in ["checkpoint_done", "checkpoint_total"] {
            fs::remove_file(self.dir.join(name)).map_err(|e| Error::io(name, e))?;
        }
        progress(Progress {
            phase: Phase::Finalizing,
            done: 1,
            total: 1,
        });
        Ok(())
    }

    fn verify_applicable(&self, metadata: &[u8]) -> Result<()> {
        match metadata.get(..4) {
            Some(b"CrAU") => Ok(()),
            _ => abupdate::bail!(MalformedPayload, "no payload magic"),
        }
    }

    fn slot_info(&self) -> Result<SlotInfo> {
        let active = self
            .read_number("active")?
            .map_or(self.current, |n| n as u32);
        let slots = (0..2)
            .map(|slot| SlotState {
                slot,
                suffix: ["_a", "_b"][slot as usize].to_owned(),
                bootable: true,
                successful: self.dir.join(format!("successful_{slot}")).exists(),
                tries_remaining: if slot == active { 7 } else { 0 },
            })
            .collect();
        Ok(SlotInfo {
            current: self.current,
            active,
            slots,
        })
    }

    fn mark_boot_successful(&self) -> Result<()> {
        let marker = self.dir.join(format!("successful_{}", self.current));
        File::create(&marker)
            .and_then(|mut f| f.write_all(b"1"))
            .map_err(|e| Error::io("marker", e))
    }

    fn rollback_floors(&self) -> Result<Vec<RollbackFloor>> {
        let mut text = String::new();
        match File::open(self.dir.join("floors")) {
            Ok(mut f) => f
                .read_to_string(&mut text)
                .map_err(|e| Error::io("floors", e))?,
            Err(_) => return Ok(Vec::new()),
        };
        text.lines()
            .map(|line| {
                let (location, index) = line.split_once(' ').unwrap_or((line, ""));
                Ok(RollbackFloor {
                    location: location
                        .parse()
                        .map_err(|_| abupdate::err!(SlotError, "{line}"))?,
                    index: index
                        .parse()
                        .map_err(|_| abupdate::err!(SlotError, "{line}"))?,
                })
            })
            .collect()
    }

    fn resume_point(&self) -> Result<Option<Progress>> {
        Ok(self.checkpoint()?.map(|(done, total)| Progress {
            phase: Phase::Downloading,
            done,
            total,
        }))
    }

    fn reset(&self) -> Result<()> {
        for name in ["checkpoint_done", "checkpoint_total"] {
            match fs::remove_file(self.dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(name, e))
                }
                _ => {}
            }
        }
        self.write_number("active", u64::from(self.current))
    }
}
