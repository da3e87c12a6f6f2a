//! `hearth status`: each broker's `hearth.status`, as a readable block (one broker), a
//! table with one column per broker (a pair, side by side), or JSON lines.

use std::time::Duration;

use clap::Args;
use hearth_proto::status::{BrokerStatus, Role};
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
/// each one of a pair), all at once so that the answers describe one moment. Exit 1 if any
/// broker does not answer.
pub fn status(connection: &Connection, args: StatusArgs) -> anyhow::Result<Outcome> {
    let results: Vec<Result<BrokerStatus, anyhow::Error>> = std::thread::scope(|scope| {
        let asks: Vec<_> = connection
            .brokers
            .iter()
            .map(|broker| scope.spawn(move || ask(connection, broker)))
            .collect();
        asks.into_iter()
            .map(|ask| {
                ask.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("status thread panicked")))
            })
            .collect()
    });
    let answers: Vec<(&str, Result<BrokerStatus, String>)> = connection
        .brokers
        .iter()
        .zip(results)
        .map(|(broker, result)| (broker.as_str(), result.map_err(|e| format!("{e:#}"))))
        .collect();
    if args.json {
        for (broker, result) in &answers {
            let line = match result {
                Ok(status) => json!({ "broker": broker, "status": status }),
                Err(e) => json!({ "broker": broker, "error": e }),
            };
            println!("{line}");
        }
    } else if let [(broker, result)] = answers.as_slice() {
        match result {
            Ok(status) => print!("{}", render(broker, status)),
            Err(e) => println!("broker {broker}: unreachable: {e}\n"),
        }
    } else {
        print!("{}", render_side_by_side(&answers));
    }
    let all_answered = answers.iter().all(|(_, r)| r.is_ok());
    Ok(if all_answered {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// One broker's status, through a client that knows only that broker.
fn ask(connection: &Connection, broker: &str) -> anyhow::Result<BrokerStatus> {
    let single = Connection {
        brokers: vec![broker.to_owned()],
        timeout: connection.timeout,
    };
    Ok(single.client()?.status()?)
}

/// A table with one column per broker, one row per fact; a broker that did not answer gets
/// an `unreachable` column, and its error below the table.
fn render_side_by_side(answers: &[(&str, Result<BrokerStatus, String>)]) -> String {
    let statuses: Vec<Option<&BrokerStatus>> =
        answers.iter().map(|(_, r)| r.as_ref().ok()).collect();
    let row = |label: &str, cell: &dyn Fn(&BrokerStatus) -> String| {
        let mut cells = vec![label.to_owned()];
        cells.extend(
            statuses
                .iter()
                .map(|s| s.map_or_else(|| "-".to_owned(), cell)),
        );
        cells
    };
    let mut rows = vec![
        std::iter::once(String::new())
            .chain(answers.iter().map(|(b, _)| (*b).to_owned()))
            .collect::<Vec<_>>(),
        row("role", &|s| s.role.to_string()),
    ];
    let mut state_row = row("state", &|s| s.state.to_string());
    for (cell, status) in state_row[1..].iter_mut().zip(&statuses) {
        if status.is_none() {
            "unreachable".clone_into(cell);
        }
    }
    rows.push(state_row);
    let paired = statuses
        .iter()
        .flatten()
        .any(|s| s.role != Role::Standalone || s.peer.is_some());
    if paired {
        rows.push(row("peer", &|s| {
            let alive = if s.peer_alive { "alive" } else { "silent" };
            match &s.peer {
                Some(p) => format!("{alive} ({})", peer_state(p)),
                None => alive.to_owned(),
            }
        }));
        rows.push(row(
            "peer last heard",
            &|s| match s.peer.as_ref().and_then(|p| p.last_heard_ms) {
                Some(ms) => format!("{ms} ms ago"),
                None => "never".to_owned(),
            },
        ));
        rows.push(row("term", &|s| s.term.to_string()));
        rows.push(row("failovers", &|s| s.failovers.to_string()));
        rows.push(row("held requests", &|s| s.held_requests.to_string()));
    }
    rows.push(row("state seq", &|s| s.state_seq.to_string()));
    rows.push(row("state keys", &|s| s.state_keys.to_string()));
    if paired {
        rows.push(row("replication lag", &|s| s.state_lag.to_string()));
        rows.push(row("waiting for peer", &|s| {
            if s.waiting_for_peer.is_some() {
                "yes (see its /status)".to_owned()
            } else {
                "no".to_owned()
            }
        }));
    }
    rows.push(row("uptime", &|s| uptime(s.uptime_ms)));
    let mut services: Vec<&str> = Vec::new();
    for svc in statuses.iter().flatten().flat_map(|s| &s.services) {
        if !services.contains(&svc.name.as_str()) {
            services.push(&svc.name);
        }
    }
    for name in services {
        rows.push(row(&format!("service {name}"), &|s| {
            s.services.iter().find(|svc| svc.name == name).map_or_else(
                || "no workers".to_owned(),
                |svc| {
                    format!(
                        "{} workers ({} idle), {} queued",
                        svc.workers, svc.idle_workers, svc.queue_depth
                    )
                },
            )
        }));
    }
    let mut out = table(&rows);
    for (broker, result) in answers {
        if let Err(e) = result {
            out += &format!("{broker}: unreachable: {e}\n");
        }
    }
    out
}

/// Left-aligned columns, two spaces apart, no trailing spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line += &format!("{cell:<width$}  ");
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}

/// Whole seconds, as humantime prints them.
fn uptime(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

/// The human-readable block for one broker.
fn render(broker: &str, s: &BrokerStatus) -> String {
    let uptime = uptime(s.uptime_ms);
    let mut out = format!("broker {broker}\n");
    out += &format!("  role {}, state {}, up {uptime}\n", s.role, s.state);
    if s.role != Role::Standalone || s.peer.is_some() {
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
            out += &format!(
                "  peer {} is {}, {heard}\n",
                peer.endpoint,
                peer_state(peer)
            );
        }
    }
    out += &format!(
        "  state seq {}, {} keys, replication lag {}\n",
        s.state_seq, s.state_keys, s.state_lag
    );
    if let Some(why) = &s.waiting_for_peer {
        out += &format!("  waiting for its peer: {why}\n");
    }
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

/// The peer's last announced state, or `unknown` if it was never heard.
fn peer_state(peer: &hearth_proto::status::PeerStatus) -> &'static str {
    peer.state.map_or("unknown", |s| s.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::status::{PeerStatus, ServiceStatus};

    #[test]
    fn render_names_role_state_and_services() {
        let status = BrokerStatus {
            role: Role::Standalone,
            state: hearth_proto::status::BStarState::Active,
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

    #[test]
    fn side_by_side_has_a_column_per_broker_and_marks_the_unreachable() {
        let pair_member = |role: &str, state: &str, failovers: u64| BrokerStatus {
            role: role.parse().expect("a role name"),
            state: state.parse().expect("a state name"),
            peer_alive: true,
            term: 2,
            failovers,
            uptime_ms: 5_000,
            peer: Some(PeerStatus {
                state: Some(if state == "active" {
                    hearth_proto::status::BStarState::Passive
                } else {
                    hearth_proto::status::BStarState::Active
                }),
                last_heard_ms: Some(120),
                ..PeerStatus::default()
            }),
            services: vec![ServiceStatus {
                name: "echo".into(),
                workers: 2,
                idle_workers: 2,
                queue_depth: 0,
            }],
            ..BrokerStatus::default()
        };
        let answers = [
            ("tcp://a:1", Ok(pair_member("primary", "passive", 0))),
            ("tcp://b:1", Ok(pair_member("backup", "active", 1))),
            ("tcp://c:1", Err("no reply".to_owned())),
        ];
        let text = render_side_by_side(&answers);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        let find = |label: &str| {
            rows.iter()
                .find(|r| r.first() == Some(&label))
                .unwrap_or_else(|| panic!("no {label} row in\n{text}"))
                .clone()
        };
        assert_eq!(rows[0], ["tcp://a:1", "tcp://b:1", "tcp://c:1"], "{text}");
        assert_eq!(find("role"), ["role", "primary", "backup", "-"]);
        assert_eq!(find("state"), ["state", "passive", "active", "unreachable"]);
        assert_eq!(
            find("peer"),
            ["peer", "alive (active)", "alive (passive)", "-"]
        );
        assert_eq!(find("failovers"), ["failovers", "0", "1", "-"]);
        assert_eq!(find("uptime"), ["uptime", "5s", "5s", "-"]);
        assert_eq!(
            find("service echo"),
            [
                "service echo",
                "2 workers (2 idle), 0 queued",
                "2 workers (2 idle), 0 queued",
                "-"
            ]
        );
        assert!(
            text.ends_with("tcp://c:1: unreachable: no reply\n"),
            "{text}"
        );
        // Columns line up: every broker's column starts at the same offset on each row.
        let offset = text.lines().next().unwrap().find("tcp://b:1").unwrap();
        assert_eq!(text.lines().nth(1).unwrap().find("backup"), Some(offset));
    }
}
