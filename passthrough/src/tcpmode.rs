//! TCP mode (`--source tcp --sink tcp`): Wallaroo's plain TCP source and
//! sink, for crasher's TCP mode profile (`env/tcp.toml`), which blasts
//! length-framed records with `crasher blast` and collects the output with
//! `crasher receive`.
//!
//! Only the two ends change; the cluster in between is the same one:
//! - [`source`] replaces the connector-protocol ingress. It reads records
//!   (a `u32` big-endian length, then that many bytes), routes each by its
//!   key, the first byte of the record's payload (so the key letter of a
//!   harness line, as in connector mode), and sends it to the key's owner
//!   over the usual worker-to-worker data links, under the same routing
//!   gate. A data-link batch then carries whole framed records instead of
//!   lines. There is nothing to dedup or ack. While the cluster recovers
//!   (the gate is inactive) the source stops reading, so the sender is held
//!   back by TCP flow control instead of losing records.
//! - [`sink`] replaces the 2PC owner. Each worker keeps one plain TCP
//!   connection to `--out` and writes every record it owns, framed as it
//!   came in, in arrival order, reconnecting with backoff when the receiver
//!   goes away. It answers the coordinator's checkpoint orders at once
//!   (vote commit, phase 2 done): there is no transaction to run.
//!
//! Membership, the coordinator, checkpoints (which still carry joins and
//! shrinks: routing switches at a checkpoint barrier), rollbacks after a
//! crash and the external API work as in connector mode, so the cluster
//! forms, reports `processing_messages`, grows, shrinks and recovers from
//! crashes. What TCP mode does not give is any delivery guarantee: records
//! in flight when a worker or the receiver is killed are lost, a write
//! that failed is resent in full on the next connection (so a record may
//! arrive twice, or once torn and once whole), and the output of several
//! workers interleaves at the receiver. That is why crasher verifies no
//! data in TCP mode.

pub mod sink;
pub mod source;
