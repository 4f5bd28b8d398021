//! Who gets in: the capacity rule (direct, P2P or full) and the rotation over the other
//! streamers that refused viewers are redirected to.

use crate::protocol::{ErrorCode, ServerAddrs, MAX_REDIRECT_SERVERS};
use dsp_primitives::{AdmissionMode, CapacitySettings};

/// Default of [`Admission::with_max_p2p_sessions`]: P2P sessions cost the node a header feed,
/// seeded chunks and urgent fetches each (a few KiB/s apiece, far less than a direct session),
/// and a tracker entry; 10 000 of them is a few tens of Mbit/s of egress and a few MiB of state.
pub const DEFAULT_MAX_P2P_SESSIONS: u32 = 10_000;

/// The capacity rule applied to live sessions (DESIGN.md section 2).
///
/// Below `p2p_threshold = floor(max_streams * (1 - r))` direct sessions a viewer is admitted
/// directly. At or above it the rule puts it in P2P mode, which is admitted only if the server
/// can issue passes ([`Self::with_p2p`]), `r > 0` ("r = 0 means no P2P": a streamer that shares
/// nothing of its capacity with a swarm is simply full at `max_streams`), and fewer than
/// `max_p2p_sessions` P2P sessions are open; otherwise the viewer is refused with
/// [`ErrorCode::Full`].
#[derive(Clone, Debug)]
pub struct Admission {
	settings: CapacitySettings,
	p2p_enabled: bool,
	max_p2p_sessions: u32,
	direct: u32,
	p2p: u32,
	refused: u64,
}

/// Sessions per mode, for logs and RPC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
	/// Direct (TCP or QUIC) viewer sessions open.
	pub direct: u32,
	/// P2P sessions open (tracker sessions of viewers admitted in P2P mode).
	pub p2p: u32,
	/// Viewers refused since start.
	pub refused: u64,
}

impl Admission {
	/// Admission under `settings`, without P2P (see [`Self::with_p2p`]), at most
	/// [`DEFAULT_MAX_P2P_SESSIONS`] P2P sessions.
	pub fn new(settings: CapacitySettings) -> Self {
		Self {
			settings,
			p2p_enabled: false,
			max_p2p_sessions: DEFAULT_MAX_P2P_SESSIONS,
			direct: 0,
			p2p: 0,
			refused: 0,
		}
	}

	/// Whether viewers the rule puts in P2P mode are admitted (the server can issue passes) or
	/// refused with [`ErrorCode::Full`].
	pub fn with_p2p(mut self, enabled: bool) -> Self {
		self.p2p_enabled = enabled;
		self
	}

	/// Most P2P sessions open at once; further P2P admissions are refused with
	/// [`ErrorCode::Full`].
	pub fn with_max_p2p_sessions(mut self, max: u32) -> Self {
		self.max_p2p_sessions = max;
		self
	}

	/// Applies new settings; open sessions are kept.
	pub fn set_settings(&mut self, settings: CapacitySettings) {
		self.settings = settings;
	}

	/// Decides for a new viewer (see the type's docs for when P2P mode is refused).
	pub fn try_admit(&mut self) -> Result<AdmissionMode, ErrorCode> {
		match self.settings.admit(self.direct) {
			AdmissionMode::Direct => {
				self.direct += 1;
				Ok(AdmissionMode::Direct)
			}
			AdmissionMode::P2p
				if self.p2p_enabled
					&& !self.settings.streaming_rate.is_zero()
					&& self.p2p < self.max_p2p_sessions =>
			{
				self.p2p += 1;
				Ok(AdmissionMode::P2p)
			}
			AdmissionMode::P2p => {
				self.refused += 1;
				Err(ErrorCode::Full)
			}
		}
	}

	/// A session admitted in `mode` ended.
	pub fn release(&mut self, mode: AdmissionMode) {
		match mode {
			AdmissionMode::Direct => self.direct = self.direct.saturating_sub(1),
			AdmissionMode::P2p => self.p2p = self.p2p.saturating_sub(1),
		}
	}

