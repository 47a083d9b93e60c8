//! The host's log as records (`BAGPIPE_LOG_FORMAT=json`): what a test waits for ([`Want`]), which
//! block a record is about, and records rendered for people.

use serde_json::Value;

/// A log record to wait for: its `event` and the fields it must carry.
#[derive(Debug, Clone)]
pub struct Want {
    event: String,
    fields: Vec<(String, Value)>,
}

impl Want {
    /// A record whose `event` is `name`.
    pub fn event(name: &str) -> Self {
        Self { event: name.to_owned(), fields: Vec::new() }
    }

    /// And logged for block `responsibility` (a `block` field or the block's span, [`block_of`]).
    pub fn block(self, responsibility: &str) -> Self {
        self.field("block", responsibility)
    }

    /// And whose `field` is `value`.
    pub fn field(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.fields.push((field.to_owned(), value.into()));
        self
    }

    /// Whether `record` is one of these.
    pub fn matches(&self, record: &Value) -> bool {
        record["event"] == self.event.as_str()
            && self.fields.iter().all(|(field, value)| match field.as_str() {
                "block" => block_of(record).is_some_and(|b| *value == b),
                _ => record[field] == *value,
            })
    }
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "event={}", self.event)?;
        for (field, value) in &self.fields {
            write!(f, " {field}={value}")?;
        }
        Ok(())
    }
}

/// The block a log record is about: its `block` field, or the responsibility of the block span
/// it was logged in.
pub fn block_of(record: &Value) -> Option<&str> {
    record["block"].as_str().or_else(|| record["span"]["responsibility"].as_str())
}

/// `record` for people: `LEVEL [responsibility] message field=value ...`; a line that was not
/// JSON as it was.
pub fn render(record: &Value) -> String {
    use std::fmt::Write as _;
    let Some(fields) = record.as_object() else {
        return record.as_str().map_or_else(|| record.to_string(), str::to_owned);
    };
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let mut line = fields.get("level").map(text).unwrap_or_default();
    if let Some(block) = block_of(record) {
        let _ = write!(line, " [{block}]");
    }
    if let Some(message) = fields.get("message") {
        let _ = write!(line, " {}", text(message));
    }
    for (field, value) in fields {
        if !["timestamp", "level", "message", "span", "block"].contains(&field.as_str()) {
            let _ = write!(line, " {field}={}", text(value));
        }
    }
    line
}

/// A stderr line as a log record: the JSON object it is, or the line as a string.
pub(crate) fn parse_record(line: String) -> Value {
    match serde_json::from_str::<Value>(&line) {
        Ok(record) if record.is_object() => record,
        _ => Value::String(line),
    }
}
