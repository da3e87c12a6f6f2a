//! The pair driver: the Binary Star state machine plus the timing around it — peer expiry,
//! heartbeats, held client requests, freeze detection — still free of sockets and clocks.
//!
//! The reactor feeds it clock readings ([`Pair::observe`]), peer heartbeats, peer-link
//! disconnects and client requests, and asks it whether to serve ([`Gate`]). Requests it
//! holds come back later through [`Pair::take_released`] (serve them now) or
//! [`Pair::take_dropped`] (the peer is alive and active: let the client retry there).
//!
//! Beyond the guide's Binary Star:
//! * **Held requests.** A passive (or a primary at start-up) that gets a client request
//!   while its peer still looks alive holds it until the peer's next heartbeat proves the
//!   peer alive (then drops it) or the peer expires (then takes over and serves it at once).
//! * **An active serves only while it knows the peer cannot have replaced it.** The peer
//!   takes over only after two heartbeats of silence. Every heartbeat carries a beat number
//!   and acknowledges the last beat heard from the other side, so the active knows when the
//!   peer last heard it: it serves while that was less than two heartbeats ago (minus a
//!   margin), or once the peer itself has been silent for a full expiry. Otherwise it holds
//!   requests until the news arrives. This is what keeps a broker that was frozen (SIGSTOP,
//!   a VM pause) from answering a single request after its peer took over: on waking, its
//!   last acknowledged beat is old, so it waits for the peer's heartbeat, which makes it
//!   step down. A running active never waits: its peer acknowledges each of its beats
//!   within a quarter heartbeat, not at its own pace (see `Pair::acknowledge_soon`).
//! * **Silence counts only while awake.** Peer silence is measured from the later of the
//!   last heartbeat and the moment this broker last resumed after a stall (a gap between two
//!   clock readings longer than any poll wait), so a broker that was itself frozen never
//!   mistakes the heartbeats still waiting in its socket for a silent peer.
//! * **Fast expiry.** A closed peer-link connection with no heartbeat after it (the peer
//!   process died and its kernel closed the socket) counts as peer expiry at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::bstar::{transition, Event, Fault, Node, PairRole, State, Verdict};

/// Client requests held at most; beyond that they are refused.
const MAX_HELD: usize = 10_000;

/// What to do with a client request now.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate<T> {
    /// Serve it.
    Serve(T),
    /// The pair driver keeps it until the peer's news decides.
    Held,
    /// Do not serve it (a lone backup, too many held).
    Refuse(T),
}

/// What a heartbeat to the peer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingBeat {
    pub state: State,
    pub term: u64,
    pub beat: u64,
    pub heard: u64,
}

/// How much earlier than the peer could expire us we stop serving without fresh news.
fn safety_margin(heartbeat: Duration) -> Duration {
    heartbeat / 10
}

/// How soon a broker that is not active acknowledges its active peer's beat (see
/// [`Pair::acknowledge_soon`]): soon enough to leave most of the lease's spare heartbeat
/// for latency and late wake-ups, late enough that a beat arriving a little behind this
/// broker's own schedule does not cost an extra heartbeat every time.
fn ack_delay(heartbeat: Duration) -> Duration {
    heartbeat / 4
}

/// One broker's side of the pair.
pub struct Pair<T> {
    node: Node,
    heartbeat: Duration,
    last_heard: Option<Instant>,
    disconnected_at: Option<Instant>,
    peer_state: Option<State>,
    next_heartbeat: Instant,
    beat: u64,
    /// Recent beats we sent, with when, to read the peer's acknowledgements.
    sent: VecDeque<(u64, Instant)>,
    /// When the latest beat the peer acknowledged was sent.
    acked_at: Option<Instant>,
    /// When the first beat after a gap in our own beats long enough for the peer to have
    /// expired us was sent (see [`Pair::sure_until`]).
    resumed_beats_at: Option<Instant>,
    heard_beat: u64,
    held: VecDeque<T>,
    /// Since when this broker has been running without a stall.
    listening_since: Instant,
    last_reading: Instant,
    released: Vec<T>,
    dropped: Vec<T>,
    /// Times this broker went from passive to active.
    pub failovers: u64,
    /// Times this broker stepped down from active on finding a newer active peer.
    pub step_downs: u64,
    /// Stalls detected (the process was not running for a while).
    pub stalls: u64,
    /// What the state model allows (see [`Activation`]).
    activation: Activation,
}

/// What the state model allows the Binary Star side, set by the broker's core before each
/// event: Binary Star alone knows nothing of data, so a broker whose data may be behind
/// its peer's must not become active however the table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    /// Whether this broker may become active (its data cannot be behind).
    pub may_activate: bool,
    /// Whether a backup at start-up may serve alone once its peer has expired (it was
    /// the active that acknowledged writes alone when it last ran). The guide's Binary
    /// Star never lets a backup start alone.
    pub lone_backup_may_serve: bool,
    /// How this broker's state model compares with the peer's, as of the peer's last
    /// heartbeat.
    pub data: DataOrder,
}

