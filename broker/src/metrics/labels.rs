//! The label values of the broker's labelled counters that are not decode errors, as enums
//! (see [`hearth_proto::label_enum!`]): each is the one list of its label's values, so
//! every value is exported at 0 from the start and none can be produced unlisted.

hearth_proto::label_enum! {
    /// Why a message was dropped: the `reason` label of `hearth_dropped_messages_total`.
    pub enum DropReason {
        /// Not the active broker (any more): requests, replies and held state replies
        /// dropped on stepping down, replies to requests a passive's workers held.
        NotActive => "not_active",
        /// A reply to a client that has gone from the frontend.
        ClientGone => "client_gone",
        /// A request for a new service name while the broker tracks the most services.
        TooManyServices => "too_many_services",
        /// A request for a service already holding `max_waiting_per_service` requests.
        ServiceQueueFull => "service_queue_full",
        /// A request for a service with no worker while `max_waiting` requests already
        /// wait for such services.
        QueueFull => "queue_full",
        /// A request that waited `request_expiry` for a service with no worker.
        Expired => "expired",
        /// A message to a peer whose send queue is full.
        PeerQueueFull => "peer_queue_full",
        /// A send that failed otherwise.
        SendFailed => "send_failed",
        /// A peer heartbeat the Binary Star table finds impossible.
        PeerFault => "peer_fault",
        /// A held request dropped because the peer turned out alive and serving.
        PeerServing => "peer_serving",
        /// Replication data that came while this broker did not follow its peer.
        ReplicationNotFollowing => "replication_not_following",
    }
}

hearth_proto::label_enum! {
    /// Why a worker was sent DISCONNECT: the `reason` label of
    /// `hearth_worker_disconnects_total`.
    pub enum DisconnectReason {
        /// A second READY from a registered worker.
        SecondReady => "second_ready",
        /// READY for a name the broker reserves (`mmi.*`, `hearth.*`, `state.*`).
        ReservedService => "reserved_service",
        /// REPLY or HEARTBEAT from a worker that is not registered.
        UnknownWorker => "unknown_worker",
        /// A command a worker never sends (REQUEST).
        ProtocolError => "protocol_error",
        /// A REPLY for a request the worker does not hold.
        UnexpectedReply => "unexpected_reply",
        /// Silent for `liveness` heartbeats.
        Expired => "expired",
    }
}

hearth_proto::label_enum! {
    /// How a follower was brought up to date: the `kind` label of
    /// `hearth_state_catchups_total`.
    pub enum CatchupKind {
        /// From the in-memory tail of recent changes.
        Tail => "tail",
        /// From a snapshot, in parts.
        Snapshot => "snapshot",
    }
}
