//! # DSP streaming data plane
//!
//! The video half of DSP (DESIGN.md sections 3, 4 and 8), usable without a chain:
//!
//! - [`protocol`]: the wire protocol (`PROTOCOL.md`): length-prefixed SCALE frames, the same over
//!   TCP and over one QUIC stream.
//! - [`segment`]: signing segment headers, chunking, verifying every chunk on arrival.
//! - [`ts`]: cutting MPEG-TS from ffmpeg into segments at key frames.
//! - [`hls_ingest`]: following a playlist written by an HLS muxer (`dsp publish --hls-dir`).
//! - [`server`]: the server session state machine, the admission rule, the live window, the
//!   table of streams held.
//! - [`viewer`]: the viewer's segment buffer (no gap, no duplicate), the transport controller
//!   (QUIC first, TCP when UDP is blocked or worse), and the HLS playlist.
//! - [`publisher`]: the origin's per-server queue of unacknowledged segments.
//! - [`chain`]: the tool's chain client: credits, claim state, signed `claim` extrinsics.
//! - [`p2p`]: the viewer swarm: its request/response wire protocol, the serving state machine
//!   (passes, rate limits, bans), and receipts (viewer book, seeder ledger, claim batches).
//! - [`p2p`]: P2P mode's cores: the chunk scheduler, upload cap, seed rotation, neighbour
//!   choice.
//! - [`sim`]: the discrete-event simulator behind `dsp sim`, running those cores for thousands of
//!   viewers on a simulated clock and network.
//! - [`net`]: the thin tokio / quinn drivers around those state machines, the HLS gateway, QUIC
//!   TLS, recorded streams on disk, and the load generator behind `dsp load`.
//!
//! Everything but [`net`] and [`chain::client`] is sans-IO: no sockets, no clock; inputs come through
//! `handle_*(now, …)`, outputs leave through `poll_*`.

pub mod chain;
pub mod hls_ingest;
pub mod net;
pub mod p2p;
pub mod protocol;
pub mod publisher;
pub mod segment;
pub mod server;
pub mod sim;
pub mod ts;
pub mod viewer;
