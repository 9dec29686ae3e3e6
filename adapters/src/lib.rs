//! tradeloop's outside world: venue codecs and book synchronisation, the reconnecting feed
//! runner, the simulated venue, and recorder/replay files. Adapters may allocate and do I/O;
//! the push into a lane is the last step on their side.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binance;
pub mod bybit;
pub mod coinbase;
pub mod feed;
pub mod input;
pub mod kraken;
pub mod okx;
pub mod record;
pub mod recorder;
pub mod runner;
pub mod sim;
pub mod symbols;
pub mod tardis;
pub mod tle;
pub mod wire;

/// Where `../shared/data` is for tests and benchmarks: `$TRADELOOP_SHARED_DATA` if set, else
/// `shared/data` beside the repository.
#[must_use]
pub fn shared_data_dir() -> std::path::PathBuf {
    std::env::var_os("TRADELOOP_SHARED_DATA").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
        std::path::PathBuf::from,
    )
}

/// Installs rustls' `ring` crypto provider as the process default so `wss://` and `https://`
/// work; call once at start-up (repeated calls are harmless).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
