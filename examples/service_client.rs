//! A minimal client of `abupdated` built on `abupdate::service::client`, used by the VM
//! test until the `abupdate` CLI carries these subcommands.
//!
//! `service_client URI status | slots | cancel | apply URL | watch SECONDS`

use std::process::ExitCode;
use std::time::Duration;

use abupdate::service::binder_adapter::Transport;
use abupdate::service::client::{Event, UpdateClient};
use abupdate::Result;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [uri, command, rest @ ..] = args.as_slice() else {
        eprintln!("usage: service_client URI status|slots|cancel|apply URL|watch SECONDS");
        return ExitCode::from(2);
    };
    match run(uri, command, rest) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service_client: {e}");
            ExitCode::from(u8::try_from(e.code.as_i32()).unwrap_or(1))
        }
    }
}

fn run(uri: &str, command: &str, rest: &[String]) -> Result<()> {
    let client = UpdateClient::connect(&Transport::parse(uri)?)?;
    match (command, rest) {
        ("status", []) => println!("status: {}", client.status()?),
        ("slots", []) => println!("slots: {:?}", client.slots()?),
        ("cancel", []) => client.cancel()?,
        ("apply", [url]) => client.apply(url, 0, 0, &[])?,
        ("watch", [seconds]) => {
            let seconds = seconds.parse().unwrap_or(1);
            let _watch = client.watch(|event| match event {
                Event::Status(status) => println!("event: {status}"),
                Event::Complete(result) => println!("complete: {result:?}"),
            })?;
            std::thread::sleep(Duration::from_secs(seconds));
        }
        _ => abupdate::bail!(Unsupported, "unknown command {command} {rest:?}"),
    }
    Ok(())
}