	/// Current counts.
	pub fn stats(&self) -> AdmissionStats {
		AdmissionStats { direct: self.direct, p2p: self.p2p, refused: self.refused }
	}
}

/// The other streamers a full server sends refused viewers to, sans-IO. The node replaces the
/// list at every finalized block ([`Self::set`]); each refusal takes up to
/// [`MAX_REDIRECT_SERVERS`] of them, starting one further along the list than the previous
/// refusal, so that refused viewers (who try the first entry first) spread over all of them.
#[derive(Clone, Debug, Default)]
pub struct RedirectList {
	servers: Vec<ServerAddrs>,
	next: usize,
}

impl RedirectList {
	/// Replaces the list. Entries beyond the wire limits ([`ServerAddrs::check`]) are left out
	/// (a viewer would refuse the whole message) and returned for logging. The rotation goes
	/// on where it was: the list is set at every block, and restarting at its head each time
	/// would favour the first entries.
	pub fn set(&mut self, servers: Vec<ServerAddrs>) -> Vec<ServerAddrs> {
		let (ok, bad): (Vec<_>, Vec<_>) = servers.into_iter().partition(|s| s.check().is_ok());
		self.servers = ok;
		bad
	}

	/// Streamers known.
	pub fn len(&self) -> usize {
		self.servers.len()
	}

	/// Whether no other streamer is known.
	pub fn is_empty(&self) -> bool {
		self.servers.is_empty()
	}

