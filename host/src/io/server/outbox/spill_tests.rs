use super::*;

fn open(dir: &Path, max: usize) -> (Spill, Recovery) {
    Spill::open(dir, max).unwrap()
}

fn push(spill: &mut Spill, n: u64) {
    let id = Some(format!("relay.X.{n}"));
    spill.append("out.bags".into(), Bytes::from(format!("{{\"n\":{n}}}")), id).unwrap();
}

/// Sends everything, `batch` at a time, confirming each batch; returns the payloads in order.
fn drain(spill: &mut Spill, batch: usize) -> Vec<String> {
    let mut sent = Vec::new();
    loop {
        let front = spill.front(batch).unwrap();
        if front.is_empty() {
            return sent;
        }
        sent.extend(front.iter().map(|m| String::from_utf8_lossy(&m.payload).into_owned()));
        assert!(spill.confirm(front.len()).is_none());
    }
}

fn numbers(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|n| format!("{{\"n\":{n}}}")).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    found.sort();
    found
}

#[test]
fn messages_leave_in_order_and_their_files_with_them() {
    let tmp = tempfile::tempdir().unwrap();
    // Small segments (1 KiB), many of them.
    let (mut spill, recovery) = open(tmp.path(), 16 * 1024);
    assert_eq!(recovery.messages, 0);
    for n in 1..=200 {
        push(&mut spill, n);
    }
    assert_eq!(spill.waiting(), 200);
    assert!(segments(tmp.path()).len() >= 4, "rolled over segments");
    assert_eq!(spill.held(), segments(tmp.path()).iter().map(|p| p.metadata().unwrap().len()).sum::<u64>());
    assert_eq!(drain(&mut spill, 7), numbers(1..=200));
    assert_eq!((spill.waiting(), spill.held()), (0, 0));
    assert!(segments(tmp.path()).is_empty(), "every confirmed segment is removed");
    // And it goes on after being emptied.
    push(&mut spill, 201);
    assert_eq!(drain(&mut spill, 10), numbers(201..=201));
}

#[test]
fn memory_holds_only_a_window_of_what_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut spill, _) = open(tmp.path(), 1 << 20);
    for n in 1..=2000 {
        push(&mut spill, n);
    }
    let front = spill.front(usize::MAX).unwrap();
    assert_eq!(front.len(), OUTBOX_BATCH);
    assert!(spill.window.len() <= OUTBOX_BATCH);
    assert_eq!(drain(&mut spill, OUTBOX_BATCH), numbers(1..=2000));
}

#[test]
fn the_bound_counts_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut spill, _) = open(tmp.path(), 2048);
    let mut taken = 0;
    let full = loop {
        match spill.append("out.x".into(), Bytes::from_static(&[b'x'; 100]), None) {
            Ok(()) => taken += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(full, AppendError::Full { held } if held <= 2048), "{full:?}");
    assert!(taken > 10);
    assert!(spill.held() <= 2048);
    // Confirming makes room again.
    let front = spill.front(5).unwrap();
    spill.confirm(front.len());
    while spill.segments.len() > 1 {
        let front = spill.front(5).unwrap();
        spill.confirm(front.len());
    }
    assert!(spill.append("out.x".into(), Bytes::from_static(b"again"), None).is_ok());
}

#[test]
fn what_a_killed_host_left_is_recovered_in_order_with_its_ids() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut spill, _) = open(tmp.path(), 64 * 1024);
        for n in 1..=300 {
            push(&mut spill, n);
        }
        // 120 confirmed, the rest not: then the host is killed (nothing is closed).
        let mut confirmed = 0;
        while confirmed < 120 {
            let front = spill.front(40).unwrap();
            spill.confirm(front.len());
            confirmed += front.len();
        }
    }
    let (mut spill, recovery) = open(tmp.path(), 64 * 1024);
    assert!(recovery.torn.is_empty(), "{:?}", recovery.torn);
    assert_eq!(recovery.messages, 180);
    assert_eq!(spill.waiting(), 180);
    let first = spill.front(1).unwrap();
    assert_eq!(first[0].id.as_deref(), Some("relay.X.121"), "the id stored with it");
    assert_eq!(first[0].seq, 121);
    // New messages come after the recovered ones, with later numbers.
    push(&mut spill, 301);
    assert_eq!(spill.next_seq(), 302);
    assert_eq!(drain(&mut spill, 50), numbers(121..=301));
    // Everything confirmed: nothing left to recover.
    drop(spill);
    let (spill, recovery) = open(tmp.path(), 64 * 1024);
    assert_eq!((recovery.messages, spill.waiting(), spill.held()), (0, 0, 0));
    assert_eq!(spill.next_seq(), 302, "numbers never go back");
}

