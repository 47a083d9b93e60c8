//! The spill files' format: one record per published message, and the confirmed-sequence file.
//!
//! A record is `len: u32 LE | crc: u32 LE | body`, where `crc` is the CRC-32 of `body` and `body`
//! is `seq: u64 LE | subject_len: u32 LE | id_len: u32 LE | subject | id | payload` (an empty id
//! means none). A record whose header or body is cut short (the host or the machine stopped in the
//! middle of a write), whose length is past the file's end or [`MAX_RECORD_BYTES`], or whose
//! checksum does not match, is [`Read::Bad`]: the reader stops there, it never panics.
//!
//! The confirmed file holds `seq: u64 LE | crc: u32 LE`: every message up to `seq` was confirmed
//! by the server. One that does not read back whole is ignored (the messages are sent again:
//! at-least-once).

use std::fs::File;
use std::os::unix::fs::FileExt as _;

use bytes::Bytes;

/// Bytes of a record's header (length and checksum).
pub const HEADER_BYTES: usize = 8;

/// Bytes of a body's fixed part (sequence number and two lengths).
const FIXED_BYTES: usize = 16;

/// The largest record body read back: past it, a length is taken as damage, not allocated.
pub const MAX_RECORD_BYTES: u64 = 128 << 20;

/// Bytes of the confirmed file.
pub const CONFIRMED_BYTES: usize = 12;

/// One message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its number in the block's outbox (increasing, across runs).
    pub seq: u64,
    /// Where it goes.
    pub subject: String,
    /// Its `Nats-Msg-Id`, when it is published to a stream.
    pub id: Option<String>,
    /// What it carries.
    pub payload: Bytes,
}

/// What is at an offset of a spill file.
#[derive(Debug)]
pub enum Read {
    /// A whole record, and how many bytes it takes in the file.
    Record(Record, u64),
    /// The end of the file (or of what was written of it).
    End,
    /// A record that is torn or damaged, and why: nothing after it in this file is read.
    Bad(String),
}

/// A record's bytes, header included.
pub fn encode(seq: u64, subject: &str, id: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let id = id.unwrap_or_default();
    let body_len = FIXED_BYTES + subject.len() + id.len() + payload.len();
    let mut out = Vec::with_capacity(HEADER_BYTES + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(subject.len() as u32).to_le_bytes());
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[HEADER_BYTES..]);
    out[4..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads the record at `offset` of `file`, of which the first `end` bytes are to be read.
pub fn read_at(file: &File, offset: u64, end: u64) -> std::io::Result<Read> {
    let left = end.saturating_sub(offset);
    if left == 0 {
        return Ok(Read::End);
    }
    if left < HEADER_BYTES as u64 {
        return Ok(Read::Bad(format!("{left} bytes at offset {offset} are less than a record's header")));
    }
    let mut header = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut header, offset)?;
    let (len, crc) = split_header(&header);
    let len = u64::from(len);
    if len > MAX_RECORD_BYTES || len > left - HEADER_BYTES as u64 {
        return Ok(Read::Bad(format!(
            "the record at offset {offset} says it has {len} bytes; {} are left",
            left - HEADER_BYTES as u64
        )));
    }
    let mut body = vec![0u8; len as usize];
    file.read_exact_at(&mut body, offset + HEADER_BYTES as u64)?;
    if crc32fast::hash(&body) != crc {
        return Ok(Read::Bad(format!("the record at offset {offset} does not match its checksum")));
    }
    Ok(match decode_body(body) {
        Some(record) => Read::Record(record, HEADER_BYTES as u64 + len),
        None => Read::Bad(format!("the record at offset {offset} is not a message")),
    })
}

fn split_header(header: &[u8; HEADER_BYTES]) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = *header;
    (u32::from_le_bytes([a, b, c, d]), u32::from_le_bytes([e, f, g, h]))
}

/// A checked body as a record; `None` when its lengths do not add up or a text is not UTF-8.
fn decode_body(body: Vec<u8>) -> Option<Record> {
    let seq = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let subject_len = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?) as usize;
    let id_len = u32::from_le_bytes(body.get(12..16)?.try_into().ok()?) as usize;
    let subject_end = FIXED_BYTES.checked_add(subject_len)?;
    let id_end = subject_end.checked_add(id_len)?;
    let subject = std::str::from_utf8(body.get(FIXED_BYTES..subject_end)?).ok()?.to_owned();
    let id = std::str::from_utf8(body.get(subject_end..id_end)?).ok()?.to_owned();
    let mut payload = Bytes::from(body);
    let payload = payload.split_off(id_end);
    Some(Record { seq, subject, id: (!id.is_empty()).then_some(id), payload })
}

