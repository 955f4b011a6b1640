//! How `sluice wait` shows progress: a bar on a terminal, otherwise a plain
//! line every few seconds (logs and CI stay readable).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sluice_producer::Progress;

const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub enum Display {
    Bar(ProgressBar),
    Plain { last: Option<Instant> },
}

impl Display {
    pub fn new() -> Display {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} done  {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            Display::Bar(bar)
        } else {
            Display::Plain { last: None }
        }
    }

    pub fn update(&mut self, p: &Progress) {
        let msg = format!(
            "{} failed, {} cancelled, {} running, {} waiting on limits, {} queued",
            p.failed, p.cancelled, p.running, p.waiting, p.queued
        );
        let total = p
            .total
            .unwrap_or(p.done() + p.running + p.waiting + p.queued);
        match self {
            Display::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(p.done());
                bar.set_message(msg);
            }
            Display::Plain { last } => {
                if last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                    eprintln!(
                        "{}/{} done: {} succeeded, {msg}",
                        p.done(),
                        total,
                        p.succeeded
                    );
                    *last = Some(Instant::now());
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish();
        }
    }
}