	/// The servers for the next refusal (empty when none are known), rotated by one per call.
	pub fn next_redirect(&mut self) -> Vec<ServerAddrs> {
		let n = self.servers.len();
		if n == 0 {
			return Vec::new();
		}
		let start = self.next % n;
		self.next = (start + 1) % n;
		(0..n.min(MAX_REDIRECT_SERVERS)).map(|i| self.servers[(start + i) % n].clone()).collect()
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::server::test_util::streamer;

	#[test]
	fn admission_applies_the_capacity_rule_and_refuses_p2p() {
		use dsp_primitives::Perbill;
		let mut a = Admission::new(CapacitySettings {
			max_streams: 4,
			streaming_rate: Perbill::from_percent(50),
		});
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		assert_eq!(a.try_admit(), Err(ErrorCode::Full));
		a.release(AdmissionMode::Direct);
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		a.set_settings(CapacitySettings { max_streams: 4, streaming_rate: Perbill::zero() });
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		assert_eq!(a.stats(), AdmissionStats { direct: 3, p2p: 0, refused: 1 });
	}

	#[test]
	fn admission_with_p2p_admits_beyond_the_threshold_and_counts_per_mode() {
		use dsp_primitives::Perbill;
		let settings =
			CapacitySettings { max_streams: 2, streaming_rate: Perbill::from_percent(50) };
		let mut a = Admission::new(settings).with_p2p(true);
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		assert_eq!(a.try_admit(), Ok(AdmissionMode::P2p));
		assert_eq!(a.try_admit(), Ok(AdmissionMode::P2p));
		assert_eq!(a.stats(), AdmissionStats { direct: 1, p2p: 2, refused: 0 });
		a.release(AdmissionMode::P2p);
		a.release(AdmissionMode::Direct);
		assert_eq!(a.stats(), AdmissionStats { direct: 0, p2p: 1, refused: 0 });
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
	}

	/// Admits until refused (at most `limit` tries); the modes admitted, in order.
	fn admit_all(a: &mut Admission, limit: usize) -> Vec<AdmissionMode> {
		std::iter::from_fn(|| a.try_admit().ok()).take(limit).collect()
	}

	#[test]
	fn admission_follows_the_specification_table() {
		use dsp_primitives::Perbill;
		let settings = |rate| CapacitySettings { max_streams: 2000, streaming_rate: rate };
		let count = |modes: &[AdmissionMode], m| modes.iter().filter(|x| **x == m).count();
		// r = 0: 2000 direct, then full even though the server can issue passes.
		let mut a = Admission::new(settings(Perbill::zero())).with_p2p(true);
		let modes = admit_all(&mut a, 5000);
		assert_eq!((count(&modes, AdmissionMode::Direct), modes.len()), (2000, 2000));
		assert_eq!(a.try_admit(), Err(ErrorCode::Full));
		// r = 0.5: 1000 direct, then P2P up to the P2P cap.
		let mut a = Admission::new(settings(Perbill::from_percent(50)))
			.with_p2p(true)
			.with_max_p2p_sessions(3000);
		let modes = admit_all(&mut a, 5000);
		assert!(modes[..1000].iter().all(|m| *m == AdmissionMode::Direct));
		assert_eq!(count(&modes, AdmissionMode::P2p), 3000);
		// r = 1: every viewer in P2P mode.
		let mut a = Admission::new(settings(Perbill::one())).with_p2p(true);
		assert_eq!(a.try_admit(), Ok(AdmissionMode::P2p));
		assert_eq!(a.stats(), AdmissionStats { direct: 0, p2p: 1, refused: 0 });
	}

	#[test]
	fn r_zero_at_max_streams_is_full_even_with_p2p() {
		use dsp_primitives::Perbill;
		let mut a =
			Admission::new(CapacitySettings { max_streams: 1, streaming_rate: Perbill::zero() })
				.with_p2p(true);
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		assert_eq!(a.try_admit(), Err(ErrorCode::Full));
		assert_eq!(a.stats(), AdmissionStats { direct: 1, p2p: 0, refused: 1 });
		// Once r > 0 the same viewer would be admitted in P2P mode.
		a.set_settings(CapacitySettings { max_streams: 1, streaming_rate: Perbill::one() });
		assert_eq!(a.try_admit(), Ok(AdmissionMode::P2p));
	}

	#[test]
	fn p2p_admissions_stop_at_the_p2p_cap() {
		use dsp_primitives::Perbill;
		let mut a =
			Admission::new(CapacitySettings { max_streams: 1, streaming_rate: Perbill::one() })
				.with_p2p(true)
				.with_max_p2p_sessions(2);
		assert_eq!(admit_all(&mut a, 10), vec![AdmissionMode::P2p, AdmissionMode::P2p]);
		assert_eq!(a.try_admit(), Err(ErrorCode::Full));
		a.release(AdmissionMode::P2p);
		assert_eq!(a.try_admit(), Ok(AdmissionMode::P2p));
		// `admit_all` stopped at a refusal too.
		assert_eq!(a.stats(), AdmissionStats { direct: 0, p2p: 2, refused: 2 });
	}

	#[test]
	fn redirects_rotate_over_the_other_streamers() {
		let mut r = RedirectList::default();
		assert!(r.next_redirect().is_empty());
		let bad = ServerAddrs { tcp: Some("x".repeat(200)), quic: None };
		assert_eq!(r.set(vec![streamer(1), bad.clone(), streamer(2), streamer(3)]), vec![bad]);
		assert_eq!(r.len(), 3);
		let firsts: Vec<ServerAddrs> = (0..4).map(|_| r.next_redirect()[0].clone()).collect();
		assert_eq!(firsts, vec![streamer(1), streamer(2), streamer(3), streamer(1)]);
		assert_eq!(r.next_redirect(), vec![streamer(2), streamer(3), streamer(1)]);
		// A new list (as every block brings) continues the rotation rather than restarting it;
		// at most MAX_REDIRECT_SERVERS per refusal, still rotating over all of them.
		r.set((1..=10).map(streamer).collect());
		let first = r.next_redirect();
		assert_eq!(first.len(), MAX_REDIRECT_SERVERS);
		assert_eq!(first[0], streamer(3));
		assert_eq!(first[7], streamer(10));
		assert_eq!(r.next_redirect()[0], streamer(4));
	}
}
