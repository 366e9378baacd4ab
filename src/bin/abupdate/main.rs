//! `abupdate`: the command-line tool. As on a device (`adb shell abupdate ...`), `apply`,
//! `slots` and `mark-successful` go to the service `abupdated` over Binder, as do `status`,
//! `watch`, `suspend`, `resume`, `cancel`, `reset` and `verify`; with `--device DIR` the
//! first three work directly on a host device directory instead. `payload`, `verity` and
//! `demo` are host tools. The exit code is the structured status code of the result.

// As in the library: every public item documented (Soong's platform lints deny missing docs).
#![deny(missing_docs)]
// The rules of the house, outside tests: no unwrap/expect/panic (fail closed with an error
// instead), and every `unsafe` block says why it is sound.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::undocumented_unsafe_blocks
    )
)]

mod apply_cmd;
#[cfg(feature = "host-tools")]
mod cow_cmd;
#[cfg(feature = "host-tools")]
mod demo;
mod feed_cmd;
#[cfg(feature = "host-tools")]
mod file_sink;
mod follow;
#[cfg(feature = "host-tools")]
mod image_file;
#[cfg(feature = "host-tools")]
mod payload_cmd;
#[cfg(feature = "host-tools")]
mod progress_bar;
mod service_cmd;
mod slots_cmd;
mod super_cmd;
mod ue_client_cmd;
mod verity_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "abupdate",
    version,
    about = "A/B over-the-air updates for Android devices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply a payload into the inactive slot (through the service, or --device DIR).
    Apply(apply_cmd::ApplyArgs),
    /// The service's state, progress and last error.
    Status(service_cmd::Plain),
    /// Follow the running update to its end; exits with its status code.
    Watch(service_cmd::Plain),
    /// Pause the running update.
    Suspend(service_cmd::Plain),
    /// Continue a suspended or interrupted update.
    Resume(service_cmd::ResumeArgs),
    /// Stop the running update (it ends with code 38).
    Cancel(service_cmd::Plain),
    /// Forget the last update; after an applied one, keep the running slot active.
    Reset(service_cmd::Plain),
    /// Ask the service whether a payload could be applied to this device.
    Verify(service_cmd::VerifyArgs),
    /// Show each slot (current, active, bootable, successful, tries) and the rollback floors.
    Slots(slots_cmd::SlotsArgs),
    /// Mark the running slot as successfully booted (advances the rollback floors).
    MarkSuccessful(slots_cmd::SlotsArgs),
    /// Finish the previous update of a host device directory (--device): merge a Virtual A/B
    /// snapshot update booted into and marked successful, or cancel one whose old slot runs
    /// again (on Android: `update_engine_client --merge`).
    Merge(slots_cmd::SlotsArgs),
    /// Inspect or build update payloads (host tool).
    #[cfg(feature = "host-tools")]
    #[command(subcommand)]
    Payload(payload_cmd::PayloadCommand),
    /// Build or check dm-verity hash trees and FEC of an image (host tool).
    #[command(subcommand)]
    Verity(verity_cmd::VerityCommand),
    /// Dynamic partitions: the liblp metadata of a super image.
    #[command(subcommand)]
    Super(super_cmd::SuperCommand),
    /// Build a simulated device, signed full and delta payloads, and apply both.
    #[cfg(feature = "host-tools")]
    Demo(demo::DemoArgs),
    /// update_engine_client's flags (--update --follow --payload= ...) over
    /// android.os.UpdateEngineService; also run as `update_engine_client` through a link.
    #[command(name = "update-engine-client", disable_help_flag = true)]
    UpdateEngineClient {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        flags: Vec<String>,
    },
    /// Virtual A/B COW images (libsnapshot_cow v2/v3): write, apply, inspect (host tool).
    #[cfg(feature = "host-tools")]
    #[command(subcommand)]
    Cow(cow_cmd::CowCommand),
    /// Add a payload to an update feed directory and sign the feed (host tool).
    #[cfg(feature = "host-tools")]
    Publish(feed_cmd::PublishArgs),
    /// Fetch and verify the update feed, pick this device's offer; --apply installs it.
    Check(feed_cmd::CheckArgs),
    /// Fleet reports: send the queued ones.
    #[command(subcommand)]
    Report(feed_cmd::ReportCommand),
}

fn main() -> ExitCode {
    // Through a link named update_engine_client: that tool's command line, whole.
    let mut args = std::env::args();
    let program = args.next().unwrap_or_default();
    if std::path::Path::new(&program).file_name() == Some("update_engine_client".as_ref()) {
        let flags: Vec<String> = args.collect();
        return ExitCode::from(ue_client_cmd::run(&flags));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Apply(args) => apply_cmd::run(args),
        Command::Status(args) => service_cmd::status(args),
        Command::Watch(args) => service_cmd::watch(args),
        Command::Suspend(args) => service_cmd::suspend(args),
        Command::Resume(args) => service_cmd::resume(args),
        Command::Cancel(args) => service_cmd::cancel(args),
        Command::Reset(args) => service_cmd::reset(args),
        Command::Verify(args) => service_cmd::verify(args),
        #[cfg(feature = "host-tools")]
        Command::Payload(cmd) => payload_cmd::run(cmd),
        Command::Verity(cmd) => verity_cmd::run(cmd),
        Command::Super(cmd) => super_cmd::run(cmd),
        Command::Slots(args) => slots_cmd::slots(args),
        Command::MarkSuccessful(args) => slots_cmd::mark_successful(args),
        Command::Merge(args) => slots_cmd::merge(args),
        #[cfg(feature = "host-tools")]
        Command::Demo(args) => demo::run(args),
        Command::UpdateEngineClient { flags } => return ExitCode::from(ue_client_cmd::run(&flags)),
        #[cfg(feature = "host-tools")]
        Command::Cow(cmd) => cow_cmd::run(cmd),
        #[cfg(feature = "host-tools")]
        Command::Publish(args) => feed_cmd::publish(args),
        Command::Check(args) => feed_cmd::check(args),
        Command::Report(cmd) => feed_cmd::report(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = status_code(&e);
            eprintln!("abupdate: error {code}: {}", chain_text(&e));
            ExitCode::from(code as u8)
        }
    }
}

/// The error and its causes, `: `-joined as anyhow's `{:#}` does, but without a cause whose
/// text an outer message already carries (the library's errors quote their source).
fn chain_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let shown = cause.to_string();
        if text.contains(&shown) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&shown);
    }
    text
}

/// The structured code of an error chain; errors from outside the library are generic
/// install failures.
fn status_code(e: &anyhow::Error) -> i32 {
    e.chain()
        .find_map(|c| c.downcast_ref::<abupdate::Error>())
        .map_or(abupdate::ErrorCode::InstallFailed.as_i32(), |e| {
            e.code.as_i32()
        })
}
