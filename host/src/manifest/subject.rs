//! NATS subjects: validity, and whether a grant (with `*` and `>` wildcards) covers a subject.
//! Pure.

/// Whether `subject` is a valid subject to publish to: dot-separated non-empty tokens, no
/// whitespace, no wildcards.
pub fn valid_publish(subject: &str) -> bool {
    valid(subject, false)
}

/// Whether `subject` is a valid subject to subscribe to (wildcards allowed: `*` for one token,
/// `>` for the rest).
pub fn valid_subscribe(subject: &str) -> bool {
    valid(subject, true)
}

/// Whether `subject` has the form of a request's inbox (`_INBOX.` and tokens, no wildcards), the
/// only reply subjects a block may answer on without a grant: a requester could name any
/// subject as its reply, and the block would publish there on its behalf.
pub fn is_inbox(subject: &str) -> bool {
    subject.strip_prefix("_INBOX.").is_some_and(|rest| valid(rest, false))
}

fn valid(subject: &str, wildcards: bool) -> bool {
    if subject.is_empty() || subject.len() > 1024 {
        return false;
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && !t.chars().any(|c| c.is_whitespace() || c.is_control())
            && match *t {
                "*" => wildcards,
                ">" => wildcards && i == tokens.len() - 1,
                t => !t.contains('*') && !t.contains('>'),
            }
    })
}

/// Whether the grant `pattern` covers every subject `subject` can stand for (a subscription
/// with wildcards is covered only by a grant at least as wide).
pub fn covers(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(pt), Some(st)) if pt == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_cover_what_their_wildcards_say() {
        assert!(covers("logs.>", "logs.syslog"));
        assert!(covers("logs.>", "logs.syslog.tcp"));
        assert!(!covers("logs.>", "logs"));
        assert!(covers("cmd.*", "cmd.restart"));
        assert!(!covers("cmd.*", "cmd.restart.now"));
        assert!(covers("cmd.*", "cmd.*"));
        assert!(!covers("cmd.*", "cmd.>"), "a subscription wider than the grant");
        assert!(covers("a.b", "a.b"));
        assert!(!covers("a.b", "a.c"));
        assert!(covers(">", "anything.at.all"));
    }

    #[test]
    fn subjects_are_checked() {
        assert!(valid_publish("logs.syslog"));
        assert!(!valid_publish("logs.*"));
        assert!(!valid_publish("logs..x"));
        assert!(!valid_publish("has space"));
        assert!(!valid_publish(""));
        assert!(valid_subscribe("logs.>"));
        assert!(valid_subscribe("a.*.c"));
        assert!(!valid_subscribe("a.>.c"));
    }

    #[test]
    fn only_an_inbox_is_a_reply_subject() {
        assert!(is_inbox("_INBOX.abc.1"));
        assert!(!is_inbox("_INBOX."));
        assert!(!is_inbox("_INBOX.>"));
        assert!(!is_inbox("$JS.API.STREAM.DELETE.X"));
        assert!(!is_inbox("bagpipe.prod.to.sink"));
    }
}
