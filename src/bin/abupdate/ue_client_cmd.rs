//! `update_engine_client`'s command line, over android.os.UpdateEngineService: run as
//! `abupdate update-engine-client FLAGS` or through a link named `update_engine_client`, so
//! that AOSP's update_device.py and scripts written for update_engine drive abupdated
//! (started with `--update-engine-compat`). Flags as update_engine_client takes them (gflags:
//! `--flag=value`, `--flag value`, `--flag`, `--noflag`, one or two dashes), plus two of
//! ours: `--binder=URI` (default $ABUPDATE_BINDER, else the platform's service manager) and
//! `--stable`, which sends `--update` to android.os.UpdateEngineStableService's applyPayloadFd
//! (the payload a local file this process opens), as Settings' 16 KB-page option does.
//!
//! Exit codes are update_engine_client's, not the structured codes: 0 when the call
//! succeeded or the followed update completed with 0 (or 52, applied but not active), 1
//! otherwise; the update_engine code is printed.

use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use abupdate::service::binder_adapter::{self as binder, Failure, Status, Transport};
use abupdate::service::update_engine::codes::{error_name, status_name};
use abupdate::service::update_engine::{client, UeCallbackRelay, UeEvent};

/// The flags, with update_engine_client's defaults.
#[derive(Debug, PartialEq)]
pub struct Flags {
    update: bool,
    payload: String,
    offset: i64,
    size: i64,
    headers: String,
    verify: bool,
    allocate: bool,
    metadata: String,
    switch_slot: Option<bool>,
    suspend: bool,
    resume: bool,
    cancel: bool,
    reset_status: bool,
    trigger_postinstall: Option<String>,
    follow: bool,
    merge: bool,
    stable: bool,
    binder: Option<String>,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            update: false,
            payload: "http://127.0.0.1:8080/payload".to_owned(),
            offset: 0,
            size: 0,
            headers: String::new(),
            verify: false,
            allocate: false,
            metadata: "/data/ota_package/metadata".to_owned(),
            switch_slot: None,
            suspend: false,
            resume: false,
            cancel: false,
            reset_status: false,
            trigger_postinstall: None,
            follow: false,
            merge: false,
            stable: false,
            binder: None,
        }
    }
}

const BOOLS: [&str; 11] = [
    "stable",
    "update",
    "verify",
    "allocate",
    "suspend",
    "resume",
    "cancel",
    "reset_status",
    "follow",
    "merge",
    "perf_mode",
];

/// Parses the arguments after the program name, as gflags does.
pub fn parse(args: &[String]) -> Result<Flags> {
    if args.is_empty() {
        bail!("Nothing to do. Run with --help for help.");
    }
    let mut flags = Flags::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            bail!(
                "Found a positional argument '{arg}'. If you want to pass a value to a flag, \
                 pass it as --flag=value."
            );
        };
        let (name, value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (body, None),
        };
        if BOOLS.contains(&name) {
            let on = match value.as_deref() {
                None | Some("true") | Some("1") => true,
                Some("false") | Some("0") => false,
                Some(other) => bail!("--{name}: not a boolean: {other:?}"),
            };
            set_bool(&mut flags, name, on)?;
            continue;
        }
        if let Some(negated) = name.strip_prefix("no").filter(|n| BOOLS.contains(n)) {
            set_bool(&mut flags, negated, false)?;
            continue;
        }
        let value = match value {
            Some(value) => value,
            None => args
                .next()
                .cloned()
                .with_context(|| format!("--{name} needs a value"))?,
        };
        match name {
            "payload" => flags.payload = value,
            "offset" => flags.offset = value.parse().context("--offset")?,
            "size" => flags.size = value.parse().context("--size")?,
            "headers" => flags.headers = value,
            "metadata" => flags.metadata = value,
            "binder" => flags.binder = Some(value),
            "trigger_postinstall" => flags.trigger_postinstall = Some(value),
            "switch_slot" => {
                flags.switch_slot = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => bail!("--switch_slot should be either true or false, got {value}"),
                })
            }
            _ => bail!("unknown command line flag '{name}'"),
        }
    }
    Ok(flags)
}

