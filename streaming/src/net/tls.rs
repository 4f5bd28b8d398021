//! TLS for QUIC. The server makes a self-signed certificate at start and prints the blake2-256
//! fingerprint of its DER encoding; a client either pins that fingerprint
//! ([`ServerVerification::Fingerprint`]) or, in development, explicitly skips verification
//! ([`ServerVerification::InsecureSkip`]).
//!
//! Why this is acceptable: segment authenticity does not depend on TLS. Every header is signed by
//! the origin and every chunk is hashed, so a man in the middle can at worst withhold data, which
//! the viewer detects as a stall. TLS protects the privacy of what is watched, and pinning the
//! fingerprint (which a node can later publish on chain next to its endpoints) protects that too.

use crate::protocol::ALPN;
use dsp_primitives::Hash32;
use rustls::{
	client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
	crypto::{ring, CryptoProvider},
	pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime},
	DigitallySignedStruct, SignatureScheme,
};
use std::{io, sync::Arc, time::Duration};

/// The server name clients put in the TLS handshake (the certificate is made for it).
pub const SERVER_NAME: &str = "dsp-streamer";

/// A server's certificate and key.
pub struct ServerIdentity {
	cert: CertificateDer<'static>,
	key: PrivatePkcs8KeyDer<'static>,
	/// blake2-256 of the certificate's DER encoding.
	pub fingerprint: Hash32,
}

fn other(e: impl std::fmt::Display) -> io::Error {
	io::Error::other(e.to_string())
}

impl ServerIdentity {
	/// A fresh self-signed certificate for [`SERVER_NAME`].
	pub fn self_signed() -> io::Result<Self> {
		let cert =
			rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()]).map_err(other)?;
		let der = cert.serialize_der().map_err(other)?;
		let fingerprint = sp_crypto_hashing::blake2_256(&der);
		Ok(Self {
			cert: CertificateDer::from(der),
			key: PrivatePkcs8KeyDer::from(cert.serialize_private_key_der()),
			fingerprint,
		})
	}
}

fn provider() -> Arc<CryptoProvider> {
	Arc::new(ring::default_provider())
}

fn transport_config(
	idle_timeout: Duration,
	keep_alive: Option<Duration>,
) -> quinn::TransportConfig {
	let mut t = quinn::TransportConfig::default();
	t.max_idle_timeout(quinn::IdleTimeout::try_from(idle_timeout).ok());
	t.keep_alive_interval(keep_alive);
	// One bidirectional stream per connection carries the whole protocol.
	t.max_concurrent_bidi_streams(1u32.into());
	t.max_concurrent_uni_streams(0u32.into());
	t
}

/// Bytes quinn may hold unacknowledged per server connection (512 KiB). quinn's own default
/// (10 MB) would let 2000 connections pin gigabytes; the session's send queue, not the
/// transport, is where data should wait.
pub const SERVER_SEND_WINDOW: u64 = 512 * 1024;

/// QUIC server configuration.
pub fn server_config(
	id: &ServerIdentity,
	idle_timeout: Duration,
) -> io::Result<quinn::ServerConfig> {
	let mut crypto = rustls::ServerConfig::builder_with_provider(provider())
		.with_protocol_versions(&[&rustls::version::TLS13])
		.map_err(other)?
		.with_no_client_auth()
		.with_single_cert(vec![id.cert.clone()], PrivateKeyDer::Pkcs8(id.key.clone_key()))
		.map_err(other)?;
	crypto.alpn_protocols = vec![ALPN.to_vec()];
	let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).map_err(other)?;
	let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
	let mut transport = transport_config(idle_timeout, None);
	transport.send_window(SERVER_SEND_WINDOW);
	config.transport_config(Arc::new(transport));
	Ok(config)
}

/// How a QUIC client checks the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerVerification {
	/// The certificate's blake2-256 must be this.
	Fingerprint(Hash32),
	/// Accept any certificate (development only; segments are still verified end to end).
	InsecureSkip,
}

#[derive(Debug)]
struct Verifier {
	expected: ServerVerification,
	provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
	fn verify_server_cert(
		&self,
		end_entity: &CertificateDer<'_>,
		_intermediates: &[CertificateDer<'_>],
		_server_name: &ServerName<'_>,
		_ocsp_response: &[u8],
		_now: UnixTime,
	) -> Result<ServerCertVerified, rustls::Error> {
		match self.expected {
			ServerVerification::InsecureSkip => Ok(ServerCertVerified::assertion()),
			ServerVerification::Fingerprint(f)
				if sp_crypto_hashing::blake2_256(end_entity) == f =>
			{
				Ok(ServerCertVerified::assertion())
			}
			ServerVerification::Fingerprint(_) => {
				Err(rustls::Error::General("server certificate fingerprint does not match".into()))
			}
		}
	}

	fn verify_tls12_signature(
		&self,
		message: &[u8],
		cert: &CertificateDer<'_>,
		dss: &DigitallySignedStruct,
	) -> Result<HandshakeSignatureValid, rustls::Error> {
		rustls::crypto::verify_tls12_signature(
			message,
			cert,
			dss,
			&self.provider.signature_verification_algorithms,
		)
	}

	fn verify_tls13_signature(
		&self,
		message: &[u8],
		cert: &CertificateDer<'_>,
		dss: &DigitallySignedStruct,
	) -> Result<HandshakeSignatureValid, rustls::Error> {
		rustls::crypto::verify_tls13_signature(
			message,
			cert,
			dss,
			&self.provider.signature_verification_algorithms,
		)
	}

	fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
		self.provider.signature_verification_algorithms.supported_schemes()
	}
}

/// QUIC client configuration. `keep_alive` keeps NAT bindings open and detects dead paths.
pub fn client_config(
	verification: ServerVerification,
	idle_timeout: Duration,
	keep_alive: Duration,
) -> io::Result<quinn::ClientConfig> {
	let provider = provider();
	let mut crypto = rustls::ClientConfig::builder_with_provider(provider.clone())
		.with_protocol_versions(&[&rustls::version::TLS13])
		.map_err(other)?
		.dangerous()
		.with_custom_certificate_verifier(Arc::new(Verifier { expected: verification, provider }))
		.with_no_client_auth();
	crypto.alpn_protocols = vec![ALPN.to_vec()];
	let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).map_err(other)?;
	let mut config = quinn::ClientConfig::new(Arc::new(crypto));
	config.transport_config(Arc::new(transport_config(idle_timeout, Some(keep_alive))));
	Ok(config)
}

/// Default UDP socket buffer size asked for QUIC endpoints (4 MiB; Linux caps it at
/// `net.core.rmem_max` / `wmem_max`). A live segment goes to every viewer at once; with the
/// kernel's default (~208 KiB) that burst overflows the buffers and QUIC sees loss.
pub const DEFAULT_UDP_BUFFER: usize = 4 * 1024 * 1024;

/// A QUIC endpoint on a UDP socket with `buffer` bytes of send and receive buffer.
pub fn endpoint(
	addr: std::net::SocketAddr,
	server: Option<quinn::ServerConfig>,
	buffer: usize,
) -> io::Result<quinn::Endpoint> {
	use socket2::{Domain, Protocol, Socket, Type};
	let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
	// Best effort: a smaller buffer than asked for still works, only burstier.
	let _ = socket.set_recv_buffer_size(buffer);
	let _ = socket.set_send_buffer_size(buffer);
	socket.bind(&addr.into())?;
	quinn::Endpoint::new(
		quinn::EndpointConfig::default(),
		server,
		socket.into(),
		Arc::new(quinn::TokioRuntime),
	)
}
