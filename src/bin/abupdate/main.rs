//! `abupdate`: the command-line tool. Host subcommands build, inspect and apply payloads on a
//! simulated device directory; the exit code is the structured status code of the result.

mod apply_cmd;
mod demo;
mod payload_cmd;
mod slots_cmd;
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
    /// Inspect or build update payloads.
    #[command(subcommand)]
    Payload(payload_cmd::PayloadCommand),
    /// Apply a payload into the inactive slot of a device directory.
    Apply(apply_cmd::ApplyArgs),
    /// Build or check dm-verity hash trees and FEC of an image.
    #[command(subcommand)]
    Verity(verity_cmd::VerityCommand),
    /// Show each slot: active, bootable, successful, priority, tries.
    Slots(slots_cmd::DeviceArgs),
    /// Mark the running slot as successfully booted.
    MarkSuccessful(slots_cmd::DeviceArgs),
    /// Build a simulated device, signed full and delta payloads, and apply both.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Payload(cmd) => payload_cmd::run(cmd),
        Command::Apply(args) => apply_cmd::run(args),
        Command::Verity(cmd) => verity_cmd::run(cmd),
        Command::Slots(args) => slots_cmd::slots(args),
        Command::MarkSuccessful(args) => slots_cmd::mark_successful(args),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = status_code(&e);
            eprintln!("abupdate: error {code}: {e:#}");
            ExitCode::from(code as u8)
        }
    }
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
