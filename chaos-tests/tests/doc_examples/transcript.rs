//! The byte-exact exchanges of `docs/protocol.md`, replayed against a real broker.
//!
//! A transcript is a fenced code block whose info string is `transcript`. Each line is
//! one multipart message, sent or expected by one of three sockets:
//!
//! | prefix | socket |
//! |---|---|
//! | `C>` / `C<` | a client's DEALER on the frontend: sends / receives next |
//! | `W>` / `W<` | a worker's DEALER on the frontend: sends / receives next (HEARTBEATs skipped unless expected) |
//! | `F<` | a SUB on the change feed, subscribed to everything: receives next |
//!
//! Frames are double-quoted byte strings (`\xNN`, `\n`, `\"` and `\\` escapes) or a name
//! in angle brackets, such as `<client>`: bound to the frame received where it first
//! appears, compared with (or sent as) that frame afterwards. `#` starts a comment. Each
//! block runs against its own fresh standalone broker with a change feed, so its seqs
//! start at 1.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hearth_chaos_tests::{free_port, LogDir, Proc};

use super::{start_standalone_on, status_of, ExampleBroker};

/// How long an expected message may take.
const EXPECT_WITHIN: Duration = Duration::from_secs(5);

/// Which socket a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    Client,
    Worker,
    Feed,
}

/// One frame of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    Bytes(Vec<u8>),
    Name(String),
}

/// One line of a transcript.
#[derive(Debug, Clone)]
struct Line {
    /// Line number in the document (1-based).
    number: usize,
    socket: Socket,
    sends: bool,
    frames: Vec<Frame>,
}

/// A transcript block: the line number of its opening fence and its lines.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// Line number of the opening fence.
    pub starts_at: usize,
    lines: Vec<Line>,
}

/// Every transcript block of a Markdown document.
pub fn parse(doc: &str) -> anyhow::Result<Vec<Transcript>> {
    let mut blocks = Vec::new();
    let mut open: Option<Transcript> = None;
    for (index, text) in doc.lines().enumerate() {
        let number = index + 1;
        let trimmed = text.trim();
        match open.as_mut() {
            None if trimmed == "```transcript" => {
                open = Some(Transcript {
                    starts_at: number,
                    lines: Vec::new(),
                })
            }
            None => {}
            Some(_) if trimmed == "```" => blocks.extend(open.take()),
            Some(block) => {
                if let Some(line) = parse_line(number, trimmed)? {
                    block.lines.push(line);
                }
            }
        }
    }
    if let Some(block) = open {
        bail!("transcript at line {} is never closed", block.starts_at);
    }
    Ok(blocks)
}

fn parse_line(number: usize, text: &str) -> anyhow::Result<Option<Line>> {
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let (socket, sends) = match text.get(..2) {
        Some("C>") => (Socket::Client, true),
        Some("C<") => (Socket::Client, false),
        Some("W>") => (Socket::Worker, true),
        Some("W<") => (Socket::Worker, false),
        Some("F<") => (Socket::Feed, false),
        _ => bail!("line {number}: starts with neither C>, C<, W>, W< nor F<: {text}"),
    };
    let frames = frames(&text[2..]).with_context(|| format!("line {number}: {text}"))?;
    Ok(Some(Line {
        number,
        socket,
        sends,
        frames,
    }))
}

fn frames(text: &str) -> anyhow::Result<Vec<Frame>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            None | Some('#') => return Ok(out),
            Some('<') => {
                let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                out.push(Frame::Name(name));
            }
            Some('"') => {
                let mut bytes = Vec::new();
                loop {
                    match chars.next() {
                        None => bail!("an unclosed string"),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('x') => {
                                let hex: String = chars.by_ref().take(2).collect();
                                bytes.push(u8::from_str_radix(&hex, 16)?);
                            }
                            Some('n') => bytes.push(b'\n'),
                            Some(c @ ('"' | '\\')) => bytes.push(c as u8),
                            other => bail!("unknown escape \\{other:?}"),
                        },
                        Some(c) => {
                            let mut buf = [0; 4];
                            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
                out.push(Frame::Bytes(bytes));
            }
            Some(other) => bail!("a frame starts with {other:?}, not '\"' or '<'"),
        }
    }
}

/// Bytes as a transcript would write them.
fn shown(frames: &[Vec<u8>]) -> String {
    let frame = |f: &Vec<u8>| {
        let mut s = String::from("\"");
        for &b in f {
            match b {
                b'"' => s.push_str("\\\""),
                b'\\' => s.push_str("\\\\"),
                0x20..=0x7e => s.push(b as char),
                _ => s.push_str(&format!("\\x{b:02x}")),
            }
        }
        s.push('"');
        s
    };
    frames.iter().map(frame).collect::<Vec<_>>().join(" ")
}

const HEARTBEAT: [&[u8]; 3] = [b"", b"MDPW01", b"\x04"];

