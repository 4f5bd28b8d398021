//! Network lab helpers for `scripts/netlab.sh`: the machine's kernel has no `netem`, so delay
//! and jitter come from a userspace relay. [`schedule`] is the sans-IO core (when a packet or a
//! read leaves the relay), [`relay`] the tokio shell that forwards UDP and TCP through it,
//! [`args`] the command line of `netlab-relay`.

pub mod args;
pub mod relay;
pub mod schedule;
