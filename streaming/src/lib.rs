//! # DSP streaming data plane
//!
//! The video half of DSP (DESIGN.md sections 3, 4 and 8), usable without a chain:
//!
//! - [`clock`]: the one clock of every core, `u64` milliseconds passed in ([`clock::Millis`]),
//!   and the drivers' [`clock::Clock`].
//! - [`protocol`]: the wire protocol (`PROTOCOL.md`): length-prefixed SCALE frames, the same over
//!   TCP and over one QUIC stream.
//! - [`segment`]: signing segment headers, chunking, verifying every chunk on arrival.
//! - [`ts`]: cutting MPEG-TS from ffmpeg into segments at key frames.
//! - [`hls_ingest`]: following a playlist written by an HLS muxer (`dsp publish --hls-dir`).
//! - [`server`]: the server session state machine, the admission rule, the live window, the
//!   table of streams held.
//! - [`viewer`]: the viewer's segment buffer (no gap, no duplicate), the transport controller
//!   (QUIC first, TCP when UDP is blocked or worse), the HLS playlist, and the adaptive-bitrate
//!   controller with its trace simulator (`streaming/ABR.md`).
//! - [`publisher`]: the origin's per-server queue of unacknowledged segments.
//! - [`p2p`]: P2P mode's cores: the chunk scheduler and the player model ([`p2p::playout`]),
//!   upload cap, seed rotation, neighbour choice, the serving state machine (passes, rate limits,
//!   bans), receipts (viewer book, seeder ledger, claim batches), and the viewer swarm's
//!   request/response wire protocol with its libp2p behaviour.
//! - `fuzz` (only in tests and with the `fuzzing` feature): fuzz harnesses for the decoders, the
//!   media inputs and the server session; the libFuzzer targets in `fuzz/` call them.
//! - [`sim`]: the discrete-event simulator behind `dsp sim`, running those cores for thousands of
//!   viewers on a simulated clock and network.
//! - [`chain`]: the tool's chain client: credits, claim state, signed `claim` extrinsics, and
//!   streamer discovery (ranking sans-IO in [`chain::discovery`], probes in [`chain::probe`]).
//! - [`net`]: the thin tokio / quinn / libp2p drivers around those state machines, the HLS
//!   gateway, QUIC TLS, recorded streams on disk, the seeder's ledger file, and the load
//!   generator behind `dsp load`.
//!
//! Sans-IO (no sockets, no files, no clock read; inputs through `handle_*(now, …)`, outputs
//! through `poll_*`): [`protocol`], [`segment`], [`ts`], [`hls_ingest`], [`server`], [`viewer`],
//! [`publisher`], [`p2p`] except [`p2p::behaviour`] (which builds the libp2p swarm),
//! [`chain::extrinsic`] and [`chain::discovery`]. The IO lives in [`net`], [`chain::client`] and
//! [`chain::probe`]. [`sim`] runs the cores on its simulated clock and reads the wall clock only
//! to report its own run time. One clock for every core: a `u64` millisecond count passed in,
//! never read ([`clock::Millis`], also [`p2p::Millis`]); the drivers read it from a
//! [`clock::Clock`] (tokio's clock, so tests on paused time drive the cores too).

pub mod chain;
pub mod clock;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
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
