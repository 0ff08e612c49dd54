//! Mapping rules between MQTT topics and log topics, both ways.
//!
//! A rule pairs an MQTT topic pattern such as `devices/{device}/telemetry` with a log topic
//! (`telemetry`) and takes the record key from a named level (`device`). Publishes use the first
//! rule whose pattern matches; a publish matching no rule goes to the fallback rule: log topic
//! `mqtt`, key = the MQTT topic name. The other way, a record without an `mqtt.topic` header is
//! given the MQTT topic of the rule's pattern filled from its key.

use serde::{Deserialize, Serialize};

/// Name of the fallback log topic.
pub const FALLBACK_TOPIC: &str = "mqtt";

/// How a rule transforms payloads on ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadTransform {
    /// Store the payload as published.
    #[default]
    None,
    /// Decode a CBOR payload and store it as JSON (payloads that are not CBOR are refused).
    CborToJson,
}

/// One rule as written in the `[[mqtt.rules]]` TOML tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// MQTT topic pattern: literal levels, `{name}` captures, `+`, and a trailing `#`.
    pub pattern: String,
    /// The log topic.
    pub topic: String,
    /// The capture whose value becomes the record key (default: the first capture; with no
    /// capture the key is the whole MQTT topic name).
    #[serde(default)]
    pub key: Option<String>,
    /// Payload transform on ingest.
    #[serde(default)]
    pub payload: PayloadTransform,
}

/// A rule that is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("mapping pattern '{pattern}': {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("mapping rule '{pattern}': log topic must not be empty")]
    EmptyTopic { pattern: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Capture(String),
    Plus,
    Hash,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pattern: String,
    levels: Vec<Level>,
    topic: String,
    /// Index of the key capture in `levels`, or None (key = whole MQTT topic).
    key_level: Option<usize>,
    payload: PayloadTransform,
}

/// Where a publish goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The log topic.
    pub log_topic: String,
    /// The record key.
    pub key: Vec<u8>,
    /// Payload transform to apply.
    pub payload: PayloadTransform,
}

/// The compiled rule list (configured rules, then the fallback).
#[derive(Debug, Clone)]
pub struct Mapping {
    rules: Vec<Rule>,
}

impl Rule {
    fn compile(cfg: &RuleConfig) -> Result<Rule, MappingError> {
        let bad = |reason: &str| MappingError::BadPattern {
            pattern: cfg.pattern.clone(),
            reason: reason.to_string(),
        };
        if cfg.topic.is_empty() {
            return Err(MappingError::EmptyTopic {
                pattern: cfg.pattern.clone(),
            });
        }
        if cfg.pattern.is_empty() {
            return Err(bad("empty pattern"));
        }
        let parts: Vec<&str> = cfg.pattern.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let level = if *part == "#" {
                if i != parts.len() - 1 {
                    return Err(bad("'#' must be the last level"));
                }
                Level::Hash
            } else if *part == "+" {
                Level::Plus
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() || name.contains(['{', '}', '+', '#']) {
                    return Err(bad("bad capture name"));
                }
                Level::Capture(name.to_string())
            } else if part.contains(['{', '}', '+', '#']) {
                return Err(bad("wildcards and captures must be whole levels"));
            } else {
                Level::Literal(part.to_string())
            };
            levels.push(level);
        }
        let key_level = match &cfg.key {
            Some(name) => Some(
                levels
                    .iter()
                    .position(|l| matches!(l, Level::Capture(n) if n == name))
                    .ok_or_else(|| bad(&format!("key level '{{{name}}}' is not in the pattern")))?,
            ),
            None => levels.iter().position(|l| matches!(l, Level::Capture(_))),
        };
        Ok(Rule {
            pattern: cfg.pattern.clone(),
            levels,
            topic: cfg.topic.clone(),
            key_level,
            payload: cfg.payload,
        })
    }

    fn fallback() -> Rule {
        Rule {
            pattern: "#".into(),
            levels: vec![Level::Hash],
            topic: FALLBACK_TOPIC.into(),
            key_level: None,
            payload: PayloadTransform::None,
        }
    }

    /// Matches an MQTT topic name; returns the key when it matches.
    fn route(&self, mqtt_topic: &str) -> Option<Vec<u8>> {
        let mut names = mqtt_topic.split('/');
        let mut key = None;
        for (i, level) in self.levels.iter().enumerate() {
            if *level == Level::Hash {
                break;
            }
            let name = names.next()?;
            match level {
                Level::Literal(l) if l != name => return None,
                Level::Capture(_) if Some(i) == self.key_level => key = Some(name),
                _ => {}
            }
        }
        if !matches!(self.levels.last(), Some(Level::Hash)) && names.next().is_some() {
            return None;
        }
        Some(match (self.key_level, key) {
            (Some(_), Some(k)) => k.as_bytes().to_vec(),
            _ => mqtt_topic.as_bytes().to_vec(),
        })
    }

    /// Whether some topic could match both this pattern and `filter`.
    fn overlaps(&self, filter: &str) -> bool {
        let mut f = filter.split('/');
        for level in &self.levels {
            if *level == Level::Hash {
                return true;
            }
            match (level, f.next()) {
                (_, Some("#")) => return true,
                (_, None) => return false,
                (Level::Literal(l), Some(fl)) if fl != "+" && fl != l => return false,
                _ => {}
            }
        }
        f.next().is_none()
    }

    /// The MQTT topic of a record of this rule's log topic that carries no `mqtt.topic` header:
    /// the pattern filled from the key. Only possible when the key capture is the pattern's only
    /// non-literal level, or when the key is the whole topic (the fallback rule).
    fn fill(&self, key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        let Some(key_level) = self.key_level else {
            return (!key.is_empty()).then(|| key.to_string());
        };
        if key.is_empty() || key.contains('/') {
            return None;
        }
        let mut out = Vec::with_capacity(self.levels.len());
        for (i, level) in self.levels.iter().enumerate() {
            match level {
                Level::Literal(l) => out.push(l.as_str()),
                Level::Capture(_) if i == key_level => out.push(key),
                _ => return None,
            }
        }
        Some(out.join("/"))
    }
}

