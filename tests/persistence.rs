//! Persistence of `tradeloop run` with the real binary and a real SQLite file: a clean
//! shutdown writes every queued record, and a run killed with SIGKILL loses at most its last
//! unflushed batch, never duplicates a fill, and the restarted run continues its positions and
//! client-order sequence.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tradeloop_store::sqlite::SqliteStore;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tradeloop-persist-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("run.db")
}

/// `tradeloop run` on the offline sim venue (own ports), persisting to `db`.
fn run(db: &Path, args: &[&str]) -> Command {
    let (ws, rest) = (free_port(), free_port());
    let mut c = Command::new(env!("CARGO_BIN_EXE_tradeloop"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("run")
        .arg("--no-histograms")
        .args(args)
        .env(
            "TRADELOOP__VENUES__0__WS_URL",
            format!("\"ws://127.0.0.1:{ws}\""),
        )
        .env(
            "TRADELOOP__VENUES__0__REST_URL",
            format!("\"http://127.0.0.1:{rest}\""),
        )
        .env("TRADELOOP__PERSISTENCE__SQLITE_PATH", db)
        .env("TRADELOOP__PERSISTENCE__FLUSH_INTERVAL_MS", "20")
        .env("TRADELOOP__METRICS__STATUS_INTERVAL_MS", "60000")
        .env(
            "TRADELOOP__METRICS__LISTEN",
            format!("\"127.0.0.1:{}\"", free_port()),
        )
        .env("RUST_LOG", "warn");
    c
}

/// The number just before the first `suffix` in `line` ("38 fills" → 38).
fn number_before(line: &str, suffix: &str) -> u64 {
    line.find(suffix)
        .and_then(|i| line[..i].rsplit([' ', ':']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `N{suffix}` in {line:?}"))
}

/// The number just after the first `prefix` in `line` ("fills 145," → 145).
fn number_after(line: &str, prefix: &str) -> u64 {
    line.find(prefix)
        .and_then(|i| line[i + prefix.len()..].split([' ', ',', ';']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}N` in {line:?}"))
}

fn fills_in(db: &Path) -> Vec<(i64, i64)> {
    let store = SqliteStore::open(db, vec![]).unwrap();
    store
        .recover()
        .unwrap()
        .fills
        .iter()
        .map(|f| (f.run_id, f.client_id.0 as i64))
        .collect()
}

#[test]
fn clean_shutdown_writes_every_queued_record() {
    let db = temp_db("clean");
    let out = run(&db, &["--duration", "3"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("persistence ("))
        .expect("persistence summary");
    let queued = number_before(line, " records");
    let written = number_after(line, "wrote ");
    assert!(queued > 100, "TC1 the run produced records: {line}");
    assert_eq!(written, queued, "TC2 zero records lost: {line}");
    let ended = err
        .lines()
        .find(|l| l.starts_with("run ended"))
        .expect("run summary");
    let fills = number_after(ended, "fills ") as usize;
    assert!(fills > 0, "TC3 the strategy traded: {ended}");
    assert_eq!(
        fills_in(&db).len(),
        fills,
        "TC4 every fill is in the database"
    );
}

/// Waits (at most 60 s) until the run has persisted at least `n` fills.
fn wait_for_fills(db: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(db.exists() && fills_in(db).len() >= n) {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} fills were persisted in time"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigkill_loses_at_most_the_unflushed_batch_and_restart_continues() {
    let db = temp_db("kill");
    let mut child = run(&db, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for fills to be committed, then kill without warning.
    wait_for_fills(&db, 20);
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let before = fills_in(&db);
    let store = SqliteStore::open(&db, vec![]).unwrap();
    let rec = store.recover().unwrap();
    drop(store);
    assert!(before.len() >= 20);
    assert!(
        before.iter().all(|f| f.0 == 1),
        "TC1 all fills are from run 1"
    );
    let last_seq = rec.last_sequence;

    // Restart: recovery reports exactly the fills that were committed.
    let out = run(&db, &["--duration", "3"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let recovered = err
        .lines()
        .find(|l| l.starts_with("recovered from"))
        .expect("recovery line");
    assert_eq!(
        number_before(recovered, " fills") as usize,
        before.len(),
        "TC2 every committed fill recovered: {recovered}"
    );
    assert!(
        recovered.contains(&format!("next order sequence {}", last_seq + 1)),
        "TC3 ids continue after the last one used: {recovered}"
    );
    assert!(
        recovered.contains("1 earlier run(s) never ended"),
        "TC3b the killed run is reported: {recovered}"
    );
    let store = SqliteStore::open(&db, vec![]).unwrap();
    let runs: Vec<(i64, Option<i64>, String, String)> = store
        .connection()
        .prepare("SELECT run_id, ended_unix_ns, config_hash, exit_status FROM runs ORDER BY run_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(store);
    assert_eq!(runs.len(), 2, "TC3c {runs:?}");
    assert_eq!(
        (runs[0].1, runs[0].3.as_str()),
        (None, "crashed"),
        "TC3d the killed run never ended"
    );
    assert_eq!(runs[1].3, "completed", "TC3e {runs:?}");
    assert!(
        runs[1].1.is_some_and(|end| end > 0),
        "TC3f the clean run's end time: {runs:?}"
    );
    assert!(
        runs[1].2.len() == 64 && runs[1].2.bytes().all(|b| b.is_ascii_hexdigit()),
        "TC3g a SHA-256 config hash: {runs:?}"
    );
    assert_ne!(
        runs[0].2, runs[1].2,
        "TC3h other ports, another configuration, another hash"
    );
    let after = fills_in(&db);
    assert_eq!(
        after.iter().filter(|f| f.0 == 1).count(),
        before.len(),
        "TC4 run 1's fills are present exactly once"
    );
    // Positions: the restarted run's final snapshot equals the fold of every stored fill.
    let store = SqliteStore::open(&db, vec!["BTCUSDT".into(), "ETHUSDT".into()]).unwrap();
    let rec = store.recover().unwrap();
    let mut want = std::collections::BTreeMap::<String, i64>::new();
    for f in &rec.fills {
        *want.entry(f.symbol.clone()).or_default() += f.qty.raw() * f.side.sign();
    }
    let mut stmt = store
        .connection()
        .prepare("SELECT instrument, qty_e8, fills FROM positions")
        .unwrap();
    let got: Vec<(String, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!got.is_empty());
    for (symbol, qty, n) in got {
        assert_eq!(
            Some(&qty),
            want.get(&symbol),
            "TC5 {symbol} position = signed sum of fills"
        );
        let count = rec.fills.iter().filter(|f| f.symbol == symbol).count() as i64;
        assert_eq!(n, count, "TC6 {symbol} fill count");
    }
    // Run 2's orders all carry later sequences than run 1's.
    let min2: i64 = store
        .connection()
        .query_row(
            "SELECT MIN(client_id >> 32) FROM orders WHERE run_id = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(min2 > i64::from(last_seq), "TC7 no client id reused");
}

/// The same clean shutdown and restart against a real PostgreSQL server
/// (`TRADELOOP_TEST_PG_URL`, started by `.ci/pg-up.sh`; skipped when unset).
#[test]
fn postgres_backend_writes_everything_and_recovers() {
    let Ok(base) = std::env::var("TRADELOOP_TEST_PG_URL") else {
        eprintln!("skipped: TRADELOOP_TEST_PG_URL is not set (source .ci/pg-up.sh)");
        return;
    };
    let url = tradeloop_store::postgres::reset_schema(&base, "tl_binary").unwrap();
    let db = temp_db("pg-unused");
    let pg_run = |secs: &str| {
        let out = run(&db, &["--duration", secs])
            .env("TRADELOOP__PERSISTENCE__BACKEND", "\"postgres\"")
            .env("TRADELOOP_PG_URL", &url)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    let first = pg_run("3");
    let line = first
        .lines()
        .find(|l| l.starts_with("persistence (postgres"))
        .expect("persistence summary");
    assert_eq!(
        number_after(line, "wrote "),
        number_before(line, " records"),
        "TC1 queued = written: {line}"
    );
    let fills = number_after(
        first.lines().find(|l| l.starts_with("run ended")).unwrap(),
        "fills ",
    );
    assert!(fills > 0);
    let second = pg_run("2");
    let recovered = second
        .lines()
        .find(|l| l.starts_with("recovered from postgres"))
        .expect("recovery line");
    assert_eq!(
        number_before(recovered, " fills"),
        fills,
        "TC2 the second run recovered every fill of the first: {recovered}"
    );
}

/// The kill switch through its file trigger on a real run: every working order is cancelled,
/// the position is closed with reduce-only market orders, and no new order goes out after.
/// The control endpoint on the metrics listener trips the kill switch like SIGUSR1 does.
#[test]
fn http_control_kill_trips_the_kill_switch() {
    use std::io::{Read, Write};
    let db = temp_db("http-kill");
    let port = free_port();
    const TOKEN: &str = "test-control-token-4242";
    let child = run(&db, &["--duration", "8"])
        .env(
            "TRADELOOP__METRICS__LISTEN",
            format!("\"127.0.0.1:{port}\""),
        )
        .env("TRADELOOP_CONTROL_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_fills(&db, 3);
    let post = |headers: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            format!("POST /control/kill HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: 0\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    };
    let reply = post("");
    assert!(reply.starts_with("HTTP/1.1 401"), "TC0 no token: {reply}");
    let reply = post(&format!(
        "Origin: http://evil.example\r\nAuthorization: Bearer {TOKEN}\r\n"
    ));
    assert!(
        reply.starts_with("HTTP/1.1 403"),
        "TC1 from a web page: {reply}"
    );
    // Neither refused request tripped it: orders keep flowing.
    let before = fills_in(&db).len();
    // (a kill would stop the fills after at most one closing fill per instrument)
    wait_for_fills(&db, before + 5);
    let reply = post(&format!("Authorization: Bearer {TOKEN}\r\n"));
    assert!(reply.starts_with("HTTP/1.1 202"), "TC3 {reply}");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains(TOKEN),
        "TC4 the token never appears in the output"
    );
    assert_eq!(
        err.matches("control request refused").count(),
        2,
        "TC5 each refused call is logged: {err}"
    );
    assert!(
        err.contains("KILL SWITCH tripped by POST /control/kill"),
        "{err}"
    );
    assert!(err.contains("kill switch: tripped 1 times"), "{err}");
    let ended = err.lines().find(|l| l.starts_with("run ended")).unwrap();
    assert!(ended.contains("still working 0"), "{ended}");
}

#[test]
fn kill_file_cancels_halts_and_flattens() {
    let db = temp_db("kill-switch");
    let kill_file = db.with_file_name("KILL");
    let child = run(&db, &["--duration", "8"])
        .env(
            "TRADELOOP__KILL_SWITCH__FILE",
            format!("{:?}", kill_file.display().to_string()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Trade until a position is open, then create the kill file.
    wait_for_fills(&db, 5);
    std::fs::write(&kill_file, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("KILL SWITCH tripped by file"),
        "TC1 the file tripped it: {err}"
    );
    let ended = err.lines().find(|l| l.starts_with("run ended")).unwrap();
    assert!(
        ended.contains("still working 0"),
        "TC2 nothing left working: {ended}"
    );
    assert!(err.contains("kill switch: tripped 1 times"), "TC3 {err}");
    // The stored position after the kill is flat: the flatten's fills closed it.
    let store = SqliteStore::open(&db, vec!["BTCUSDT".into(), "ETHUSDT".into()]).unwrap();
    let rec = store.recover().unwrap();
    let net: i64 = rec
        .fills
        .iter()
        .filter(|f| f.symbol == "BTCUSDT")
        .map(|f| f.qty.raw() * f.side.sign())
        .sum();
    assert_eq!(net, 0, "TC4 the position was closed");
    // After the kill no order was created: the last order rows are the flatten's reduce-only
    // market orders, and nothing after them.
    let last_kind: String = store
        .connection()
        .query_row(
            "SELECT kind || '/' || reduce_only FROM orders ORDER BY client_id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let kill_line = err
        .lines()
        .find(|l| l.starts_with("kill switch: tripped"))
        .unwrap();
    if number_before(kill_line, " closing orders") > 0 {
        assert_eq!(
            last_kind, "market/1",
            "TC5 the last order is the closing one"
        );
    }
}

/// Highest client order id stored, and how many orders above `after` are not reduce-only
/// (the strategy's own, not a flatten's).
fn orders_after(db: &std::path::Path, after: i64) -> (i64, i64) {
    let store = SqliteStore::open(db, vec!["BTCUSDT".into(), "ETHUSDT".into()]).unwrap();
    store
        .connection()
        .query_row(
            "SELECT COALESCE(MAX(client_id), 0), \
             COALESCE(SUM(client_id > ?1 AND reduce_only = 0), 0) FROM orders",
            [after],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// SIGUSR1 kills (halt, flatten); SIGUSR2 is the operator's resume: the strategy trades again.
#[test]
fn sigusr2_resumes_after_a_sigusr1_kill() {
    let db = temp_db("resume");
    let child = run(&db, &["--duration", "12"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig}");
    };
    wait_for_fills(&db, 3);
    signal("-USR1");
    // Halted: let the flatten settle and the writer commit, then note the last order.
    std::thread::sleep(Duration::from_millis(1_500));
    let (last_before, _) = orders_after(&db, 0);
    std::thread::sleep(Duration::from_millis(1_000));
    let (still, new_while_halted) = orders_after(&db, last_before);
    assert_eq!(
        (still, new_while_halted),
        (last_before, 0),
        "TC1 nothing new while halted"
    );
    signal("-USR2");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut resumed = 0;
    while resumed == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        resumed = orders_after(&db, last_before).1;
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("KILL SWITCH tripped by SIGUSR1"), "TC2 {err}");
    assert!(err.contains("RESUME by SIGUSR2"), "TC3 {err}");
    assert!(
        resumed > 0,
        "TC4 the strategy's orders flow again after resume"
    );
}
