//! A block's outbox on disk (`outbox = "disk"`): its spill directory,
//! `<state_dir>/outbox/<responsibility>/`, holds a `lock` file (locked while a host uses it), a
//! `confirmed` file (the last sequence number the server confirmed) and segment files,
//! `<first seq>.seg`, of [`record`]s appended in order.
//!
//! A message is written (write(2), not synced) before `publish` returns, so a host that is killed
//! loses nothing; the files are synced in batches (every [`SPILL_SYNC`](crate::defaults::SPILL_SYNC)
//! while something was written), so a machine that stops loses at most what came after the last
//! sync. Memory holds only a window of the messages in flight (at most [`OUTBOX_BATCH`] and about
//! [`SPILL_WINDOW_BYTES`]); the rest is read from the files in order. A segment leaves once all of
//! its messages were confirmed.
//!
//! On open, what an earlier run left unconfirmed is found (counted as recovered) and sent first; a
//! torn or damaged record ends what is read of its file, with a warning, and the file is cut there.
//!
//! Invariants: the segment files together hold at most `outbox_bytes`; messages leave in the order
//! they came, across runs; a disk error refuses the message that met it (never a panic, never a
//! silent loss); two hosts never use one directory at once.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use bytes::Bytes;

use super::Outgoing;
use super::record::{self, CONFIRMED_BYTES, Read};
use crate::defaults::{OUTBOX_BATCH, SPILL_SEGMENT_BYTES, SPILL_WINDOW_BYTES};

const LOCK_FILE: &str = "lock";
const CONFIRMED_FILE: &str = "confirmed";
const SEGMENT_SUFFIX: &str = ".seg";

/// The spill directory of the block `responsibility` under the host's state directory: the
/// responsibility with every character but letters, digits, `-`, `_` and a `.` that does not
/// start it written as `%XX` (so it is always one path component).
pub fn spill_dir(state_dir: &Path, responsibility: &str) -> PathBuf {
    let mut name = String::with_capacity(responsibility.len());
    for (i, byte) in responsibility.bytes().enumerate() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' || (byte == b'.' && i > 0) {
            name.push(byte as char);
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    state_dir.join("outbox").join(name)
}

/// Why a message was not spilled.
#[derive(Debug)]
pub enum AppendError {
    /// The files would hold more than `outbox_bytes`; they hold `held`.
    Full { held: u64 },
    /// Writing failed (a full disk, permissions): what happened.
    Disk(String),
    /// The outbox was closed (its block ended).
    Closed,
}

/// What opening found of an earlier run.
pub struct Recovery {
    /// Messages left unconfirmed, to be sent first.
    pub messages: u64,
    /// A warning for each torn or damaged file (the path and what was wrong).
    pub torn: Vec<String>,
}

/// Files to sync, taken under the outbox's lock and synced outside it.
pub struct SyncJob {
    files: Vec<File>,
    dir: Option<PathBuf>,
}

impl SyncJob {
    /// Syncs the data written to each file, and the directory when files were made in it.
    pub fn run(self) -> Result<(), String> {
        for file in self.files {
            file.sync_data().map_err(|e| format!("syncing a spill file: {e}"))?;
        }
        if let Some(dir) = self.dir {
            File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| format!("syncing {}: {e}", dir.display()))?;
        }
        Ok(())
    }
}

/// One segment file.
struct Segment {
    /// The sequence number of its first record (its name).
    first: u64,
    path: PathBuf,
    /// Bytes of it that hold records (it is never read past them).
    len: u64,
}

/// Where the next record after the window is.
#[derive(Clone, Copy)]
struct Cursor {
    /// The segment, by its first sequence number.
    segment: u64,
    offset: u64,
    /// The sequence number expected there.
    seq: u64,
}

impl Cursor {
    fn at(segment: u64) -> Self {
        Self { segment, offset: 0, seq: segment }
    }
}