fn set_bool(flags: &mut Flags, name: &str, on: bool) -> Result<()> {
    match name {
        "update" => flags.update = on,
        "verify" => flags.verify = on,
        "allocate" => flags.allocate = on,
        "suspend" => flags.suspend = on,
        "resume" => flags.resume = on,
        "cancel" => flags.cancel = on,
        "reset_status" => flags.reset_status = on,
        "follow" => flags.follow = on,
        "merge" => flags.merge = on,
        "stable" => flags.stable = on,
        // A LineageOS addition to update_engine; abupdate has no performance mode.
        "perf_mode" if on => bail!("--perf_mode is not supported"),
        _ => {}
    }
    Ok(())
}

/// update_engine_client's headers: one KEY=VALUE per line.
fn headers(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Runs the flags; the process's exit code.
pub fn run(args: &[String]) -> u8 {
    match parse(args).and_then(|flags| execute(&flags)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("update_engine_client: {e:#}");
            1
        }
    }
}

fn execute(flags: &Flags) -> Result<u8> {
    let uri = match &flags.binder {
        Some(uri) => uri.clone(),
        None => std::env::var("ABUPDATE_BINDER").unwrap_or_else(|_| "binder:/dev/binder".into()),
    };
    let transport = Transport::parse(&uri)?;
    if flags.stable {
        return stable_update(&transport, flags);
    }
    let session = client::connect(&transport)?;
    let service = &session.service;
    let (relay, events, death) = listen(&service.as_binder())?;
    let callback = binder::new_ue_callback_binder(relay);
    let mut keep_running = false;
    if flags.follow {
        if !service.bind(&callback).map_err(|s| failed("bind", &s))? {
            bail!("Failed to bind() the UpdateEngine daemon.");
        }
        keep_running = true;
    }
    if flags.suspend {
        return answer("suspend", service.suspend());
    }
    if flags.resume {
        return answer("resume", service.resume());
    }
    if flags.cancel {
        return answer("cancel", service.cancel());
    }
    if flags.reset_status {
        return answer("resetStatus", service.resetStatus());
    }
    if let Some(partition) = &flags.trigger_postinstall {
        // update_engine_client returns once the call is answered; with --follow this one also
        // waits for the program's end (FINALIZING progress, then its completion code).
        let result = service.triggerPostinstall(partition);
        if !flags.follow || result.is_err() {
            return answer("triggerPostinstall", result);
        }
        return death_after(events, death);
    }
    match flags.switch_slot {
        Some(true) => {
            let result = service.setShouldSwitchSlotOnReboot(&flags.metadata);
            if !flags.follow || result.is_err() {
                return answer("setShouldSwitchSlotOnReboot", result);
            }
        }
        Some(false) => {
            return answer(
                "resetShouldSwitchSlotOnReboot",
                service.resetShouldSwitchSlotOnReboot(),
            )
        }
        None => {}
    }
    if flags.verify {
        let result = service.verifyPayloadApplicable(&flags.metadata);
        let applicable = matches!(result, Ok(true));
        eprintln!(
            "Payload is {}applicable.",
            if applicable { "" } else { "not " }
        );
        return answer("verifyPayloadApplicable", result);
    }
    if flags.allocate {
        let result = service.allocateSpaceForPayload(&flags.metadata, &headers(&flags.headers));
        match &result {
            Ok(0) => eprintln!("Successfully allocated space for payload."),
            Ok(needed) => eprintln!("Insufficient space; required {needed} bytes."),
            Err(_) => eprintln!("Allocation failed."),
        }
        return answer("allocateSpaceForPayload", result);
    }
    if flags.merge {
        service
            .cleanupSuccessfulUpdate(&callback)
            .map_err(|s| failed("cleanupSuccessfulUpdate", &s))?;
        keep_running = true;
    }
    if flags.update {
        service
            .applyPayload(
                &flags.payload,
                flags.offset,
                flags.size,
                &headers(&flags.headers),
            )
            .map_err(|s| failed("applyPayload", &s))?;
    }
    if !keep_running {
        return Ok(0);
    }
    death_after(events, death)
}

/// `--stable --update [--follow]`: applyPayloadFd on the stable service.
fn stable_update(transport: &Transport, flags: &Flags) -> Result<u8> {
    if !flags.update {
        bail!("--stable goes with --update (the stable service only applies payloads)");
    }
    let path = flags
        .payload
        .strip_prefix("file://")
        .unwrap_or(&flags.payload);
    let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let session = client::connect_stable(transport)?;
    let service = &session.service;
    let (relay, events, death) = listen(&service.as_binder())?;
    let callback = binder::new_stable_callback_binder(relay);
    if flags.follow && !service.bind(&callback).map_err(|s| failed("bind", &s))? {
        bail!("Failed to bind() the UpdateEngineStable daemon.");
    }
    let pfd = binder::ParcelFileDescriptor::new(file);
    service
        .applyPayloadFd(&pfd, flags.offset, flags.size, &headers(&flags.headers))
        .map_err(|s| failed("applyPayloadFd", &s))?;
    if !flags.follow {
        return Ok(0);
    }
    death_after(events, death)
}

