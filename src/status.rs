//! The status display of `tradeloop run`: on a terminal, a block of lines redrawn in place at
//! the bottom of the screen, with log lines and notices printed above it; otherwise (a pipe, a
//! file, CI) one plain line per refresh.
//!
//! Log output goes through [`StderrWriter`], which hides the block while a line is written, so
//! logs never tear the display.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The block on screen, when there is one.
static SCREEN: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn screen() -> Option<ProgressBar> {
    SCREEN.lock().ok().and_then(|s| s.clone())
}

/// The in-place status block; cleared from the screen when dropped.
pub struct Screen {
    bar: ProgressBar,
}

impl Screen {
    /// A block redrawn in place, if stderr is a terminal (`None` otherwise, or with `NO_COLOR`
    /// / `TERM=dumb`, where plain lines read better).
    pub fn start() -> Option<Self> {
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) || dumb {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(ProgressStyle::with_template("{msg}").expect("constant template"));
        if let Ok(mut s) = SCREEN.lock() {
            *s = Some(bar.clone());
        }
        Some(Self { bar })
    }

    /// Replaces the block's text (several lines).
    pub fn show(&self, text: String) {
        self.bar.set_message(text);
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if let Ok(mut s) = SCREEN.lock() {
            *s = None;
        }
        self.bar.finish_and_clear();
    }
}

/// Prints a notice line on stderr, above the status block if one is on screen.
pub fn say(line: &str) {
    match screen() {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// `tracing` writer: stderr, with the status block hidden while a line is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct StderrWriter;

impl std::io::Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match screen() {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrWriter {
    type Writer = StderrWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}