#[test]
fn a_torn_last_record_is_reported_cut_and_the_rest_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut spill, _) = open(tmp.path(), 1 << 20);
        for n in 1..=50 {
            push(&mut spill, n);
        }
    }
    let last = segments(tmp.path()).pop().unwrap();
    let len = last.metadata().unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len - 3).unwrap();
    let (mut spill, recovery) = open(tmp.path(), 1 << 20);
    assert_eq!(recovery.torn.len(), 1, "{:?}", recovery.torn);
    assert!(recovery.torn[0].contains(&last.display().to_string()), "names the file: {:?}", recovery.torn);
    assert_eq!(recovery.messages, 49);
    push(&mut spill, 51);
    assert_eq!(drain(&mut spill, 20), [numbers(1..=49), numbers(51..=51)].concat());
    drop(spill);
    let (_, recovery) = open(tmp.path(), 1 << 20);
    assert!(recovery.torn.is_empty(), "the torn end was cut off: {:?}", recovery.torn);
}

#[test]
fn a_damaged_confirmed_file_sends_everything_again() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut spill, _) = open(tmp.path(), 1 << 20);
        for n in 1..=10 {
            push(&mut spill, n);
        }
        let front = spill.front(4).unwrap();
        spill.confirm(front.len());
    }
    std::fs::write(tmp.path().join(CONFIRMED_FILE), b"junk").unwrap();
    let (mut spill, recovery) = open(tmp.path(), 1 << 20);
    assert_eq!(recovery.messages, 10, "at least once");
    assert_eq!(drain(&mut spill, 3), numbers(1..=10));
}

#[test]
fn two_hosts_cannot_share_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut first, _) = open(tmp.path(), 4096);
    let Err(e) = Spill::open(tmp.path(), 4096) else { panic!("the directory is taken") };
    let message = format!("{e:#}");
    assert!(message.contains(&tmp.path().display().to_string()) && message.contains("in use"), "{message}");
    first.close();
    assert!(Spill::open(tmp.path(), 4096).is_ok(), "free once closed");
}

#[test]
fn a_closed_spill_refuses_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut spill, _) = open(tmp.path(), 4096);
    push(&mut spill, 1);
    assert_eq!(spill.close(), 1);
    assert!(matches!(spill.append("out.x".into(), Bytes::new(), None), Err(AppendError::Closed)));
}

#[test]
fn a_disk_error_refuses_the_message_and_loses_nothing_taken() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let (mut spill, _) = open(tmp.path(), 64 * 1024);
    push(&mut spill, 1);
    // No new segment can be made in a read-only directory (root ignores permissions: skip then).
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let writable = std::fs::File::create(tmp.path().join("probe")).is_ok();
    spill.writer = None;
    let refused = spill.append("out.x".into(), Bytes::from_static(b"x"), None);
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    if !writable {
        assert!(matches!(&refused, Err(AppendError::Disk(why)) if why.contains("spill file")), "{refused:?}");
        assert_eq!(spill.waiting(), 1);
    }
    push(&mut spill, 2);
    let sent = drain(&mut spill, 10);
    assert_eq!(sent.first().map(String::as_str), Some("{\"n\":1}"));
    assert_eq!(sent.last().map(String::as_str), Some("{\"n\":2}"));
}

#[test]
fn spill_directories_are_one_path_component() {
    let base = Path::new("/state");
    assert_eq!(spill_dir(base, "relay"), Path::new("/state/outbox/relay"));
    assert_eq!(spill_dir(base, "a.b-c_d"), Path::new("/state/outbox/a.b-c_d"));
    assert_eq!(spill_dir(base, "../x/y"), Path::new("/state/outbox/%2E.%2Fx%2Fy"));
    assert_eq!(spill_dir(base, ".."), Path::new("/state/outbox/%2E."));
}
