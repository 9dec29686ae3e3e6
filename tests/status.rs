//! The live status screen of `tradeloop run` on a real terminal: the release binary runs in a
//! tmux pane (its own tmux server), and the pane is read with `capture-pane` while the kill
//! file trips the kill switch and SIGUSR2 resumes. The block's top line shows the trading
//! state in colour: RUNNING, then KILLED, then RUNNING again.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `'text'` for the shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// The pane's screen, with its colours as escape sequences when `escapes`.
    fn screen(&self, escapes: bool) -> String {
        let args: &[&str] = if escapes {
            &["capture-pane", "-p", "-e", "-t", "main"]
        } else {
            &["capture-pane", "-p", "-t", "main"]
        };
        String::from_utf8_lossy(&self.cmd(args).stdout).into_owned()
    }

    /// The status block's top line, once it shows `state` (at most 30 s).
    fn wait_for_state(&self, state: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen(false);
            if let Some(top) = screen.lines().find(|l| l.contains("── tradeloop run ·")) {
                if top.contains(state) {
                    return top.to_owned();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the status never showed {state:?}; the pane:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn the_status_screen_shows_the_kill_and_the_resume() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: tmux is not installed (.ci/run installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tl-status-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let kill_file = dir.join("KILL");
    let env = [
        (
            "TRADELOOP__VENUES__0__WS_URL",
            format!("\"ws://127.0.0.1:{}\"", free_port()),
        ),
        (
            "TRADELOOP__VENUES__0__REST_URL",
            format!("\"http://127.0.0.1:{}\"", free_port()),
        ),
        (
            "TRADELOOP__PERSISTENCE__SQLITE_PATH",
            format!("{:?}", dir.join("run.db").display().to_string()),
        ),
        (
            "TRADELOOP__KILL_SWITCH__FILE",
            format!("{:?}", kill_file.display().to_string()),
        ),
        ("TRADELOOP__METRICS__STATUS_INTERVAL_MS", "200".to_owned()),
        ("TRADELOOP__METRICS__ENABLED", "false".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
        ("TERM", "xterm-256color".to_owned()),
    ];
    let mut shell = format!("cd {} && exec env", quote(env!("CARGO_MANIFEST_DIR")));
    for (k, v) in &env {
        shell.push_str(&format!(" {k}={}", quote(v)));
    }
    shell.push_str(&format!(
        " {} run --no-histograms --duration 40",
        quote(env!("CARGO_BIN_EXE_tradeloop"))
    ));
    let tmux = Tmux {
        socket: format!("tl-status-{}", std::process::id()),
    };
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-x",
        "200",
        "-y",
        "50",
        "-s",
        "main",
        &shell,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top = tmux.wait_for_state("RUNNING");
    assert!(!top.contains("KILLED"), "TC0 {top}");
    let coloured = tmux.screen(true);
    assert!(
        coloured
            .lines()
            .any(|l| l.contains("RUNNING") && l.contains("32m")),
        "TC1 RUNNING in green:\n{coloured}"
    );
    let screen = tmux.screen(false);
    assert!(
        screen.contains("realised") && screen.contains("fees") && screen.contains("net"),
        "TC2 realised PnL and fees in their own columns:\n{screen}"
    );

    std::fs::write(&kill_file, b"").unwrap();
    let top = tmux.wait_for_state("KILLED");
    assert!(top.contains("resume: SIGUSR2"), "TC3 {top}");
    let coloured = tmux.screen(true);
    assert!(
        coloured
            .lines()
            .any(|l| l.contains("KILLED") && l.contains("31m")),
        "TC4 KILLED in red:\n{coloured}"
    );

    let pid = String::from_utf8_lossy(
        &tmux
            .cmd(&["list-panes", "-t", "main", "-F", "#{pane_pid}"])
            .stdout,
    )
    .trim()
    .to_owned();
    let sent = Command::new("kill").args(["-USR2", &pid]).status().unwrap();
    assert!(sent.success(), "TC5 SIGUSR2 to {pid}");
    let top = tmux.wait_for_state("RUNNING");
    assert!(!top.contains("KILLED"), "TC6 resumed: {top}");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
