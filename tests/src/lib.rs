//! Support for end-to-end tests: start real `dsp-node` processes on loopback, talk JSON-RPC to
//! them over plain HTTP, and submit signed extrinsics built from the runtime's own types.
//!
//! Every node runs in its own temporary directory with OS-assigned ports and is killed when its
//! [`Node`] is dropped, so tests can run in parallel and leave nothing behind.

pub mod viewer;

use codec::{Decode, Encode};
use dsp_runtime::{
	Runtime, RuntimeCall, RuntimeEvent, SignedPayload, TxExtension, UncheckedExtrinsic,
};
use serde_json::{json, Value};
use sp_core::{crypto::Ss58Codec, sr25519, Pair, H256};
use sp_crypto_hashing::twox_128;
use sp_runtime::{generic::Era, MultiAddress, MultiSignature};
use std::{
	io::{BufRead, BufReader, Read, Write},
	net::{TcpListener, TcpStream},
	path::PathBuf,
	process::{Child, Command, Stdio},
	sync::{Arc, Mutex},
	time::{Duration, Instant},
};

/// Event records as `System::Events` stores them.
pub type EventRecord = frame_system::EventRecord<RuntimeEvent, H256>;

/// How long a node may take to start its RPC server (a debug build, possibly on a loaded CI
/// machine, compiling the runtime with wasmtime on first use).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

/// Path of the `dsp-node` binary: `$DSP_NODE_BIN`, or the one next to this test's target dir.
pub fn node_binary() -> PathBuf {
	binary("dsp-node", "DSP_NODE_BIN", "dsp-node")
}

/// Path of the `dsp` tool: `$DSP_BIN`, or the one next to this test's target dir.
pub fn dsp_binary() -> PathBuf {
	binary("dsp", "DSP_BIN", "dsp-streaming")
}

fn binary(name: &str, env: &str, package: &str) -> PathBuf {
	if let Ok(path) = std::env::var(env) {
		return path.into();
	}
	// Test executables live in `<target>/<profile>/deps/`; binaries (the benchmark tools of this
	// crate too) in `<target>/<profile>/`.
	let exe = std::env::current_exe().expect("current_exe");
	let mut dir = exe.parent().expect("target dir");
	if dir.ends_with("deps") {
		dir = dir.parent().expect("target dir");
	}
	let path = dir.join(name);
	assert!(
		path.exists(),
		"{} not found: build it first (`cargo build -p {package}`) or set {env}",
		path.display()
	);
	path
}

