//! Progress of a load: a bar per table and one overall on a terminal (rows, rows/s, ETA), plain
//! `tracing` lines otherwise (every [`LOG_EVERY`]); the same numbers are metrics
//! (`walaudit_snapshot_*`).

use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Interval of the plain progress lines.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// Bars on stderr (a terminal).
    Bars,
    /// Log lines.
    Logs,
}

impl Display {
    /// Bars when stderr is a terminal, log lines otherwise.
    pub fn detect() -> Display {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Display::Bars
        } else {
            Display::Logs
        }
    }
}

struct Table {
    name: String,
    expected: u64,
    copied: u64,
    chunks: u64,
    chunks_done: u64,
    bar: Option<ProgressBar>,
}

/// Progress of the tables of one load pass.
pub struct Progress {
    tables: Vec<Table>,
    overall: Option<ProgressBar>,
    _multi: Option<MultiProgress>,
    started: Instant,
    last_log: Instant,
    log_every: Duration,
    /// Rows already in the lake when the pass started (resumed loads): not counted in the rate.
    resumed_rows: u64,
}

impl Progress {
    /// `tables`: name, expected rows, chunks, rows already copied, chunks already done.
    pub fn new(display: Display, tables: &[(String, u64, u64, u64, u64)]) -> Progress {
        Self::with_log_every(display, tables, LOG_EVERY)
    }

    /// [`new`](Self::new) with log lines every `log_every`.
    pub fn with_log_every(
        display: Display,
        tables: &[(String, u64, u64, u64, u64)],
        log_every: Duration,
    ) -> Progress {
        let multi = (display == Display::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)));
        let style = ProgressStyle::with_template(
            "{prefix:>28!} {bar:28} {human_pos:>11}/{human_len:11} rows {per_sec:>14} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = |prefix: &str, len: u64, pos: u64| {
            multi.as_ref().map(|m| {
                let b = m.add(ProgressBar::new(len.max(pos)));
                b.set_style(style.clone());
                b.set_prefix(prefix.to_owned());
                b.set_position(pos);
                b.reset_elapsed();
                b
            })
        };
        let tables: Vec<Table> = tables
            .iter()
            .map(|(name, expected, chunks, copied, done)| Table {
                name: name.clone(),
                expected: *expected,
                copied: *copied,
                chunks: *chunks,
                chunks_done: *done,
                bar: bar(name, *expected, *copied),
            })
            .collect();
        let total: u64 = tables.iter().map(|t| t.expected).sum();
        let resumed_rows: u64 = tables.iter().map(|t| t.copied).sum();
        let overall = bar("all tables", total, resumed_rows);
        Progress {
            tables,
            overall,
            _multi: multi,
            started: Instant::now(),
            last_log: Instant::now(),
            log_every,
            resumed_rows,
        }
    }

    pub fn rows(&mut self, table: usize, rows: u64) {
        let t = &mut self.tables[table];
        t.copied += rows;
        if let Some(bar) = &t.bar {
            // Estimates can be low: grow the bar instead of overflowing it.
            if t.copied > t.expected {
                t.expected = t.copied;
                bar.set_length(t.expected);
            }
            bar.set_position(t.copied);
        }
        if let Some(bar) = &self.overall {
            let total: u64 = self.tables.iter().map(|t| t.expected).sum();
            bar.set_length(total);
            bar.inc(rows);
        }
        self.maybe_log();
    }

    pub fn chunk_done(&mut self, table: usize) {
        self.tables[table].chunks_done += 1;
        self.maybe_log();
    }

    /// A table's load ended.
    pub fn table_done(&mut self, table: usize) {
        let t = &mut self.tables[table];
        if let Some(bar) = &t.bar {
            bar.set_length(t.copied);
            bar.finish();
        }
        tracing::info!(
            table = %t.name, rows = t.copied, chunks = t.chunks_done, "table snapshot finished"
        );
    }

    fn maybe_log(&mut self) {
        if self.overall.is_some() || self.last_log.elapsed() < self.log_every {
            return;
        }
        self.last_log = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        for t in self.tables.iter().filter(|t| t.chunks_done < t.chunks) {
            tracing::info!(
                table = %t.name, rows = t.copied, expected = t.expected,
                chunks = t.chunks_done, of_chunks = t.chunks, "snapshot progress"
            );
        }
        let copied: u64 = self.tables.iter().map(|t| t.copied).sum();
        let expected: u64 = self.tables.iter().map(|t| t.expected).sum();
        let rate = (copied - self.resumed_rows.min(copied)) as f64 / secs;
        let eta = (rate > 0.0).then(|| expected.saturating_sub(copied) as f64 / rate);
        tracing::info!(
            rows = copied,
            expected,
            rows_per_s = rate as u64,
            eta_s = eta.map(|e| e as u64),
            "snapshot progress (all tables)"
        );
    }

    /// The pass ended: close the bars.
    pub fn finish(&mut self) {
        if let Some(bar) = &self.overall {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Log lines written while `f` runs.
    fn logs(f: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Writer(Arc::clone(&writer)))
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn tables() -> Vec<(String, u64, u64, u64, u64)> {
        vec![
            ("public.a".into(), 1000, 4, 0, 0),
            // Resumed: 500 rows and 1 of 2 chunks were done before this pass.
            ("public.b".into(), 1000, 2, 500, 1),
        ]
    }

    #[test]
    fn log_lines_name_unfinished_tables_and_the_overall_rate() {
        let out = logs(|| {
            let mut p = Progress::with_log_every(Display::Logs, &tables(), Duration::ZERO);
            std::thread::sleep(Duration::from_millis(20));
            p.rows(0, 250);
            p.chunk_done(0);
            p.rows(1, 500);
            p.chunk_done(1);
            p.table_done(1);
            p.finish();
        });
        let last_overall = out
            .lines()
            .rev()
            .find(|l| l.contains("snapshot progress (all tables)"))
            .unwrap_or_else(|| panic!("no overall progress line: {out}"));
        assert!(
            last_overall.contains("rows=1250 expected=2000"),
            "{last_overall}"
        );
        assert!(last_overall.contains("rows_per_s="), "{last_overall}");
        assert!(last_overall.contains("eta_s="), "{last_overall}");
        let last_a = out
            .lines()
            .rev()
            .find(|l| l.contains("table=public.a") && l.contains("snapshot progress"))
            .unwrap_or_else(|| panic!("no progress line for public.a: {out}"));
        assert!(
            last_a.contains("rows=250 expected=1000 chunks=1 of_chunks=4"),
            "{last_a}"
        );
        assert!(
            out.contains("table snapshot finished table=public.b rows=1000 chunks=2"),
            "{out}"
        );
    }

    #[test]
    fn no_log_lines_before_the_interval_or_with_bars() {
        let out = logs(|| {
            let mut p =
                Progress::with_log_every(Display::Logs, &tables(), Duration::from_secs(3600));
            p.rows(0, 10);
            let mut bars = Progress::with_log_every(Display::Bars, &tables(), Duration::ZERO);
            bars.rows(0, 10);
            bars.finish();
        });
        assert!(!out.contains("snapshot progress"), "{out}");
    }
}