/// A block's outbox on disk.
pub struct Spill {
    dir: PathBuf,
    /// Held (and locked) while the outbox is open.
    lock: Option<File>,
    confirmed_file: File,
    segments: VecDeque<Segment>,
    /// The last segment, open for appending; `None`: the next message starts a new segment.
    writer: Option<File>,
    reader: Option<(u64, File)>,
    max_bytes: u64,
    segment_bytes: u64,
    /// Bytes of the segment files.
    held: u64,
    /// Messages not yet confirmed.
    waiting: u64,
    next_seq: u64,
    /// The last sequence number confirmed.
    confirmed: u64,
    /// Messages read (or just written) and not yet confirmed: what memory holds.
    window: VecDeque<Outgoing>,
    window_bytes: usize,
    cursor: Cursor,
    /// The writer has data not synced yet.
    dirty: bool,
    /// Segments left since the last sync, to sync.
    unsynced: Vec<File>,
    /// Segments were made since the last sync.
    dir_unsynced: bool,
    /// Messages found unreadable while reading, not yet reported.
    lost: u64,
    closed: bool,
}

impl Spill {
    /// Opens (making it if needed) and locks the spill directory `dir` of an outbox of
    /// `max_bytes`, and finds what an earlier run left in it. Fails when another host holds it.
    pub fn open(dir: &Path, max_bytes: usize) -> anyhow::Result<(Self, Recovery)> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("making the outbox spill directory {}", dir.display()))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "the outbox spill directory {} is in use by another bagpipe host (it holds the lock on {}); \
                 give each host its own [host] state_dir",
                dir.display(),
                lock_path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()));
            }
        }
        let confirmed_path = dir.join(CONFIRMED_FILE);
        let confirmed_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&confirmed_path)
            .with_context(|| format!("opening {}", confirmed_path.display()))?;
        let mut bytes = [0u8; CONFIRMED_BYTES];
        let read =
            confirmed_file.read_at(&mut bytes, 0).with_context(|| format!("reading {}", confirmed_path.display()))?;
        let confirmed = record::decode_confirmed(&bytes[..read]).unwrap_or(0);
        let mut spill = Self {
            dir: dir.to_path_buf(),
            lock: Some(lock),
            confirmed_file,
            segments: VecDeque::new(),
            writer: None,
            reader: None,
            max_bytes: max_bytes as u64,
            segment_bytes: (max_bytes as u64 / 8).clamp(1024, SPILL_SEGMENT_BYTES),
            held: 0,
            waiting: 0,
            next_seq: 1,
            confirmed,
            window: VecDeque::new(),
            window_bytes: 0,
            cursor: Cursor::at(1),
            dirty: false,
            unsynced: Vec::new(),
            dir_unsynced: false,
            lost: 0,
            closed: false,
        };
        let torn = spill.recover()?;
        let messages = spill.waiting;
        Ok((spill, Recovery { messages, torn }))
    }

    /// Reads every segment: counts what waits, cuts torn files, removes confirmed or empty ones.
    fn recover(&mut self) -> anyhow::Result<Vec<String>> {
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let first = name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()?;
                Some((first, entry.path()))
            })
            .collect();
        found.sort();
        let mut torn = Vec::new();
        let mut last_seq = self.confirmed;
        let mut start = None;
        for (first, path) in found {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            let len = file.metadata().with_context(|| format!("reading {}", path.display()))?.len();
            let (mut offset, mut newest) = (0, 0);
            loop {
                match record::read_at(&file, offset, len).with_context(|| format!("reading {}", path.display()))? {
                    Read::Record(record, n) => {
                        if record.seq > self.confirmed {
                            self.waiting += 1;
                            start.get_or_insert(Cursor { segment: first, offset, seq: record.seq });
                        }
                        newest = record.seq;
                        offset += n;
                    }
                    Read::End => break,
                    Read::Bad(why) => {
                        torn.push(format!("{}: {why}; its last {} bytes are ignored", path.display(), len - offset));
                        let cut = OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(offset));
                        if let Err(e) = cut {
                            torn.push(format!("{}: cannot cut the damaged end: {e}", path.display()));
                        }
                        break;
                    }
                }
            }
            last_seq = last_seq.max(newest);
            if offset == 0 || newest <= self.confirmed {
                // Nothing in it waits: it is not needed any more.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            self.held += offset;
            self.segments.push_back(Segment { first, path, len: offset });
        }
        self.next_seq = last_seq + 1;
        self.cursor = start.unwrap_or(Cursor::at(self.next_seq));
        Ok(torn)
    }

    /// The sequence number the next message gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes of the segment files.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Messages not yet confirmed.
    pub fn waiting(&self) -> u64 {
        self.waiting
    }

    /// Messages found unreadable since the last call (counted as dropped by the caller).
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// Writes a message at the end of the last segment (a new one when it is full).
    pub fn append(&mut self, subject: String, payload: Bytes, id: Option<String>) -> Result<(), AppendError> {
        if self.closed {
            return Err(AppendError::Closed);
        }
        let bytes = record::encode(self.next_seq, &subject, id.as_deref(), &payload);
        let n = bytes.len() as u64;
        if self.held + n > self.max_bytes {
            return Err(AppendError::Full { held: self.held });
        }
        if self.writer.is_none() || self.segments.back().is_none_or(|s| s.len >= self.segment_bytes) {
            self.new_segment()
                .map_err(|e| AppendError::Disk(format!("making a spill file in {}: {e}", self.dir.display())))?;
        }
        let at_end = self.at_end();
        let (Some(file), Some(segment)) = (self.writer.as_ref(), self.segments.back_mut()) else {
            return Err(AppendError::Disk("no spill file is open".to_owned()));
        };
        if let Err(e) = file.write_all_at(&bytes, segment.len) {
            // Take back what was written of it; if that fails too, the next message starts a
            // new segment (this one is never read past `len`).
            if file.set_len(segment.len).is_err() {
                self.writer = None;
            }
            return Err(AppendError::Disk(format!("writing to {}: {e}", segment.path.display())));
        }
        segment.len += n;
        self.held += n;
        self.waiting += 1;
        self.dirty = true;
        let seq = self.next_seq;
        self.next_seq += 1;
        // In order with what is on disk: straight into the window when it has room.
        if at_end && self.window_has_room() {
            self.cursor.offset += n;
            self.cursor.seq = seq + 1;
            self.window_bytes += subject.len() + payload.len();
            self.window.push_back(Outgoing { subject, payload, seq, id });
        }
        Ok(())
    }

    fn window_has_room(&self) -> bool {
        self.window.len() < OUTBOX_BATCH && (self.window.is_empty() || self.window_bytes < SPILL_WINDOW_BYTES)
    }

    /// Whether the cursor is past every record written.
    fn at_end(&self) -> bool {
        self.segments.back().is_none_or(|s| self.cursor.segment == s.first && self.cursor.offset >= s.len)
    }

    fn new_segment(&mut self) -> std::io::Result<()> {
        let at_end = self.at_end();
        let path = self.dir.join(format!("{:020}{SEGMENT_SUFFIX}", self.next_seq));
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
        if let Some(old) = self.writer.replace(file) {
            self.unsynced.push(old);
        }
        self.dir_unsynced = true;
        self.segments.push_back(Segment { first: self.next_seq, path, len: 0 });
        if at_end {
            self.cursor = Cursor::at(self.next_seq);
        }
        Ok(())
    }

    /// Up to `max` messages from the front, in order, read from the files as needed.
    pub(super) fn front(&mut self, max: usize) -> Result<Vec<Outgoing>, String> {
        self.fill()?;
        Ok(self.window.iter().take(max).cloned().collect())
    }

    /// Reads records after the window into it while it has room.
    fn fill(&mut self) -> Result<(), String> {
        while self.window_has_room() {
            let i = self.segments.partition_point(|s| s.first < self.cursor.segment);
            let Some(segment) = self.segments.get(i).filter(|s| s.first == self.cursor.segment) else {
                // Its segment is gone (all of it confirmed): the next one starts where it ended.
                match self.segments.get(i) {
                    Some(next) => {
                        self.cursor = Cursor::at(next.first);
                        continue;
                    }
                    None => break,
                }
            };
            let (len, path) = (segment.len, segment.path.clone());
            if self.cursor.offset >= len {
                match self.segments.get(i + 1) {
                    Some(next) => {
                        self.cursor = Cursor::at(next.first);
                        continue;
                    }
                    None => break,
                }
            }
            if self.reader.as_ref().is_none_or(|(first, _)| *first != self.cursor.segment) {
                let file = File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
                self.reader = Some((self.cursor.segment, file));
            }
            let Some((_, file)) = &self.reader else { break };
            match record::read_at(file, self.cursor.offset, len) {
                Ok(Read::Record(record, n)) => {
                    self.cursor.offset += n;
                    self.cursor.seq = record.seq + 1;
                    self.window_bytes += record.subject.len() + record.payload.len();
                    let record::Record { seq, subject, id, payload } = record;
                    self.window.push_back(Outgoing { subject, payload, seq, id });
                }
                Ok(Read::End) => self.cursor.offset = len,
                Ok(Read::Bad(why)) => {
                    // Damaged since it was written: what it held is lost, and counted.
                    let end = self.segments.get(i + 1).map_or(self.next_seq, |s| s.first);
                    let lost = end.saturating_sub(self.cursor.seq).min(self.waiting);
                    self.lost += lost;
                    self.waiting -= lost;
                    self.cursor = Cursor { segment: self.cursor.segment, offset: len, seq: end };
                    tracing::error!(
                        event = "outbox_unreadable",
                        file = %path.display(),
                        messages = lost,
                        "{}: {why}; {lost} spilled messages cannot be read and are lost",
                        path.display()
                    );
                }
                Err(e) => return Err(format!("reading {}: {e}", path.display())),
            }
        }
        Ok(())
    }

    /// The first `n` messages of the window were confirmed: they leave, and so does every
    /// segment all of whose messages were. Says what went wrong on the disk, if anything.
    pub fn confirm(&mut self, n: usize) -> Option<String> {
        let n = n.min(self.window.len());
        if n == 0 {
            return None;
        }
        for message in self.window.drain(..n) {
            self.window_bytes -= message.subject.len() + message.payload.len();
            self.confirmed = message.seq;
        }
        self.waiting = self.waiting.saturating_sub(n as u64);
        let mut trouble = None;
        if let Err(e) = self.confirmed_file.write_all_at(&record::encode_confirmed(self.confirmed), 0) {
            trouble = Some(format!("writing {}: {e}", self.dir.join(CONFIRMED_FILE).display()));
        }
        while let Some(front) = self.segments.front() {
            let done = match self.segments.get(1) {
                Some(next) => next.first <= self.confirmed + 1,
                None => self.waiting == 0,
            };
            if !done {
                break;
            }
            if self.segments.len() == 1 {
                self.writer = None;
            }
            if self.reader.as_ref().is_some_and(|(first, _)| *first == front.first) {
                self.reader = None;
            }
            self.held -= front.len;
            if let Err(e) = std::fs::remove_file(&front.path) {
                trouble = Some(format!("removing {}: {e}", front.path.display()));
            }
            self.segments.pop_front();
        }
        if self.segments.is_empty() {
            self.cursor = Cursor::at(self.next_seq);
        }
        trouble
    }

    /// What to sync now, if anything was written since the last time.
    pub fn take_sync(&mut self) -> Option<SyncJob> {
        if !self.dirty && self.unsynced.is_empty() && !self.dir_unsynced {
            return None;
        }
        let mut files = std::mem::take(&mut self.unsynced);
        if std::mem::take(&mut self.dirty)
            && let Some(writer) = &self.writer
            && let Ok(clone) = writer.try_clone()
        {
            files.push(clone);
        }
        let dir = std::mem::take(&mut self.dir_unsynced).then(|| self.dir.clone());
        Some(SyncJob { files, dir })
    }

    /// Closes the files and lets go of the directory (another host may take it); returns how
    /// many messages stay in it for the next start.
    pub fn close(&mut self) -> u64 {
        self.closed = true;
        self.writer = None;
        self.reader = None;
        self.window.clear();
        self.window_bytes = 0;
        self.lock = None;
        self.waiting
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
#[path = "spill_tests.rs"]
mod tests;
