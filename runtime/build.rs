//! Builds the runtime's WebAssembly blob (`WASM_BINARY`) when the `std` feature is on, i.e.
//! whenever the node links the runtime. With `metadata-hash`, the blob also embeds the
//! metadata hash that `CheckMetadataHash` compares against (RFC 78, for offline signers).

#[cfg(all(feature = "std", feature = "metadata-hash"))]
fn main() {
	substrate_wasm_builder::WasmBuilder::init_with_defaults()
		.enable_metadata_hash("DSP", 12)
		.build();
}

#[cfg(all(feature = "std", not(feature = "metadata-hash")))]
fn main() {
	substrate_wasm_builder::WasmBuilder::build_using_defaults();
}

/// Building for wasm (no `std`): nothing to generate.
#[cfg(not(feature = "std"))]
fn main() {}
