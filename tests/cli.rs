//! The `tradeloop` binary as a user runs it: `config check`, `config print`, and `run` on the
//! shipped config.toml (offline sim venue) ending by itself after `--duration`.

use std::process::Command;

fn tradeloop() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tradeloop"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn config_check_accepts_the_shipped_config_and_names_bad_keys() {
    let ok = tradeloop().args(["config", "check"]).output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("config.toml: ok"));
    let bad = tradeloop()
        .args(["config", "check"])
        .env("TRADELOOP__ENGINE__LANES__HIGH_SLOTS", "3")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("engine.lanes.high_slots") && err.contains("power of two"),
        "{err}"
    );
}

#[test]
fn config_print_never_shows_secrets() {
    let out = tradeloop()
        .args(["config", "print"])
        .env(
            "TRADELOOP_PG_URL",
            "postgres://trader:sup3r-secret@127.0.0.1:5432/tl",
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("sup3r-secret"), "{text}");
    assert!(
        text.contains("postgres://trader:***@127.0.0.1:5432/tl"),
        "{text}"
    );
}

#[test]
fn run_streams_from_the_offline_sim_venue_and_stops_cleanly() {
    let (ws, rest) = (free_port(), free_port());
    let out = tradeloop()
        .args(["run", "--duration", "3"])
        .env(
            "TRADELOOP__VENUES__0__WS_URL",
            format!("\"ws://127.0.0.1:{ws}\""),
        )
        .env(
            "TRADELOOP__VENUES__0__REST_URL",
            format!("\"http://127.0.0.1:{rest}\""),
        )
        .env("TRADELOOP__METRICS__STATUS_INTERVAL_MS", "500")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("feed sim: live"), "the feed went live:\n{err}");
    assert!(err.contains("sim:BTCUSDT Live"), "the book synced:\n{err}");
    let summary = err
        .lines()
        .find(|l| l.starts_with("feed sim:") && l.contains("frames,"))
        .expect("final feed summary");
    let trades: u64 = summary
        .split(", ")
        .find_map(|p| p.strip_suffix(" trades"))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(trades > 100, "{summary}");
    assert!(summary.contains(" 0 gaps, 0 refused"), "{summary}");
    assert!(err.contains("run ended after"), "{err}");
}