impl Mapping {
    /// Compiles the configured rules and appends the fallback rule.
    pub fn new(rules: &[RuleConfig]) -> Result<Mapping, MappingError> {
        let mut compiled = rules
            .iter()
            .map(Rule::compile)
            .collect::<Result<Vec<_>, _>>()?;
        compiled.push(Rule::fallback());
        Ok(Mapping { rules: compiled })
    }

    /// Where a publish to `mqtt_topic` goes: the first matching rule (the fallback matches all).
    pub fn route(&self, mqtt_topic: &str) -> Route {
        for rule in &self.rules {
            if let Some(key) = rule.route(mqtt_topic) {
                return Route {
                    log_topic: rule.topic.clone(),
                    key,
                    payload: rule.payload,
                };
            }
        }
        Route {
            log_topic: FALLBACK_TOPIC.to_string(),
            key: mqtt_topic.as_bytes().to_vec(),
            payload: PayloadTransform::None,
        }
    }

    /// Log topics that may hold messages matching `filter` (deduplicated, in rule order).
    pub fn log_topics_for_filter(&self, filter: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        // `$SYS` topics are made by the node, never stored (see `sys_topics`).
        if super::topic::is_sys(filter) {
            return out;
        }
        for rule in &self.rules {
            if rule.overlaps(filter) && !out.contains(&rule.topic) {
                out.push(rule.topic.clone());
            }
        }
        out
    }

    /// The MQTT topic of a record: its `mqtt.topic` header when present, else the first rule for
    /// `log_topic` whose pattern can be filled from the key.
    pub fn mqtt_topic_for_record(
        &self,
        log_topic: &str,
        key: Option<&[u8]>,
        header: Option<&[u8]>,
    ) -> Option<String> {
        if let Some(h) = header {
            return std::str::from_utf8(h).ok().map(str::to_string);
        }
        let key = key?;
        self.rules
            .iter()
            .filter(|r| r.topic == log_topic)
            .find_map(|r| r.fill(key))
    }

    /// The patterns, for logging.
    pub fn describe(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| format!("{} <-> {}", r.pattern, r.topic))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Mapping {
        Mapping::new(&[
            RuleConfig {
                pattern: "devices/{device}/telemetry".into(),
                topic: "telemetry".into(),
                key: Some("device".into()),
                payload: PayloadTransform::None,
            },
            RuleConfig {
                pattern: "commands/{device}".into(),
                topic: "commands".into(),
                key: None,
                payload: PayloadTransform::None,
            },
        ])
        .unwrap()
    }

    #[test]
    fn routes_by_rule_and_fallback() {
        let m = rules();
        let r = m.route("devices/d1/telemetry");
        assert_eq!(r.log_topic, "telemetry");
        assert_eq!(r.key, b"d1");
        let r = m.route("devices/d1/other");
        assert_eq!(r.log_topic, "mqtt");
        assert_eq!(r.key, b"devices/d1/other");
        let r = m.route("commands/d7");
        assert_eq!(
            (r.log_topic.as_str(), r.key.as_slice()),
            ("commands", &b"d7"[..])
        );
    }

    #[test]
    fn fills_pattern_from_key() {
        let m = rules();
        assert_eq!(
            m.mqtt_topic_for_record("commands", Some(b"d1"), None)
                .as_deref(),
            Some("commands/d1")
        );
        assert_eq!(
            m.mqtt_topic_for_record("mqtt", Some(b"a/b"), None)
                .as_deref(),
            Some("a/b")
        );
        assert_eq!(
            m.mqtt_topic_for_record("commands", Some(b"d1"), Some(b"x/y"))
                .as_deref(),
            Some("x/y")
        );
        assert_eq!(
            m.mqtt_topic_for_record("commands", Some(b"a/b"), None),
            None
        );
    }

    #[test]
    fn topics_for_filters() {
        let m = rules();
        assert_eq!(
            m.log_topics_for_filter("commands/d1"),
            vec!["commands", "mqtt"]
        );
        assert_eq!(
            m.log_topics_for_filter("#"),
            vec!["telemetry", "commands", "mqtt"]
        );
        assert_eq!(
            m.log_topics_for_filter("devices/+/telemetry"),
            vec!["telemetry", "mqtt"]
        );
        assert_eq!(m.log_topics_for_filter("other/x"), vec!["mqtt"]);
    }

    #[test]
    fn bad_patterns_refused() {
        let bad = |p: &str| {
            Mapping::new(&[RuleConfig {
                pattern: p.into(),
                topic: "t".into(),
                key: None,
                payload: PayloadTransform::None,
            }])
            .is_err()
        };
        assert!(bad("a/#/b"));
        assert!(bad("a/x{d}"));
        assert!(!bad("a/{d}/#"));
    }
}
