//! The state model of the home: a key/value map with one global sequence number, TTLs,
//! conditional writes and write ids (pure, no sockets, no clock), and its sled store.
