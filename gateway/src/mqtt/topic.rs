//! MQTT topic names and topic filters: validation, wildcard matching (`+`, `#`), the `$`-topic
//! rule, and shared subscription filters (`$share/{group}/{filter}`).

/// Why a topic name or filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic name contains a wildcard")]
    WildcardInName,
    #[error("topic contains a NUL character")]
    Nul,
    #[error("topic filter '{0}' is malformed")]
    BadFilter(String),
    #[error("topic is longer than 65535 bytes")]
    TooLong,
}

/// Checks a topic name used in a PUBLISH (no wildcards, not empty, no NUL).
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.len() > 65535 {
        return Err(TopicError::TooLong);
    }
    if name.contains('\0') {
        return Err(TopicError::Nul);
    }
    if name.contains('+') || name.contains('#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Whether `topic` (a name or a filter) is one of the node's `$SYS` topics (made by the node,
/// never published by clients nor stored; see `sys_topics`).
pub fn is_sys(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

/// Checks a topic filter used in SUBSCRIBE / UNSUBSCRIBE (`#` only as the last whole level, `+`
/// only as a whole level).
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicError::Nul);
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let bad = (level.contains('#') && (*level != "#" || i != levels.len() - 1))
            || (level.contains('+') && *level != "+");
        if bad {
            return Err(TopicError::BadFilter(filter.to_string()));
        }
    }
    Ok(())
}

/// Whether `topic` (a valid name) matches `filter` (a valid filter). Topics starting with `$`
/// are not matched by a filter starting with a wildcard.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic matched by `inner` is also matched by `outer` (used by ACLs: a requested
/// subscription must lie inside an allowed filter).
pub fn covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(ol), Some(il)) if ol == il => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A subscription filter split into its shared-subscription group (if any) and the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFilter {
    /// `Some(group)` for `$share/{group}/{filter}`.
    pub share_group: Option<String>,
    /// The topic filter proper.
    pub filter: String,
}

/// Parses and validates a filter as it appears in SUBSCRIBE.
pub fn parse_subscription(raw: &str) -> Result<SubscriptionFilter, TopicError> {
    if let Some(rest) = raw.strip_prefix("$share/") {
        let (group, filter) = rest
            .split_once('/')
            .ok_or_else(|| TopicError::BadFilter(raw.to_string()))?;
        if group.is_empty() || group.contains('+') || group.contains('#') {
            return Err(TopicError::BadFilter(raw.to_string()));
        }
        validate_filter(filter)?;
        return Ok(SubscriptionFilter {
            share_group: Some(group.to_string()),
            filter: filter.to_string(),
        });
    }
    validate_filter(raw)?;
    Ok(SubscriptionFilter {
        share_group: None,
        filter: raw.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matching() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "x/y"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("+", ""));
        assert!(matches("a/+", "a/"));
    }

    #[test]
    fn sys_names() {
        assert!(is_sys("$SYS/broker/uptime"));
        assert!(is_sys("$SYS/#"));
        assert!(is_sys("$SYS"));
        assert!(!is_sys("$SYSTEM/x"));
        assert!(!is_sys("devices/$SYS"));
    }

    #[test]
    fn validation() {
        assert!(validate_name("a/b").is_ok());
        assert_eq!(validate_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_name("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_name(""), Err(TopicError::Empty));
        assert!(validate_filter("a/+/#").is_ok());
        assert!(validate_filter("a/#/b").is_err());
        assert!(validate_filter("a/b#").is_err());
        assert!(validate_filter("a/b+").is_err());
    }

    #[test]
    fn coverage() {
        assert!(covers("commands/d1/#", "commands/d1/#"));
        assert!(covers("commands/d1/#", "commands/d1/x/+"));
        assert!(covers("commands/d1/#", "commands/d1"));
        assert!(!covers("commands/d1/#", "commands/+/x"));
        assert!(!covers("commands/d1/x", "commands/d1/#"));
        assert!(covers("a/+", "a/b"));
    }

    #[test]
    fn shared_filters() {
        let s = parse_subscription("$share/g1/a/+").unwrap();
        assert_eq!(s.share_group.as_deref(), Some("g1"));
        assert_eq!(s.filter, "a/+");
        assert!(parse_subscription("$share/g1").is_err());
        assert!(parse_subscription("a/b").unwrap().share_group.is_none());
    }
}