/// A port the OS says is free now. Another process may take it before we bind it again; tests
/// use it only where a node cannot report the port it bound (p2p, Prometheus).
pub fn free_port() -> u16 {
	TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Streaming-worker options for tests: OS-assigned loopback ports (read them from
/// `dsp_liveLoad`) and no swarm seed, so that several nodes can run side by side. The dev demo
/// stream stays on.
pub const WORKER_ON_LOOPBACK: [&str; 6] =
	["--stream-tcp", "127.0.0.1:0", "--stream-quic", "127.0.0.1:0", "--stream-p2p", "none"];

/// [`WORKER_ON_LOOPBACK`] without the demo stream: what [`Node::start`] uses by default.
const WORKER_QUIET: [&str; 7] = [
	"--stream-tcp",
	"127.0.0.1:0",
	"--stream-quic",
	"127.0.0.1:0",
	"--stream-p2p",
	"none",
	"--no-demo",
];

/// A running `dsp-node` process.
pub struct Node {
	child: Child,
	/// `127.0.0.1:<port>` of its JSON-RPC server.
	pub rpc_addr: String,
	log: Arc<Mutex<String>>,
	_base: Arc<tempfile::TempDir>,
}

impl Node {
	/// Starts `dsp-node <args> --base-path <tmp> --rpc-port 0` and waits for its RPC server.
	///
	/// Unless `args` set any streaming-worker option themselves, the worker listens on
	/// OS-assigned loopback ports (read them from `dsp_liveLoad`), runs no swarm seed and no
	/// demo stream, so that several nodes can run side by side.
	pub fn start(args: &[&str]) -> Node {
		Self::start_at(Arc::new(tempfile::tempdir().expect("temp dir")), args)
	}

	/// Like [`Node::start`], with the given base path (kept by the caller, e.g. to restart a
	/// node on the same database).
	pub fn start_at(base: Arc<tempfile::TempDir>, args: &[&str]) -> Node {
		let sets_worker = args
			.iter()
			.any(|a| a.starts_with("--stream-") || *a == "--no-streaming" || *a == "--no-demo");
		let worker_defaults: &[&str] = if sets_worker { &[] } else { &WORKER_QUIET };
		let mut child = Command::new(node_binary())
			.args(args)
			.args(worker_defaults)
			.args([
				"--base-path",
				base.path().to_str().unwrap(),
				"--rpc-port",
				"0",
				"--no-telemetry",
			])
			.env("RUST_LOG", "info")
			.stdout(Stdio::null())
			.stderr(Stdio::piped())
			.spawn()
			.expect("dsp-node starts");
		let log = Arc::new(Mutex::new(String::new()));
		let (tx, rx) = std::sync::mpsc::channel();
		let stderr = child.stderr.take().unwrap();
		let sink = log.clone();
		std::thread::spawn(move || {
			for line in BufReader::new(stderr).lines().map_while(Result::ok) {
				if let Some(rest) = line.split("Running JSON-RPC server: addr=").nth(1) {
					let addr = rest.split([',', ' ']).next().unwrap_or_default().to_string();
					let _ = tx.send(addr);
				}
				let mut log = sink.lock().unwrap();
				log.push_str(&line);
				log.push('\n');
			}
		});
		let rpc_addr = match rx.recv_timeout(STARTUP_TIMEOUT) {
			Ok(addr) => addr,
			Err(_) => {
				let _ = child.kill();
				panic!("node did not start its RPC server; log:\n{}", log.lock().unwrap());
			}
		};
		Node { child, rpc_addr, log, _base: base }
	}

	/// Everything the node has logged so far.
	pub fn log(&self) -> String {
		self.log.lock().unwrap().clone()
	}

	/// Whether the process is still running.
	pub fn is_running(&mut self) -> bool {
		self.child.try_wait().expect("try_wait").is_none()
	}

	/// Calls a JSON-RPC method; `Err` carries the JSON-RPC error object.
	pub fn rpc(&self, method: &str, params: Value) -> Result<Value, Value> {
		let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
		let response = http_post(&self.rpc_addr, "/", &body.to_string(), "application/json");
		let mut response: Value = serde_json::from_str(&response)
			.unwrap_or_else(|e| panic!("{method}: bad JSON-RPC response {response:?}: {e}"));
		match response.get_mut("error") {
			Some(error) => Err(error.take()),
			None => Ok(response["result"].take()),
		}
	}

	/// Calls a method that must succeed.
	pub fn call(&self, method: &str, params: Value) -> Value {
		self.rpc(method, params).unwrap_or_else(|e| panic!("{method} failed: {e}"))
	}

	/// The streaming worker's `dsp_liveLoad`.
	pub fn live_load(&self) -> Value {
		self.call("dsp_liveLoad", json!([]))
	}

	/// Waits until the worker stored `at_least` segments (of the demo stream); its live load.
	pub fn wait_segments(&self, at_least: u64) -> Value {
		self.wait_for("segments at the worker", Duration::from_secs(90), || {
			let load = self.live_load();
			(load["segmentsStored"].as_u64().unwrap_or(0) >= at_least).then_some(load)
		})
	}

	/// Number of the best block.
	pub fn best_number(&self) -> u32 {
		header_number(&self.call("chain_getHeader", json!([])))
	}

	/// Number of the last finalized block.
	pub fn finalized_number(&self) -> u32 {
		let hash = self.call("chain_getFinalizedHead", json!([]));
		header_number(&self.call("chain_getHeader", json!([hash])))
	}

	/// Hash of block `number` on the best chain.
	pub fn block_hash(&self, number: u32) -> H256 {
		parse_h256(&self.call("chain_getBlockHash", json!([number])))
	}

	/// Raw storage at `key` (best block if `at` is `None`).
	pub fn storage(&self, key: &[u8], at: Option<H256>) -> Option<Vec<u8>> {
		let at = at.map(|h| json!(format!("{h:?}"))).unwrap_or(Value::Null);
		let value = self.call("state_getStorage", json!([hex_0x(key), at]));
		value.as_str().map(parse_hex)
	}

	/// `System::Events` of block `at`.
	pub fn events(&self, at: H256) -> Vec<EventRecord> {
		let key = storage_key(b"System", b"Events");
		self.storage(&key, Some(at))
			.map(|raw| Vec::<EventRecord>::decode(&mut &raw[..]).expect("events decode"))
			.unwrap_or_default()
	}

	/// Waits until `f` returns `Some`, polling every 250 ms, or panics after `timeout`.
	pub fn wait_for<T>(
		&self,
		what: &str,
		timeout: Duration,
		mut f: impl FnMut() -> Option<T>,
	) -> T {
		let deadline = Instant::now() + timeout;
		loop {
			if let Some(v) = f() {
				return v;
			}
			if Instant::now() > deadline {
				panic!("timed out waiting for {what}; node log tail:\n{}", tail(&self.log(), 40));
			}
			std::thread::sleep(Duration::from_millis(250));
		}
	}

	/// Signs `call` as `signer`, submits it, waits for the block that includes it and returns
	/// that extrinsic's events (the last one is `ExtrinsicSuccess` or `ExtrinsicFailed`).
	pub fn submit(&self, signer: &sr25519::Pair, call: RuntimeCall) -> Vec<RuntimeEvent> {
		let xt = self.sign(signer, call);
		let encoded = xt.encode();
		let start = self.best_number();
		self.call("author_submitExtrinsic", json!([hex_0x(&encoded)]));
		let mut next = start;
		self.wait_for("the extrinsic to be included", Duration::from_secs(60), || {
			while next <= self.best_number() {
				let hash = self.block_hash(next);
				let block = self.call("chain_getBlock", json!([format!("{hash:?}")]));
				let exts = block["block"]["extrinsics"].as_array().cloned().unwrap_or_default();
				if let Some(index) =
					exts.iter().position(|x| x.as_str().map(parse_hex) == Some(encoded.clone()))
				{
					let events = self
						.events(hash)
						.into_iter()
						.filter(|r| r.phase == frame_system::Phase::ApplyExtrinsic(index as u32))
						.map(|r| r.event)
						.collect();
					return Some(events);
				}
				next += 1;
			}
			None
		})
	}

	/// Builds a signed, immortal extrinsic with the runtime's transaction extensions.
	pub fn sign(&self, signer: &sr25519::Pair, call: RuntimeCall) -> UncheckedExtrinsic {
		let account: sp_runtime::AccountId32 = signer.public().into();
		let nonce = self
			.call("system_accountNextIndex", json!([account.to_ss58check()]))
			.as_u64()
			.expect("nonce") as u32;
		let version = self.call("state_getRuntimeVersion", json!([]));
		let spec_version = version["specVersion"].as_u64().unwrap() as u32;
		let tx_version = version["transactionVersion"].as_u64().unwrap() as u32;
		let genesis = self.block_hash(0);
		let tx_ext: TxExtension = (
			frame_system::CheckNonZeroSender::<Runtime>::new(),
			frame_system::CheckSpecVersion::<Runtime>::new(),
			frame_system::CheckTxVersion::<Runtime>::new(),
			frame_system::CheckGenesis::<Runtime>::new(),
			frame_system::CheckEra::<Runtime>::from(Era::Immortal),
			frame_system::CheckNonce::<Runtime>::from(nonce),
			frame_system::CheckWeight::<Runtime>::new(),
			pallet_transaction_payment::ChargeTransactionPayment::<Runtime>::from(0),
			frame_metadata_hash_extension::CheckMetadataHash::<Runtime>::new(false),
		);
		let implicit = ((), spec_version, tx_version, genesis, genesis, (), (), (), None);
		let payload = SignedPayload::from_raw(call.clone(), tx_ext.clone(), implicit);
		let signature = payload.using_encoded(|bytes| signer.sign(bytes));
		UncheckedExtrinsic::new_signed(
			call,
			MultiAddress::Id(account),
			MultiSignature::Sr25519(signature),
			tx_ext,
		)
	}
}

impl Drop for Node {
	fn drop(&mut self) {
		let _ = self.child.kill();
		let _ = self.child.wait();
	}
}

/// `twox128(pallet) ++ twox128(item)`: the key of a storage value, or a map's prefix.
pub fn storage_key(pallet: &[u8], item: &[u8]) -> Vec<u8> {
	[twox_128(pallet), twox_128(item)].concat()
}

/// `0x`-prefixed lowercase hex.
pub fn hex_0x(bytes: &[u8]) -> String {
	format!("0x{}", hex::encode(bytes))
}

/// Decodes `0x…` hex; panics on bad input (it comes from our own node).
pub fn parse_hex(s: &str) -> Vec<u8> {
	hex::decode(s.trim_start_matches("0x")).expect("hex from node")
}

fn parse_h256(v: &Value) -> H256 {
	H256::from_slice(&parse_hex(v.as_str().expect("hash string")))
}

fn header_number(header: &Value) -> u32 {
	let n = header["number"].as_str().expect("header number");
	u32::from_str_radix(n.trim_start_matches("0x"), 16).expect("hex number")
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
	let lines: Vec<_> = s.lines().collect();
	lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A blocking HTTP/1.1 request with `Connection: close`; returns the body. Enough for a local
/// JSON-RPC server and a Prometheus endpoint, with no client library to build.
pub fn http_post(addr: &str, path: &str, body: &str, content_type: &str) -> String {
	http_request(addr, "POST", path, body, content_type)
}

/// A blocking HTTP GET; returns the body.
pub fn http_get(addr: &str, path: &str) -> String {
	http_request(addr, "GET", path, "", "text/plain")
}

fn http_request(addr: &str, method: &str, path: &str, body: &str, content_type: &str) -> String {
	let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
	stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
	write!(
		stream,
		"{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
		 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
		body.len()
	)
	.unwrap();
	let mut raw = Vec::new();
	stream.read_to_end(&mut raw).expect("read response");
	let raw = String::from_utf8_lossy(&raw).into_owned();
	let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
	if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
		dechunk(body)
	} else {
		body.to_string()
	}
}

fn dechunk(mut body: &str) -> String {
	let mut out = String::new();
	while let Some((size, rest)) = body.split_once("\r\n") {
		let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
		if size == 0 {
			break;
		}
		out.push_str(&rest[..size]);
		body = &rest[size..].trim_start_matches("\r\n");
	}
	out
}

/// A key pair from a dev seed, e.g. `pair("//Alice")`.
pub fn pair(seed: &str) -> sr25519::Pair {
	sr25519::Pair::from_string(seed, None).expect("valid seed")
}

/// SS58 address of a key pair.
pub fn address(p: &sr25519::Pair) -> String {
	sp_runtime::AccountId32::from(p.public()).to_ss58check()
}

/// Whether the last event of an extrinsic says it succeeded.
pub fn succeeded(events: &[RuntimeEvent]) -> bool {
	matches!(
		events.last(),
		Some(RuntimeEvent::System(frame_system::Event::ExtrinsicSuccess { .. }))
	)
}

/// The `pallet-dsp` events among an extrinsic's events.
pub fn dsp_events(events: &[RuntimeEvent]) -> Vec<pallet_dsp::Event<Runtime>> {
	events
		.iter()
		.filter_map(|e| match e {
			RuntimeEvent::Dsp(e) => Some(e.clone()),
			_ => None,
		})
		.collect()
}

/// Submits `call` signed by `signer`, asserts it succeeded and returns its `pallet-dsp` events.
pub fn must_succeed(
	node: &Node,
	signer: &sr25519::Pair,
	call: RuntimeCall,
) -> Vec<pallet_dsp::Event<Runtime>> {
	let events = node.submit(signer, call);
	assert!(succeeded(&events), "extrinsic failed: {events:?}");
	dsp_events(&events)
}

/// A fresh `dsp-node --dev` on free ports, once it has produced block #1.
pub fn dev_node() -> Node {
	let node = Node::start(&["--dev", "--port", &free_port().to_string(), "--no-prometheus"]);
	node.wait_for("block #1", std::time::Duration::from_secs(60), || {
		(node.best_number() >= 1).then_some(())
	});
	node
}

/// The dispatch error of a failed extrinsic, if it failed.
pub fn dispatch_error(events: &[RuntimeEvent]) -> Option<sp_runtime::DispatchError> {
	match events.last() {
		Some(RuntimeEvent::System(frame_system::Event::ExtrinsicFailed {
			dispatch_error, ..
		})) => Some(*dispatch_error),
		_ => None,
	}
}
