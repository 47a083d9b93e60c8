//! The fast path of the bag check: one pass over the bytes, no allocation, no tree, no number
//! conversion.
//!
//! Invariant: [`object`] is *sound* against the serde check in `bag.rs`: whatever it accepts,
//! that check accepts too, with the same answer about keys. It may give up (`None`) on anything
//! rare or hard (escapes in a top-level key, surrogate escapes, numbers near `f64`'s range,
//! nesting past serde_json's own limit): the caller then runs the serde check, which decides and
//! says why. So a refusal always reads as it did, and the property tests compare the two on
//! arbitrary text.

/// How deep serde_json nests before it refuses on its own (its recursion limit of 128 counts
/// down before each container opens, and refuses at zero).
const SERDE_MAX_DEPTH: u32 = 127;

/// Whether `text` is certainly one JSON object (whitespace around it allowed), nested at most
/// `max_depth` deep (the object itself counting as 1), with no top-level key starting with `__`
/// when `reserve_host_keys`. `Some(has_keys)` when it certainly is; `None` when it is not, or
/// when this scan cannot tell cheaply.
pub(crate) fn object(text: &str, max_depth: usize, reserve_host_keys: bool) -> Option<bool> {
    let limit = u32::try_from(max_depth).unwrap_or(u32::MAX).min(SERDE_MAX_DEPTH);
    let mut s = Scan { b: text.as_bytes(), i: 0 };
    s.ws();
    if s.peek()? != b'{' || limit == 0 {
        return None;
    }
    s.i += 1;
    // Bit `d` says whether the container at depth `d + 1` is an object (1) or an array (0).
    let mut kinds: u128 = 1;
    let mut depth: u32 = 1;
    let mut has_keys = false;
    // Where the scan is: expecting a key (or `}` right after `{`), a value (or `]` right after
    // `[`), or what follows a value.
    let mut state = State::FirstKey;
    loop {
        s.ws();
        match state {
            State::FirstKey | State::Key => {
                let c = s.peek()?;
                if c == b'}' && state == State::FirstKey {
                    s.i += 1;
                    state = State::After;
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    continue;
                }
                if c != b'"' {
                    return None;
                }
                let top = depth == 1;
                let start = s.i + 1;
                let plain = s.string()?;
                if top {
                    // A top-level key must be read as serde reads it to know whether it is the
                    // host's: leave escaped ones to serde.
                    if reserve_host_keys && (!plain || s.b[start..].starts_with(b"__")) {
                        return None;
                    }
                    has_keys = true;
                }
                s.ws();
                if s.peek()? != b':' {
                    return None;
                }
                s.i += 1;
                state = State::Value;
            }
            State::Value | State::FirstValue => {
                let c = s.peek()?;
                match c {
                    b'{' | b'[' => {
                        if depth >= limit {
                            return None;
                        }
                        s.i += 1;
                        let is_object = c == b'{';
                        kinds = (kinds & !(1 << depth)) | (u128::from(is_object) << depth);
                        depth += 1;
                        state = if is_object { State::FirstKey } else { State::FirstValue };
                        continue;
                    }
                    b']' if state == State::FirstValue => {
                        s.i += 1;
                        depth -= 1;
                        state = State::After;
                        continue;
                    }
                    b'"' => {
                        s.string()?;
                    }
                    b'-' | b'0'..=b'9' => s.number()?,
                    b't' => s.word(b"true")?,
                    b'f' => s.word(b"false")?,
                    b'n' => s.word(b"null")?,
                    _ => return None,
                }
                state = State::After;
            }
            State::After => {
                let in_object = kinds >> (depth - 1) & 1 == 1;
                match (s.peek()?, in_object) {
                    (b',', true) => state = State::Key,
                    (b',', false) => state = State::Value,
                    (b'}', true) | (b']', false) => {
                        depth -= 1;
                        if depth == 0 {
                            s.i += 1;
                            break;
                        }
                    }
                    _ => return None,
                }
                s.i += 1;
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(has_keys)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    FirstKey,
    Key,
    FirstValue,
    Value,
    After,
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string, from its opening quote. `Some(true)` when it had no escapes. The text is a
    /// `str`, so its bytes are UTF-8 already.
    fn string(&mut self) -> Option<bool> {
        self.i += 1;
        let mut plain = true;
        loop {
            self.skip_plain();
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => return Some(plain),
                0..=0x1f => return None,
                b'\\' => {
                    plain = false;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            let hex = std::str::from_utf8(hex).ok()?;
                            let unit = u16::from_str_radix(hex, 16).ok()?;
                            // `from_str_radix` takes a sign; JSON does not. Surrogates must
                            // pair: serde decides those.
                            if hex.starts_with('+') || (0xd800..=0xdfff).contains(&unit) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                _ => {}
            }
        }
    }

    /// Moves past the ordinary bytes of a string (not `"`, `\\`, or a control character), eight
    /// at a time where it can.
    fn skip_plain(&mut self) {
        const ONES: u64 = u64::from_ne_bytes([1; 8]);
        const HIGH: u64 = ONES << 7;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(chunk);
            let x = u64::from_le_bytes(bytes);
            let quote = x ^ (ONES * u64::from(b'"'));
            let backslash = x ^ (ONES * u64::from(b'\\'));
            // A byte's high bit is set where it is zero (a quote, a backslash) or below 0x20; a
            // borrow may set more bits above the first such byte, never below it.
            let found = (quote.wrapping_sub(ONES) & !quote
                | backslash.wrapping_sub(ONES) & !backslash
                | x.wrapping_sub(ONES * 0x20) & !x)
                & HIGH;
            if found != 0 {
                self.i += (found.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
        while let Some(c) = self.peek() {
            if c == b'"' || c == b'\\' || c < 0x20 {
                return;
            }
            self.i += 1;
        }
    }

    /// A number, as JSON writes them. One that might not fit an `f64` is left to serde (it
    /// refuses those).
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_digits = match self.peek()? {
            b'0' => {
                self.i += 1;
                1
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        };
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        // The number is below 10^(int_digits + exponent): within f64's 1.8e308 when that is
        // at most 300. A long exponent (even `1e-0000001`) goes to serde.
        let mut magnitude = int_digits;
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            let negative = self.peek() == Some(b'-');
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            let start = self.i;
            let len = self.digits();
            if len == 0 || len > 3 {
                return None;
            }
            let exponent = self.b[start..self.i].iter().fold(0, |n, d| n * 10 + usize::from(d - b'0'));
            if !negative {
                magnitude += exponent;
            }
        }
        (magnitude <= 300).then_some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(word).then(|| self.i += word.len())
    }
}

#[cfg(test)]
mod tests {
    use super::object;

    #[test]
    fn takes_plain_objects() {
        assert_eq!(object(r#"{"a":1}"#, 4, true), Some(true));
        assert_eq!(object(" {} ", 4, true), Some(false));
        assert_eq!(object(r#"{"a":[1,-2.5e3,"x\n\u00e9",true,false,null,{}],"b":{"c":[]}}"#, 4, true), Some(true));
        assert_eq!(object(r#"{"__from":"a"}"#, 4, false), Some(true));
    }

    #[test]
    fn gives_up_on_what_serde_must_decide() {
        for text in [
            r#"{"__seq":1}"#,
            r#"{"\u005f_a":1}"#,
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":1e400}"#,
            r#"{"a":123e299}"#,
            r#"{"a":[[[[1]]]]}"#,
            r#"{"a":01}"#,
            r#"{"a":1,}"#,
            r#"{"a":"tab	here"}"#,
            r#"{"a":"\u+123"}"#,
            r#"{} {}"#,
            "[1]",
            "",
        ] {
            assert_eq!(object(text, 4, true), None, "{text}");
        }
    }

    #[test]
    fn stops_where_serde_json_stops_nesting() {
        let nested = |d: usize| format!("{{\"a\":{}1{}}}", "[".repeat(d - 1), "]".repeat(d - 1));
        assert_eq!(object(&nested(127), usize::MAX, true), Some(true));
        assert_eq!(object(&nested(128), usize::MAX, true), None);
        assert!(serde_json::from_str::<serde_json::Value>(&nested(127)).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(128)).is_err());
    }
}
