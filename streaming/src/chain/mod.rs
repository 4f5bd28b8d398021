//! Talking to the DSP chain from the `dsp` tool: reading credits and claim state, and
//! submitting the seeder's `claim` and `withdraw_credits` extrinsics.
//!
//! - [`extrinsic`]: sans-IO encoding and signing of the few `pallet-dsp` calls the tool sends,
//!   guarded by the runtime's `transaction_version`.
//! - [`client`]: a JSON-RPC client over HTTP (the node's `--rpc-port`).
//! - [`discovery`]: choosing a streamer from the on-chain registry by load and RTT (sans-IO
//!   ranking); [`probe`]: the registry reads and TCP probes that feed it.

pub mod client;
pub mod discovery;
pub mod extrinsic;
pub mod probe;
