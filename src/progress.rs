//! Progress of a folder run: a bar on a terminal (indicatif draws nothing when stderr is not
//! one), failure messages printed above it as they come, and the summary line at the end.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counts the images of a run and shows them.
pub struct Progress {
    bar: ProgressBar,
    total: usize,
    failed: usize,
    start: Instant,
}

/// What a finished run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Input files taken.
    pub images: usize,
    /// Of those, the ones finished (all of them unless the run was interrupted).
    pub done: usize,
    /// Of those, the ones that failed.
    pub failed: usize,
    /// Wall time from the first image to the last.
    pub elapsed: Duration,
}

impl Summary {
    /// Images per second over the run.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// The summary line: images, failures, images per second.
    pub fn line(&self) -> String {
        format!(
            "{} image{}, {} failed, {:.1} images/s ({:.2} s)",
            self.images,
            if self.images == 1 { "" } else { "s" },
            self.failed,
            self.rate(),
            self.elapsed.as_secs_f64()
        )
    }
}

impl Progress {
    /// A bar for `total` images on stderr (drawn only when stderr is a terminal).
    pub fn new(total: usize) -> Progress {
        Progress::with_target(total, ProgressDrawTarget::stderr())
    }

    /// A bar drawn to `target` (tests draw into memory).
    pub fn with_target(total: usize, target: ProgressDrawTarget) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        // The template is a constant: a mistake in it is a bug caught by the tests.
        let style = ProgressStyle::with_template(
            "{bar:30} {pos}/{len} images, {msg} [{elapsed}, eta {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message("0 failed");
        Progress {
            bar,
            total,
            failed: 0,
            start: Instant::now(),
        }
    }

    /// Restarts the clock (after compiling and checking, when the images start).
    pub fn start(&mut self) {
        self.start = Instant::now();
        self.bar.reset_elapsed();
    }

    /// One image written.
    pub fn ok(&mut self) {
        self.bar.inc(1);
    }

    /// One image failed: its message goes above the bar.
    pub fn fail(&mut self, message: &str) {
        self.failed += 1;
        self.bar.set_message(format!("{} failed", self.failed));
        self.bar
            .suspend(|| crate::driver::note(&format!("{message}\n")));
        self.bar.inc(1);
    }

    /// Clears the bar and returns the run's figures.
    pub fn finish(self) -> Summary {
        // Read before finishing: finishing moves the bar to its end.
        let done = self.bar.position() as usize;
        self.bar.finish_and_clear();
        Summary {
            images: self.total,
            done,
            failed: self.failed,
            elapsed: self.start.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::{InMemoryTerm, TermLike};

    /// The bar as a terminal shows it: counts, failures and the bar itself move with the run.
    #[test]
    fn bar_shows_counts_and_failures() {
        let term = InMemoryTerm::new(4, 120);
        let mut p = Progress::with_target(
            4,
            ProgressDrawTarget::term_like_with_hz(Box::new(term.clone()), 200),
        );
        p.ok();
        p.bar.tick();
        let first = term.contents();
        assert!(first.contains("1/4 images, 0 failed"), "{first:?}");
        p.fail("error: `b.png`: corrupt");
        p.ok();
        std::thread::sleep(Duration::from_millis(5));
        p.bar.tick();
        let now = term.contents();
        assert!(now.contains("3/4 images, 1 failed"), "{now:?}");
        // The filled part of the bar grows: 3 of 4 is 22 or 23 of 30 cells.
        let filled = now.chars().filter(|&c| c == '█').count();
        assert!(
            (21..=23).contains(&filled),
            "{filled} cells filled: {now:?}"
        );
        assert_eq!(p.bar.position(), 3);
        p.ok();
        let s = p.finish();
        assert_eq!((s.images, s.done, s.failed), (4, 4, 1));
        // Finished: the bar is cleared from the terminal.
        assert!(
            !term.contents().contains("images,"),
            "{:?}",
            term.contents()
        );
        assert!(term.width() == 120);
    }

    /// Not a terminal: nothing is drawn, the counts still hold.
    #[test]
    fn hidden_bar_still_counts() {
        let mut p = Progress::with_target(3, ProgressDrawTarget::hidden());
        p.ok();
        p.fail("error: x");
        assert_eq!(p.bar.position(), 2);
        assert!(p.bar.is_hidden());
        let s = p.finish();
        assert_eq!((s.images, s.done, s.failed), (3, 2, 1));
        assert!(s.line().starts_with("3 images, 1 failed, "), "{}", s.line());
    }

    #[test]
    fn summary_line_and_rate() {
        let s = Summary {
            images: 100,
            done: 100,
            failed: 2,
            elapsed: Duration::from_millis(500),
        };
        assert_eq!(s.line(), "100 images, 2 failed, 200.0 images/s (0.50 s)");
    }
}
