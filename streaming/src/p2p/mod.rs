//! The viewer swarm (issue 4): viewers admitted in P2P mode fetch verified chunks from each
//! other over libp2p and sign receipts for what they received.
//!
//! - [`wire`]: the `/dsp/p2p/1` request/response messages and their codec, with hard limits.
//! - [`serving`]: the sans-IO serving state machine (passes, rate limits, bans, chunk checks).
//! - [`receipts`]: the viewer's receipt book, the seeder's ledger, claim batches.
//! - [`tracker`]: the streamer node as tracker: passes and bounded peer lists.
//! - [`behaviour`]: the libp2p `NetworkBehaviour` (request-response, connection limits, block
//!   list) and the transports (QUIC, TCP + noise + yamux); its async driver is
//!   [`crate::net::p2p`].

pub mod behaviour;
pub mod receipts;
pub mod serving;
pub mod tracker;
pub mod wire;
