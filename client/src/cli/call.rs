//! `hearth call` and `hearth services`: one request, or a look at which services have
//! workers.

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use clap::Args;
use hearth_client::{Client, ClientError};
use hearth_proto::mmi::MMI_PREFIX;

use super::{client_failure, Connection, Outcome, UsageError};

/// Longest the diagnostic `mmi.service` question after a timed-out call may take.
const MMI_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Flags of `hearth call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// Service to call
    service: String,
    /// Request body; `-` reads it from stdin; absent sends one empty frame
    body: Option<String>,
}

/// Flags of `hearth services`.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Services to ask about with mmi.service; none lists every service from hearth.status
    names: Vec<String>,
}

/// Sends one request and prints the reply body; on a timeout, asks `mmi.service` whether the
/// service exists at all, to say why.
pub fn call(connection: &Connection, args: CallArgs) -> anyhow::Result<Outcome> {
    let body = match args.body.as_deref() {
        None => Vec::new(),
        Some("-") => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .map_err(|e| UsageError(format!("cannot read the body from stdin: {e}")))?;
            body
        }
        Some(text) => text.as_bytes().to_vec(),
    };
    let mut client = connection.client()?;
    match client.call(&args.service, vec![body]) {
        Ok(reply) => {
            print_reply(&reply)?;
            Ok(Outcome::Success)
        }
        Err(ClientError::Timeout { after, .. }) => {
            eprintln!(
                "hearth: {}",
                explain_timeout(connection, &args.service, after)
            );
            Ok(Outcome::Failed)
        }
        Err(e) => Err(client_failure(e, &format!("calling {}", args.service))),
    }
}

/// Writes reply frames joined by `\n`, plus a final newline only for a terminal.
fn print_reply(frames: &[Vec<u8>]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let tty = stdout.is_terminal();
    stdout.write_all(&frames.join(&b'\n'))?;
    if tty {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    Ok(())
}

/// Why a call timed out, as far as a short `mmi.service` question can tell.
fn explain_timeout(connection: &Connection, service: &str, after: Duration) -> String {
    let waited = humantime::format_duration(round_ms(after));
    if service.starts_with(MMI_PREFIX) {
        return format!("no reply from the broker for {service} within {waited}");
    }
    let mut probe = connection.clone();
    probe.timeout = MMI_PROBE_TIMEOUT.min(connection.timeout);
    let known = probe.client().and_then(|mut c| Ok(c.mmi_service(service)?));
    match known {
        Ok(false) => format!("no worker offers service {service}"),
        Ok(true) => format!("service {service} did not answer within {waited}"),
        Err(_) => format!(
            "no reply from {} within {waited} (broker unreachable?)",
            connection.brokers.join(", ")
        ),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Lists services (from `hearth.status`) or asks `mmi.service` about each name given.
pub fn services(connection: &Connection, args: ServicesArgs) -> anyhow::Result<Outcome> {
    let mut client = connection.client()?;
    if args.names.is_empty() {
        return list_services(&mut client);
    }
    let mut outcome = Outcome::Success;
    for name in &args.names {
        let found = client
            .mmi_service(name)
            .map_err(|e| client_failure(e, &format!("asking mmi.service about {name}")))?;
        println!("{name} {}", if found { 200 } else { 404 });
        if !found {
            outcome = Outcome::Failed;
        }
    }
    Ok(outcome)
}

fn list_services(client: &mut Client) -> anyhow::Result<Outcome> {
    let status = client
        .status()
        .map_err(|e| client_failure(e, "reading hearth.status"))?;
    let width = status
        .services
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max("SERVICE".len());
    println!(
        "{:<width$}  {:>7}  {:>5}  {:>6}",
        "SERVICE", "WORKERS", "IDLE", "QUEUED"
    );
    for s in &status.services {
        println!(
            "{:<width$}  {:>7}  {:>5}  {:>6}",
            s.name, s.workers, s.idle_workers, s.queue_depth
        );
    }
    Ok(Outcome::Success)
}