/// The confirmed file's bytes for `seq`.
pub fn encode_confirmed(seq: u64) -> [u8; CONFIRMED_BYTES] {
    let mut out = [0u8; CONFIRMED_BYTES];
    out[..8].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&out[..8]);
    out[8..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The sequence number a confirmed file holds; `None` when it is not whole.
pub fn decode_confirmed(bytes: &[u8]) -> Option<u64> {
    let seq: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let crc: [u8; 4] = bytes.get(8..CONFIRMED_BYTES)?.try_into().ok()?;
    (crc32fast::hash(&seq) == u32::from_le_bytes(crc)).then_some(u64::from_le_bytes(seq))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn file_of(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    /// Every record of `file`'s first `end` bytes, and what stopped the reading.
    fn read_all(file: &File, end: u64) -> (Vec<Record>, Read) {
        let (mut records, mut offset) = (Vec::new(), 0);
        loop {
            match read_at(file, offset, end).unwrap() {
                Read::Record(record, len) => {
                    records.push(record);
                    offset += len;
                }
                other => return (records, other),
            }
        }
    }

    fn three() -> Vec<u8> {
        let mut bytes = encode(1, "out.a", None, b"{\"n\":1}");
        bytes.extend(encode(2, "out.b", Some("relay.X.2"), b""));
        bytes.extend(encode(3, "out.c", Some("relay.X.3"), &[0xff; 300]));
        bytes
    }

    #[test]
    fn records_read_back_as_written() {
        let bytes = three();
        let (records, end) = read_all(&file_of(&bytes), bytes.len() as u64);
        assert!(matches!(end, Read::End), "{end:?}");
        assert_eq!(records.len(), 3);
        assert_eq!(
            records[0],
            Record { seq: 1, subject: "out.a".into(), id: None, payload: Bytes::from_static(b"{\"n\":1}") }
        );
        assert_eq!(records[1].id.as_deref(), Some("relay.X.2"));
        assert!(records[1].payload.is_empty());
        assert_eq!(records[2].payload.len(), 300);
    }

    #[test]
    fn a_torn_last_record_is_bad_and_the_ones_before_it_read() {
        let bytes = three();
        let last = encode(3, "out.c", Some("relay.X.3"), &[0xff; 300]).len();
        // Cut anywhere inside the last record: its header, its body, its last byte.
        for cut in [1, 3, HEADER_BYTES, HEADER_BYTES + 1, last / 2, last - 1] {
            let end = (bytes.len() - last + cut) as u64;
            let (records, stop) = read_all(&file_of(&bytes[..end as usize]), end);
            assert_eq!(records.len(), 2, "cut {cut}");
            assert!(matches!(stop, Read::Bad(_)), "cut {cut}: {stop:?}");
        }
    }

    #[test]
    fn reading_stops_at_what_was_written_even_if_the_file_is_longer() {
        let bytes = three();
        let first = encode(1, "out.a", None, b"{\"n\":1}").len() as u64;
        let (records, stop) = read_all(&file_of(&bytes), first);
        assert_eq!(records.len(), 1);
        assert!(matches!(stop, Read::End));
    }

    #[test]
    fn damage_is_caught_by_the_checksum_or_the_length() {
        let bytes = three();
        let len = bytes.len() as u64;
        // A flipped bit in a body.
        let mut flipped = bytes.clone();
        flipped[HEADER_BYTES + 3] ^= 0x10;
        let (records, stop) = read_all(&file_of(&flipped), len);
        assert!(records.is_empty());
        assert!(matches!(&stop, Read::Bad(why) if why.contains("checksum")), "{stop:?}");
        // A length past the file's end, or absurdly large: not allocated, reported.
        for huge in [u32::MAX, 1 << 20] {
            let mut long = bytes.clone();
            long[..4].copy_from_slice(&huge.to_le_bytes());
            let (records, stop) = read_all(&file_of(&long), len);
            assert!(records.is_empty());
            assert!(matches!(stop, Read::Bad(_)), "{stop:?}");
        }
        // A body whose lengths do not add up, with a valid checksum.
        let mut body = 7u64.to_le_bytes().to_vec();
        body.extend(u32::MAX.to_le_bytes());
        body.extend(0u32.to_le_bytes());
        let mut record = (body.len() as u32).to_le_bytes().to_vec();
        record.extend(crc32fast::hash(&body).to_le_bytes());
        record.extend(&body);
        let (_, stop) = read_all(&file_of(&record), record.len() as u64);
        assert!(matches!(&stop, Read::Bad(why) if why.contains("not a message")), "{stop:?}");
    }

    #[test]
    fn any_bytes_read_without_panicking() {
        // A cheap sweep: every prefix of every single-byte change of a small file.
        let bytes = three();
        for i in (0..bytes.len()).step_by(7) {
            let mut changed = bytes.clone();
            changed[i] = changed[i].wrapping_add(1 + i as u8);
            for end in (0..=changed.len()).step_by(13) {
                let _ = read_all(&file_of(&changed[..end]), end as u64);
            }
        }
    }

    #[test]
    fn the_confirmed_file_reads_back_or_not_at_all() {
        let bytes = encode_confirmed(41);
        assert_eq!(decode_confirmed(&bytes), Some(41));
        assert_eq!(decode_confirmed(&bytes[..CONFIRMED_BYTES - 1]), None);
        assert_eq!(decode_confirmed(&[]), None);
        let mut damaged = bytes;
        damaged[2] ^= 1;
        assert_eq!(decode_confirmed(&damaged), None);
    }
}
