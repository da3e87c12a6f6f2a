//! `hearth status`: each broker's `hearth.status`, as a readable block or as JSON lines.

use std::time::Duration;

use clap::Args;
use hearth_proto::status::BrokerStatus;
use serde_json::json;

use super::{Connection, Outcome};

/// Flags of `hearth status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object per broker and line: {"broker": URL, "status": {...}} or
    /// {"broker": URL, "error": "..."}
    #[arg(long)]
    json: bool,
}

/// Asks every broker given for its status separately (not round-robin: the point is to see
/// each one of a pair). Exit 1 if any broker does not answer.
pub fn status(connection: &Connection, args: StatusArgs) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::Success;
    for broker in &connection.brokers {
        let single = Connection {
            brokers: vec![broker.clone()],
            timeout: connection.timeout,
        };
        let result = single.client().and_then(|mut c| Ok(c.status()?));
        if result.is_err() {
            outcome = Outcome::Failed;
        }
        if args.json {
            let line = match &result {
                Ok(status) => json!({ "broker": broker, "status": status }),
                Err(e) => json!({ "broker": broker, "error": format!("{e:#}") }),
            };
            println!("{line}");
        } else {
            match &result {
                Ok(status) => print!("{}", render(broker, status)),
                Err(e) => println!("broker {broker}: unreachable: {e:#}\n"),
            }
        }
    }
    Ok(outcome)
}

/// The human-readable block for one broker.
fn render(broker: &str, s: &BrokerStatus) -> String {
    let uptime = humantime::format_duration(Duration::from_secs(s.uptime_ms / 1000));
    let mut out = format!("broker {broker}\n");
    out += &format!("  role {}, state {}, up {uptime}\n", s.role, s.state);
    if s.role != "standalone" || s.peer.is_some() {
        out += &format!(
            "  peer {}, term {}, failovers {}, held requests {}\n",
            if s.peer_alive { "alive" } else { "silent" },
            s.term,
            s.failovers,
            s.held_requests
        );
        if let Some(peer) = &s.peer {
            let heard = peer.last_heard_ms.map_or_else(
                || "never heard".to_owned(),
                |ms| format!("heard {ms} ms ago"),
            );
            out += &format!("  peer {} is {}, {heard}\n", peer.endpoint, peer.state);
        }
    }
    out += &format!("  state seq {}\n", s.state_seq);
    if s.services.is_empty() {
        out += "  no services\n";
    }
    for svc in &s.services {
        out += &format!(
            "  service {}: {} workers ({} idle), {} queued\n",
            svc.name, svc.workers, svc.idle_workers, svc.queue_depth
        );
    }
    out + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::status::ServiceStatus;

    #[test]
    fn render_names_role_state_and_services() {
        let status = BrokerStatus {
            role: "standalone".into(),
            state: "active".into(),
            uptime_ms: 61_500,
            services: vec![ServiceStatus {
                name: "echo".into(),
                workers: 2,
                idle_workers: 1,
                queue_depth: 3,
            }],
            ..BrokerStatus::default()
        };
        let text = render("tcp://x:1", &status);
        assert!(
            text.contains("role standalone, state active, up 1m 1s"),
            "{text}"
        );
        assert!(
            text.contains("service echo: 2 workers (1 idle), 3 queued"),
            "{text}"
        );
        assert!(!text.contains("peer"), "{text}");
    }
}
