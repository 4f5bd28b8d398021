//! JSON answers of the node's `dsp_*` RPC methods that a client in this workspace reads as
//! well (the `dsp` CLI's `credits` and `claim`), and the session counts `dsp_liveLoad` reports:
//! one serde type each, used by the node's RPC and by its clients, so the two sides cannot
//! drift apart.
//!
//! The JSON field names (camelCase) are part of the node's public interface: dApps read them.
//! The tests below pin them.

use crate::{ClaimStateView, CreditsView, EpochIndex, Units};
use serde::{Deserialize, Serialize};

/// An account's credits (`dsp_credits`), in the chain's smallest unit (10^-12 DSP).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credits {
	/// Earned and not withdrawn.
	pub available: u128,
	/// Earned in total.
	pub earned_total: u128,
	/// Units paid in total.
	pub units_total: Units,
	/// Claim items that paid.
	pub items_paid: u32,
}

impl From<CreditsView<u128>> for Credits {
	fn from(v: CreditsView<u128>) -> Self {
		Self {
			available: v.available,
			earned_total: v.earned_total,
			units_total: v.units_total,
			items_paid: v.items_paid,
		}
	}
}

/// What the chain has paid for one (stream, epoch, viewer, seeder) (`dsp_claimState`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimState {
	/// Epoch of the block read.
	pub current_epoch: EpochIndex,
	/// Whether claims for the asked epoch are accepted now.
	pub claimable: bool,
	/// Units already paid to this seeder for this viewer.
	pub claimed_units: Units,
	/// Units already paid for this viewer over all seeders.
	pub viewer_epoch_units: Units,
}

impl From<ClaimStateView> for ClaimState {
	fn from(v: ClaimStateView) -> Self {
		Self {
			current_epoch: v.current_epoch,
			claimable: v.claimable,
			claimed_units: v.claimed_units,
			viewer_epoch_units: v.viewer_epoch_units,
		}
	}
}

/// Open viewer sessions per admission mode and transport (`sessionsByTransport` of
/// `dsp_liveLoad`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsByTransport {
	/// Direct sessions over TCP.
	pub direct_tcp: u64,
	/// Direct sessions over QUIC.
	pub direct_quic: u64,
	/// P2P-mode sessions (tracker, header feed, urgent fetches) over TCP.
	pub p2p_tcp: u64,
	/// P2P-mode sessions over QUIC.
	pub p2p_quic: u64,
}

#[cfg(test)]
mod tests {
	use super::*;
	use serde_json::json;

	/// Serializes `value`, checks the JSON is `expected` exactly, and reads it back.
	fn round_trip<T>(value: T, expected: serde_json::Value)
	where
		T: Serialize + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug,
	{
		let text = serde_json::to_string(&value).unwrap();
		assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), expected);
		assert_eq!(serde_json::from_str::<T>(&text).unwrap(), value);
	}

	#[test]
	fn credits_json_keeps_the_rpc_field_names() {
		// Above 2^53 on purpose: balances are JSON integers, not floats.
		let big = (1u128 << 60) + 1;
		let credits: Credits =
			CreditsView { available: big, earned_total: 2 * big, units_total: 3, items_paid: 4 }
				.into();
		round_trip(
			credits,
			json!({ "available": big, "earnedTotal": 2 * big, "unitsTotal": 3, "itemsPaid": 4 }),
		);
	}

	#[test]
	fn claim_state_json_keeps_the_rpc_field_names() {
		let state: ClaimState = ClaimStateView {
			current_epoch: 7,
			claimable: true,
			claimed_units: 10,
			viewer_epoch_units: 25,
		}
		.into();
		round_trip(
			state,
			json!({
				"currentEpoch": 7,
				"claimable": true,
				"claimedUnits": 10,
				"viewerEpochUnits": 25
			}),
		);
	}

	#[test]
	fn sessions_by_transport_json_keeps_the_rpc_field_names() {
		let sessions =
			SessionsByTransport { direct_tcp: 1, direct_quic: 2, p2p_tcp: 3, p2p_quic: 4 };
		round_trip(sessions, json!({ "directTcp": 1, "directQuic": 2, "p2pTcp": 3, "p2pQuic": 4 }));
	}
}
