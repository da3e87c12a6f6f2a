//! `hearth call` and `hearth services`: one request, or a look at which services have
//! workers.
//!
//! A reply that is hearth's error convention, the one-frame Bencode dict `{error: "..."}`
//! (what `hearth-worker --exec` answers when its command fails or times out, and what the
//! broker's built-in services answer when they refuse), is a failed call: its text goes to
//! stderr as `error from SERVICE: TEXT` and the exit code is 1. `--raw` prints every reply
//! as received and exits 0.

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use clap::Args;
use hearth_client::state::{refusal, Value};
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
    /// Print the reply as received, even an error reply `{error: ...}` (exit 0)
    #[arg(long)]
    raw: bool,
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
        Ok(reply) => match error_text(&reply).filter(|_| !args.raw) {
            Some(text) => {
                eprintln!("hearth: error from {}: {text}", args.service);
                Ok(Outcome::Failed)
            }
            None => {
                print_reply(&reply)?;
                Ok(Outcome::Success)
            }
        },
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

/// The text of a reply that is an error by hearth's convention: one frame holding the
/// Bencode dict `{error: <byte string>}` and nothing else. Any other reply, Bencode or
/// not, is a plain answer.
fn error_text(reply: &[Vec<u8>]) -> Option<String> {
    let [frame] = reply else {
        return None;
    };
    // Cheap first: a Bencode dict whose first key is `error`.
    if !frame.starts_with(b"d5:error") {
        return None;
    }
    refusal(&Value::from_bencode(frame).ok()?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(frames: &[&[u8]]) -> Vec<Vec<u8>> {
        frames.iter().map(|f| f.to_vec()).collect()
    }

    #[test]
    fn only_a_lone_error_dict_is_an_error() {
        let timed_out = b"d5:error24:exec: timed out after 1se";
        assert_eq!(
            error_text(&frames(&[timed_out])).as_deref(),
            Some("exec: timed out after 1s")
        );
        for plain in [
            &[&b"hello"[..]][..],
            &[b"d5:error2:hie", b"second frame"],
            &[b"d5:errori3ee"],
            &[b"d5:error2:hi4:more1:xe"],
            &[b"d5:error2:hi"],
            &[b"d5:error2:hie trailing"],
            &[b"d4:seqi7ee"],
            &[],
        ] {
            assert_eq!(error_text(&frames(plain)), None, "{plain:?}");
        }
    }
}
