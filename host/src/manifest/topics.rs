//! A block's topics, read from its manifest entry: what it may emit (`emit`), what it is
//! subscribed to from the start (`topics`), and what it may subscribe to at run time
//! (`subscribe_topics`). Deny by default, with the NATS subject grammar (`*`, `>`).

use toml::Spanned;

use super::Locator;
use super::subject::valid_subscribe;
use crate::error::ManifestError;

/// One subscription to a topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSub {
    /// The topics it covers (NATS wildcards).
    pub pattern: String,
    /// A full queue drops the copy (counted as `topic_dropped`) instead of making the emitter
    /// wait.
    pub lossy: bool,
}

/// What a block may do with topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicGrants {
    /// The topics it may emit to.
    pub emit: Vec<String>,
    /// Its subscriptions from the start.
    pub topics: Vec<TopicSub>,
    /// The patterns it may subscribe to at run time (each subscription within one of them).
    pub subscribe: Vec<String>,
}

/// The raw keys, as the manifest has them.
pub(super) struct RawTopics<'a> {
    pub emit: &'a Option<Spanned<Vec<String>>>,
    pub topics: &'a Option<Spanned<Vec<toml::Value>>>,
    pub subscribe: &'a Option<Spanned<Vec<String>>>,
}

pub(super) fn topic_grants(at: &Locator<'_>, raw: RawTopics<'_>) -> Result<TopicGrants, ManifestError> {
    let emit = patterns(at, "emit", raw.emit)?;
    let subscribe = patterns(at, "subscribe_topics", raw.subscribe)?;
    let mut topics = Vec::new();
    if let Some(list) = raw.topics {
        let refuse = |why: String| at.error(list.span(), "topics", why);
        for item in list.get_ref() {
            let sub = match item {
                toml::Value::String(pattern) => TopicSub { pattern: pattern.clone(), lossy: false },
                toml::Value::Table(t) => {
                    if let Some(key) = t.keys().find(|k| !matches!(k.as_str(), "topic" | "lossy")) {
                        return Err(refuse(format!("unknown key `{key}` in a topic (expected `topic`, `lossy`)")));
                    }
                    let Some(pattern) = t.get("topic").and_then(toml::Value::as_str) else {
                        return Err(refuse("a topic table needs `topic = \"...\"`".to_owned()));
                    };
                    let lossy = match t.get("lossy") {
                        None => false,
                        Some(toml::Value::Boolean(b)) => *b,
                        Some(other) => return Err(refuse(format!("`lossy` must be true or false, found {other}"))),
                    };
                    TopicSub { pattern: pattern.to_owned(), lossy }
                }
                other => {
                    return Err(refuse(format!(
                        "expected a topic (\"orders.*\") or a table ({{ topic = \"orders.*\", lossy = true }}), found {}",
                        other.type_str()
                    )));
                }
            };
            if !valid_subscribe(&sub.pattern) {
                return Err(refuse(format!(
                    "`{}` is not a topic (tokens separated by dots; * and > as wildcards)",
                    sub.pattern
                )));
            }
            if topics.iter().any(|t: &TopicSub| t.pattern == sub.pattern) {
                return Err(refuse(format!("`{}` is listed twice", sub.pattern)));
            }
            topics.push(sub);
        }
    }
    Ok(TopicGrants { emit, topics, subscribe })
}

fn patterns(at: &Locator<'_>, key: &str, raw: &Option<Spanned<Vec<String>>>) -> Result<Vec<String>, ManifestError> {
    let Some(list) = raw else { return Ok(Vec::new()) };
    for pattern in list.get_ref() {
        if !valid_subscribe(pattern) {
            return Err(at.error(
                list.span(),
                key,
                format!("`{pattern}` is not a topic (tokens separated by dots; * and > as wildcards)"),
            ));
        }
    }
    Ok(list.get_ref().clone())
}