/// Runs one transcript against a fresh broker; `logs` keeps the broker's output.
pub fn run(doc: &str, transcript: &Transcript, logs: &LogDir) -> anyhow::Result<()> {
    let frontend = format!("tcp://127.0.0.1:{}", free_port());
    let feed = format!("tcp://127.0.0.1:{}", free_port());
    // A PUB socket drops what it publishes before a subscription reaches it. So the
    // subscriber connects first: its subscription goes out with the handshake, as the
    // broker starts, well before the first write (after a status round trip or two).
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB)?;
    sub.set_linger(0)?;
    sub.set_subscribe(b"")?;
    let monitor = format!("inproc://doc-feed-monitor-{}", transcript.starts_at);
    sub.monitor(&monitor, zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32)?;
    let events = ctx.socket(zmq::PAIR)?;
    events.connect(&monitor)?;
    sub.connect(&feed)?;
    let name = format!("broker-line-{}", transcript.starts_at);
    let ExampleBroker { proc, .. } = start_standalone_on(logs, &name, frontend.clone(), feed)?;
    let _broker: Proc = proc;
    if events.poll(zmq::POLLIN, EXPECT_WITHIN.as_millis() as i64)? == 0 {
        bail!("{name}: the change feed did not complete a handshake");
    }
    status_of(&frontend)?;
    let client = dealer(&ctx, &frontend)?;
    let worker = dealer(&ctx, &frontend)?;

    let mut names: HashMap<String, Vec<u8>> = HashMap::new();
    for line in &transcript.lines {
        let socket = match line.socket {
            Socket::Client => &client,
            Socket::Worker => &worker,
            Socket::Feed => &sub,
        };
        let at = || {
            format!(
                "{doc} line {} (transcript at line {})",
                line.number, transcript.starts_at
            )
        };
        if line.sends {
            let frames = line
                .frames
                .iter()
                .map(|f| match f {
                    Frame::Bytes(b) => Ok(b.clone()),
                    Frame::Name(n) => names
                        .get(n)
                        .cloned()
                        .ok_or_else(|| anyhow!("<{n}> is sent before it was received")),
                })
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(at)?;
            socket.send_multipart(frames, 0).with_context(at)?;
            continue;
        }
        let expects_heartbeat = line.frames.len() == 3
            && line
                .frames
                .iter()
                .zip(HEARTBEAT)
                .all(|(f, h)| *f == Frame::Bytes(h.to_vec()));
        let deadline = Instant::now() + EXPECT_WITHIN;
        let got = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if socket.poll(zmq::POLLIN, left.as_millis() as i64)? == 0 {
                bail!("{}: nothing received within {EXPECT_WITHIN:?}", at());
            }
            let got = socket.recv_multipart(0)?;
            let heartbeat = got.len() == 3 && got.iter().zip(HEARTBEAT).all(|(g, h)| g == h);
            if line.socket == Socket::Worker && heartbeat && !expects_heartbeat {
                continue;
            }
            break got;
        };
        let matches = got.len() == line.frames.len()
            && got.iter().zip(&line.frames).all(|(g, want)| match want {
                Frame::Bytes(b) => g == b,
                Frame::Name(n) => names.get(n).map_or(true, |bound| bound == g),
            });
        if !matches {
            let expected: Vec<String> = line
                .frames
                .iter()
                .map(|f| match f {
                    Frame::Bytes(b) => shown(std::slice::from_ref(b)),
                    Frame::Name(n) => format!("<{n}>"),
                })
                .collect();
            bail!(
                "{}:\n expected {}\n received {}",
                at(),
                expected.join(" "),
                shown(&got)
            );
        }
        for (g, want) in got.iter().zip(&line.frames) {
            if let Frame::Name(n) = want {
                names.entry(n.clone()).or_insert_with(|| g.clone());
            }
        }
    }
    Ok(())
}

fn dealer(ctx: &zmq::Context, endpoint: &str) -> anyhow::Result<zmq::Socket> {
    let socket = ctx.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.connect(endpoint)?;
    Ok(socket)
}

#[test]
fn the_transcript_reader_reads_frames_and_names() {
    let doc = "x\n```transcript\n# a comment\nC> \"\" \"MDPC01\" \"a b\" \"\\x01\\\"\" # tail\nW< <client> \"\"\n```\n";
    let blocks = parse(doc).unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].starts_at, 2);
    let lines = &blocks[0].lines;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].number, 4);
    assert_eq!(
        lines[0].frames,
        vec![
            Frame::Bytes(vec![]),
            Frame::Bytes(b"MDPC01".to_vec()),
            Frame::Bytes(b"a b".to_vec()),
            Frame::Bytes(vec![1, b'"']),
        ]
    );
    assert_eq!(lines[1].frames[0], Frame::Name("client".into()));
    assert!(!lines[1].sends && lines[1].socket == Socket::Worker);
    assert!(parse("```transcript\nX> \"\"\n```").is_err());
}