/// Whose state model is newer (the term of the last change, then the seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOrder {
    /// The peer's: an active steps down for it.
    PeerNewer,
    /// The same.
    Same,
    /// Ours: between two brokers that are not serving, the newer one becomes active.
    OursNewer,
}

impl Default for Activation {
    fn default() -> Self {
        Activation {
            may_activate: true,
            lone_backup_may_serve: false,
            data: DataOrder::Same,
        }
    }
}

/// Beats kept to match acknowledgements against.
const SENT_KEPT: usize = 32;

impl<T> Pair<T> {
    /// A broker starting now in its role's start-up state. `first_beat` should differ
    /// between runs (the broker derives it from its start-up epoch), so that the peer's
    /// acknowledgement of an earlier run's beat is never mistaken for one of ours.
    pub fn new(role: PairRole, heartbeat: Duration, now: Instant, first_beat: u64) -> Pair<T> {
        Pair {
            node: Node::new(role),
            heartbeat,
            last_heard: None,
            disconnected_at: None,
            peer_state: None,
            next_heartbeat: now,
            beat: first_beat,
            sent: VecDeque::with_capacity(SENT_KEPT),
            acked_at: None,
            resumed_beats_at: None,
            heard_beat: 0,
            held: VecDeque::new(),
            listening_since: now,
            last_reading: now,
            released: Vec::new(),
            dropped: Vec::new(),
            failovers: 0,
            step_downs: 0,
            stalls: 0,
            activation: Activation::default(),
        }
    }

    /// Starts from the highest term this broker knew when it last ran (persisted with the
    /// state model), so terms keep rising across restarts.
    pub fn restore_term(&mut self, term: u64) {
        self.node.term = self.node.term.max(term);
    }

    /// Whether the peer has acknowledged a heartbeat this broker sent after it last resumed
    /// from a stall (fresh news, not heartbeats queued while it was stopped).
    pub fn heard_since_resume(&self) -> bool {
        self.acked_at
            .is_some_and(|sent| sent >= self.listening_since)
    }

    /// Sets what the state model allows.
    pub fn set_activation(&mut self, activation: Activation) {
        self.activation = activation;
    }