/// Prints the callbacks until a completion: 0 for success (or 52), else 1.
/// What a session hears: `relay` turns the service's callbacks into events, and `None`
/// arrives once the service dies (while the returned link lives).
fn listen(
    service: &binder::AnyBinder,
) -> Result<(
    UeCallbackRelay,
    mpsc::Receiver<Option<UeEvent>>,
    binder::DeathLink,
)> {
    let (tx, events) = mpsc::channel();
    let death = {
        let tx = tx.clone();
        binder::link_binder_to_death(
            service,
            Box::new(move || {
                let _ = tx.send(None);
            }),
        )?
    };
    let relay = UeCallbackRelay::new(move |event| {
        let _ = tx.send(Some(event));
    });
    Ok((relay, events, death))
}

fn death_after(events: mpsc::Receiver<Option<UeEvent>>, death: binder::DeathLink) -> Result<u8> {
    loop {
        match events.recv_timeout(Duration::from_secs(3600)) {
            Ok(Some(UeEvent::Status(status, progress))) => {
                eprintln!(
                    "onStatusUpdate({} ({status}), {progress})",
                    status_name(status)
                );
            }
            Ok(Some(UeEvent::Complete(code))) => {
                eprintln!(
                    "onPayloadApplicationComplete({} ({code}))",
                    error_name(code)
                );
                drop(death);
                // 52: applied without switching the slot, which update_engine counts as done.
                return Ok(if code == 0 || code == 52 { 0 } else { 1 });
            }
            Ok(None) => bail!("UpdateEngineService died."),
            Err(_) => bail!("no news from UpdateEngineService for an hour"),
        }
    }
}

/// A call's result as update_engine_client reports it: 0, or the failure printed and 1.
fn answer<T>(what: &str, result: std::result::Result<T, Status>) -> Result<u8> {
    match result {
        Ok(_) => Ok(0),
        Err(status) => {
            eprintln!("update_engine_client: {}", failed(what, &status));
            Ok(1)
        }
    }
}

fn failed(what: &str, status: &Status) -> anyhow::Error {
    match binder::failure(status) {
        Failure::ServiceSpecific(code, message) => {
            anyhow::anyhow!("{what}: {} ({code}): {message}", error_name(code))
        }
        Failure::Security(message) => anyhow::anyhow!("{what}: security exception: {message}"),
        Failure::DeadObject => anyhow::anyhow!("{what}: UpdateEngineService is gone"),
        Failure::Other(message) => anyhow::anyhow!("{what}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    /// update_device.py's command lines.
    #[test]
    fn update_device_py_lines() {
        let flags = parse(&args(
            "--update --follow --payload=http://127.0.0.1:1234/payload --offset=1024 \
             --size=2048 --headers=FILE_HASH=x==\nFILE_SIZE=2048",
        ))
        .unwrap();
        assert!(flags.update && flags.follow);
        assert_eq!(flags.payload, "http://127.0.0.1:1234/payload");
        assert_eq!((flags.offset, flags.size), (1024, 2048));
        assert_eq!(headers(&flags.headers), ["FILE_HASH=x==", "FILE_SIZE=2048"]);
        let flags = parse(&args("--switch_slot=false")).unwrap();
        assert_eq!(flags.switch_slot, Some(false));
        let flags = parse(&args(
            "-verify --metadata /data/ota_package/metadata --nofollow",
        ))
        .unwrap();
        assert!(flags.verify && !flags.follow);
        assert_eq!(flags.metadata, "/data/ota_package/metadata");
        let flags = parse(&args("--trigger_postinstall=system --follow")).unwrap();
        assert_eq!(flags.trigger_postinstall.as_deref(), Some("system"));
        assert!(flags.follow);
    }

    #[test]
    fn refusals() {
        assert!(parse(&[]).is_err());
        assert!(
            parse(&args("payload.bin")).is_err(),
            "a positional argument"
        );
        assert!(parse(&args("--switch_slot=maybe")).is_err());
        assert!(parse(&args("--bogus=1")).is_err());
        assert!(parse(&args("--follow=yes")).is_err());
    }
}
