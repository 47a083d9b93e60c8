//! `bagpipe status`: the stats as an aligned text table, a row per block and, with `--workers`,
//! a row per worker under each block served by several.

use bagpipe::StatsSnapshot;

const HEADER: [&str; 17] = [
    "BLOCK",
    "COMPONENT",
    "STATE",
    "VERSION",
    "RECV",
    "DONE",
    "FAILED",
    "FAULTS",
    "RESTARTS",
    "DEAD",
    "LOST",
    "QUEUE",
    "HIGH",
    "P50",
    "P99",
    "SWAPS",
    "WORKERS",
];

/// The table: one row per block; with `workers`, one more per worker of a pool (its number,
/// state, version, what it was handed (RECV) and holds (QUEUE), its faults and restarts).
pub fn table(blocks: &[StatsSnapshot], workers: bool) -> String {
    let us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}µs"));
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in blocks {
        // Workers now, of at most; with `--workers`, also the high-water mark, scale-ups and
        // retirements (last column: it may hold spaces).
        let pool = s.workers.as_ref().map_or("1".to_owned(), |p| match workers {
            true => format!("{}/{} high={} up={} retired={}", p.now, p.max, p.high_water, p.scale_ups, p.retirements),
            false => format!("{}/{}", p.now, p.max),
        });
        rows.push(vec![
            s.responsibility.clone(),
            s.name.clone(),
            s.state.clone(),
            s.version.clone(),
            s.received.to_string(),
            s.processed.to_string(),
            s.failed.to_string(),
            s.faults.to_string(),
            s.restarts.to_string(),
            s.dead_letters.to_string(),
            s.lost.to_string(),
            s.queue_depth.to_string(),
            s.queue_high_water.to_string(),
            us(s.processing_p50_us),
            us(s.processing_p99_us),
            format!("{}/{}", s.swaps, s.swaps_failed),
            pool,
        ]);
        let Some(pool) = s.workers.as_ref().filter(|_| workers) else { continue };
        for w in &pool.workers {
            let mut row = vec![String::new(); HEADER.len()];
            row[0] = format!("  #{}", w.id);
            row[2] = w.state.clone();
            row[3] = w.version.clone();
            row[4] = w.handed.to_string();
            row[7] = w.faults.to_string();
            row[8] = w.restarts.to_string();
            row[11] = w.in_flight.to_string();
            rows.push(row);
        }
    }
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).chain([HEADER[c].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let mut l: String =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect::<Vec<_>>().join("  ");
        l.truncate(l.trim_end().len());
        l + "\n"
    };
    let mut out = line(HEADER.to_vec());
    for r in &rows {
        out += &line(r.iter().map(String::as_str).collect());
    }
    out
}