    /// What the state model allows, as last set.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The table's decision for `event`, with the state model's say over activation.
    fn decide(&self, event: Event, now: Instant) -> Result<(Node, Verdict), Fault> {
        let expiry = self.peer_expiry();
        match transition(self.node, event, now, expiry) {
            Ok((_, Verdict::Activated)) if !self.activation.may_activate => {
                Err(Fault::NotServing(self.node.state))
            }
            Err(Fault::NotServing(State::Backup))
                if event == Event::ClientRequest
                    && now >= expiry
                    && self.activation.may_activate
                    && self.activation.lone_backup_may_serve =>
            {
                let node = Node {
                    state: State::Active,
                    term: self.node.term + 1,
                    ..self.node
                };
                Ok((node, Verdict::Activated))
            }
            other => other,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.node.state
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.node.term
    }

    /// The peer's last announced state, if it was ever heard.
    pub fn peer_state(&self) -> Option<State> {
        self.peer_state
    }

    /// When the peer was last heard.
    pub fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    /// When the peer counts as expired: two heartbeats of silence observed while awake, or
    /// a closed connection with no heartbeat after it.
    pub fn peer_expiry(&self) -> Instant {
        if let Some(at) = self.disconnected_at {
            return at;
        }
        let since = self
            .last_heard
            .map_or(self.listening_since, |h| h.max(self.listening_since));
        since + self.heartbeat * 2
    }

    /// Whether the peer is known to be down: its connection closed and its port refused the
    /// reconnect, with no heartbeat since (no process listens there).
    pub fn peer_gone(&self) -> bool {
        self.disconnected_at.is_some()
    }

    /// Whether the peer has been heard within its expiry.
    pub fn peer_alive(&self, now: Instant) -> bool {
        self.last_heard.is_some() && now < self.peer_expiry()
    }

    /// Whether client requests and replies may flow now: active, and sure the peer has not
    /// replaced us (see the module documentation).
    pub fn serving(&self, now: Instant) -> bool {
        if self.node.state != State::Active {
            return false;
        }
        let acknowledged = self
            .acked_at
            .is_some_and(|sent| now + safety_margin(self.heartbeat) < sent + self.heartbeat * 2);
        // Serving again on the peer's silence alone is an activation of sorts: the state
        // model has its say (the peer may have taken over while this broker was stopped).
        acknowledged || (now >= self.peer_expiry() && self.activation.may_activate)
    }

    /// Feeds a clock reading; true if it reveals a stall: a gap since the previous reading
    /// longer than any poll wait (the reactor wakes at least once a heartbeat).
    pub fn observe(&mut self, now: Instant) -> bool {
        let gap = now.saturating_duration_since(self.last_reading);
        self.last_reading = now;
        if gap > self.heartbeat + self.heartbeat / 5 {
            self.listening_since = now;
            self.stalls += 1;
            return true;
        }
        false
    }

    /// Decides about a client request.
    pub fn client_request(&mut self, now: Instant, request: T) -> Gate<T> {
        if self.node.state == State::Active {
            return if self.serving(now) {
                Gate::Serve(request)
            } else {
                self.hold(request)
            };
        }
        match self.decide(Event::ClientRequest, now) {
            Ok((node, verdict)) => {
                self.apply(now, node, verdict);
                self.settle_held(now);
                Gate::Serve(request)
            }
            Err(Fault::NotServing(State::Backup)) | Err(Fault::SameRole(_)) => {
                Gate::Refuse(request)
            }
            Err(Fault::NotServing(_)) => self.hold(request),
        }
    }

    fn hold(&mut self, request: T) -> Gate<T> {
        if self.held.len() >= MAX_HELD {
            return Gate::Refuse(request);
        }
        self.held.push_back(request);
        Gate::Held
    }

    /// Feeds a heartbeat from the peer: its state, term, beat number, and the last of our
    /// beats it heard.
    pub fn peer_heartbeat(
        &mut self,
        now: Instant,
        state: State,
        term: u64,
        beat: u64,
        heard: u64,
    ) -> Result<Verdict, Fault> {
        let new_beat = beat != self.heard_beat;
        self.heard_beat = beat;
        self.last_heard = Some(now);
        self.disconnected_at = None;
        self.peer_state = Some(state);
        if let Some(&(_, sent)) = self.sent.iter().find(|(b, _)| *b == heard) {
            if self.acked_at.is_none_or(|a| sent > a) {
                self.acked_at = Some(sent);
            }
        }
        let (node, verdict) = match self.decide(Event::from_peer(state, term), now) {
            // Behind the peer's data: stay as we are (and learn of the peer's term) until
            // the state model has caught up.
            Err(Fault::NotServing(_)) => (
                Node {
                    term: self.node.term.max(term),
                    ..self.node
                },
                Verdict::Unchanged,
            ),
            other => other?,
        };
        let (node, verdict) = self.with_data(node, verdict, state, term);
        self.apply(now, node, verdict);
        if new_beat && state == State::Active && self.node.state != State::Active {
            self.acknowledge_soon(now);
        }
        self.settle_held(now);
        Ok(verdict)
    }

    /// Beyond the guide's table, the state model's data decides between brokers that the
    /// table leaves stuck or wrong: an active whose peer holds newer data steps down (it
    /// was frozen or cut off while the peer went on, so it would serve stale state); and
    /// of two brokers where the peer is passive and this one is not serving, the one with
    /// the newer data becomes active (the primary on a tie), so a pair whose stale side
    /// stepped down is never left with no active. (On equal data the guide's table
    /// decides, as it always did.)
    fn with_data(&self, node: Node, verdict: Verdict, peer: State, term: u64) -> (Node, Verdict) {
        let activation = self.activation;
        match (node.state, peer, activation.data) {
            (State::Active, _, DataOrder::PeerNewer) => (
                Node {
                    state: State::Passive,
                    ..node
                },
                Verdict::SteppedDown,
            ),
            (
                State::Primary | State::Backup | State::Passive,
                State::Passive,
                DataOrder::OursNewer,
            ) if activation.may_activate => {
                let known = node.term.max(term);
                (
                    Node {
                        state: State::Active,
                        term: known + 1,
                        ..node
                    },
                    Verdict::Activated,
                )
            }
            _ => (node, verdict),
        }
    }

    /// A broker that is not active acknowledges a new beat of its active peer within
    /// [`ack_delay`], not at whatever phase its own heartbeats happen to have. The active
    /// serves only until two heartbeats (less the margin) after sending the latest beat
    /// the peer acknowledged, and learns of an acknowledgement only with the peer's next
    /// beat. At the peer's own pace, the acknowledgement of the active's next beat could
    /// come up to two heartbeats and two trips after the beat before it: past that limit,
    /// so a healthy active paused for up to a tenth of a heartbeat plus two trips every
    /// heartbeat, depending on the phase of the two schedules (and the pair's start-up
    /// puts the passive's beats just after the active's, the worst phase). Acknowledged
    /// within `ack_delay`, it comes at most one heartbeat, the delay and two trips after
    /// the beat before: a third of a heartbeat to spare for late wake-ups and latency.
    /// Nothing the acknowledgement vouches for changes (it still names the last beat
    /// heard), and the next heartbeat is only brought forward, so the broker still beats
    /// about once a heartbeat, now just after the active's beats.
    fn acknowledge_soon(&mut self, now: Instant) {
        self.next_heartbeat = self.next_heartbeat.min(now + ack_delay(self.heartbeat));
    }

    /// The peer-link connection is up (again): the next heartbeat goes now, so that a peer
    /// that just started learns this broker's state at once rather than up to a heartbeat
    /// later, while its own start-up expiry runs.
    pub fn peer_link_ready(&mut self, now: Instant) {
        self.next_heartbeat = self.next_heartbeat.min(now);
    }

    /// The next heartbeat goes at the next tick (news the peer should have at once).
    pub fn beat_now(&mut self) {
        self.next_heartbeat = self.last_reading;
    }

    /// The peer-link connection closed: unless a heartbeat follows, the peer is gone.
    pub fn peer_disconnected(&mut self, now: Instant) {
        self.disconnected_at = Some(self.disconnected_at.map_or(now, |d| d.min(now)));
    }

    /// Timers: releases or drops held requests whose fate is now known, and says whether a
    /// heartbeat is due (returning what it must carry).
    pub fn tick(&mut self, now: Instant) -> Option<OutgoingBeat> {
        if !self.held.is_empty() {
            if self.serving(now) {
                self.released.extend(self.held.drain(..));
            } else if self.node.state != State::Active && now >= self.peer_expiry() {
                match self.decide(Event::ClientRequest, now) {
                    Ok((node, verdict)) => {
                        self.apply(now, node, verdict);
                        self.released.extend(self.held.drain(..));
                    }
                    Err(_) => self.dropped.extend(self.held.drain(..)),
                }
            }
        }
        if now >= self.next_heartbeat {
            self.beat += 1;
            self.next_heartbeat = now + self.heartbeat;
            let lease = self.heartbeat * 2 - safety_margin(self.heartbeat);
            if self
                .sent
                .back()
                .is_none_or(|&(_, last)| now >= last + lease)
            {
                self.resumed_beats_at = Some(now);
            }
            if self.sent.len() == SENT_KEPT {
                self.sent.pop_front();
            }
            self.sent.push_back((self.beat, now));
            return Some(OutgoingBeat {
                state: self.node.state,
                term: self.node.term,
                beat: self.beat,
                heard: self.heard_beat,
            });
        }
        None
    }

    /// The next moment [`Pair::tick`] has work to do.
    pub fn next_deadline(&self) -> Instant {
        let mut at = self.next_heartbeat;
        if !self.held.is_empty() {
            at = at.min(self.peer_expiry());
        }
        // The moment an active stops being sure of its peer, so the reactor pauses the
        // dispatcher then rather than at the next heartbeat.
        if let Some(sent) = self.acked_at.filter(|_| self.node.state == State::Active) {
            let unsure_at = sent + self.heartbeat * 2 - safety_margin(self.heartbeat);
            if unsure_at > self.last_reading {
                at = at.min(unsure_at);
            }
        }
        at
    }

    /// Held requests to serve now.
    pub fn take_released(&mut self) -> Vec<T> {
        std::mem::take(&mut self.released)
    }

    /// Held requests not to serve (the peer is alive and serving).
    pub fn take_dropped(&mut self) -> Vec<T> {
        std::mem::take(&mut self.dropped)
    }

    /// Requests held right now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes the state machine's decision. A new state is told to the peer at once rather
    /// than at the next heartbeat: a backup that just heard its active peer acknowledges it
    /// now, so an active that paused when the (re)started backup first spoke serves again
    /// within a round trip; a new active is known to its peer a heartbeat sooner.
    fn apply(&mut self, now: Instant, node: Node, verdict: Verdict) {
        match verdict {
            Verdict::Activated if self.node.state == State::Passive => self.failovers += 1,
            Verdict::SteppedDown => self.step_downs += 1,
            _ => {}
        }
        if node.state != self.node.state {
            self.next_heartbeat = self.next_heartbeat.min(now);
        }
        self.node = node;
    }

    /// After news from the peer: held requests are served if we serve, kept while an
    /// active waits for an acknowledgement, and dropped otherwise (the peer is alive).
    fn settle_held(&mut self, now: Instant) {
        if self.held.is_empty() {
            return;
        }
        if self.serving(now) {
            self.released.extend(self.held.drain(..));
        } else if self.node.state != State::Active && self.peer_alive(now) {
            self.dropped.extend(self.held.drain(..));
        }
    }
}

#[cfg(test)]
#[path = "pair_tests.rs"]
mod tests;

#[path = "pair_claim.rs"]
mod claim;
