//! Output of consumed records: kcat-style format strings (`-f '%t %p %o %k %s\n'`) and the JSON
//! form of `--json`.
//!
//! Tokens: `%t` topic, `%p` partition, `%o` offset, `%k` key, `%s` value, `%K` key length, `%S`
//! value length, `%T` timestamp (ms since the epoch), `%h` headers as `k=v,k2=v2`, `%%` a percent
//! sign; escapes `\n`, `\t`, `\r`, `\\`. Keys and values are written as raw bytes; a null key or
//! value prints nothing and has length -1.

/// A consumed record, as the formatter sees it.
#[derive(Debug, Clone)]
pub struct RecordView<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition index.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms since the epoch.
    pub timestamp: i64,
    /// Key (None: null key).
    pub key: Option<&'a [u8]>,
    /// Value (None: null value, a tombstone).
    pub value: Option<&'a [u8]>,
    /// Headers in order.
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// One piece of a parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    KeyLen,
    ValueLen,
    Timestamp,
    Headers,
}

/// A format string that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// `%x` with an unknown `x`.
    #[error("unknown format token %{0} (known: %t %p %o %k %s %K %S %T %h %%)")]
    UnknownToken(char),
    /// `\x` with an unknown `x`.
    #[error("unknown escape \\{0} (known: \\n \\t \\r \\\\)")]
    UnknownEscape(char),
    /// A trailing lone `%` or `\`.
    #[error("format string ends with a lone '{0}'")]
    Dangling(char),
}

/// A parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    tokens: Vec<Token>,
}

impl Format {
    /// Parses a kcat-like format string.
    pub fn parse(s: &str) -> Result<Format, FormatError> {
        let mut tokens = Vec::new();
        let mut lit = Vec::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let t = match chars.next() {
                        None => return Err(FormatError::Dangling('%')),
                        Some('%') => {
                            lit.push(b'%');
                            continue;
                        }
                        Some('t') => Token::Topic,
                        Some('p') => Token::Partition,
                        Some('o') => Token::Offset,
                        Some('k') => Token::Key,
                        Some('s') => Token::Value,
                        Some('K') => Token::KeyLen,
                        Some('S') => Token::ValueLen,
                        Some('T') => Token::Timestamp,
                        Some('h') => Token::Headers,
                        Some(other) => return Err(FormatError::UnknownToken(other)),
                    };
                    if !lit.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut lit)));
                    }
                    tokens.push(t);
                }
                '\\' => match chars.next() {
                    None => return Err(FormatError::Dangling('\\')),
                    Some('n') => lit.push(b'\n'),
                    Some('t') => lit.push(b'\t'),
                    Some('r') => lit.push(b'\r'),
                    Some('\\') => lit.push(b'\\'),
                    Some(other) => return Err(FormatError::UnknownEscape(other)),
                },
                c => {
                    let mut buf = [0u8; 4];
                    lit.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !lit.is_empty() {
            tokens.push(Token::Literal(lit));
        }
        Ok(Format { tokens })
    }

    /// Appends the rendering of `r` to `out`.
    pub fn render(&self, r: &RecordView<'_>, out: &mut Vec<u8>) {
        use std::io::Write;
        for t in &self.tokens {
            // Writing to a Vec cannot fail.
            let _ = match t {
                Token::Literal(b) => out.write_all(b),
                Token::Topic => out.write_all(r.topic.as_bytes()),
                Token::Partition => write!(out, "{}", r.partition),
                Token::Offset => write!(out, "{}", r.offset),
                Token::Key => out.write_all(r.key.unwrap_or_default()),
                Token::Value => out.write_all(r.value.unwrap_or_default()),
                Token::KeyLen => write!(out, "{}", r.key.map(|k| k.len() as i64).unwrap_or(-1)),
                Token::ValueLen => write!(out, "{}", r.value.map(|v| v.len() as i64).unwrap_or(-1)),
                Token::Timestamp => write!(out, "{}", r.timestamp),
                Token::Headers => {
                    for (i, (k, v)) in r.headers.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(k.as_bytes());
                        out.push(b'=');
                        out.extend_from_slice(v.unwrap_or_default());
                    }
                    Ok(())
                }
            };
        }
    }
}

/// The JSON object printed for a record with `--json` (one per line). Keys, values and header
/// values are strings (invalid UTF-8 replaced by U+FFFD) or null.
pub fn record_json(r: &RecordView<'_>) -> serde_json::Value {
    let text = |b: Option<&[u8]>| match b {
        None => serde_json::Value::Null,
        Some(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
    };
    serde_json::json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": text(r.key),
        "value": text(r.value),
        "headers": r.headers.iter().map(|(k, v)| serde_json::json!([k, text(*v)])).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> RecordView<'static> {
        RecordView {
            topic: "t1",
            partition: 2,
            offset: 42,
            timestamp: 1700000000123,
            key: Some(b"k"),
            value: Some(b"hello"),
            headers: vec![("a", Some(b"1")), ("b", None)],
        }
    }

    fn render(f: &str, r: &RecordView<'_>) -> String {
        let mut out = Vec::new();
        Format::parse(f).unwrap().render(r, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_token() {
        assert_eq!(
            render("%t|%p|%o|%k|%s|%K|%S|%T|%h\\n", &rec()),
            "t1|2|42|k|hello|1|5|1700000000123|a=1,b=\n"
        );
        assert_eq!(render("100%% %s\\t\\\\x", &rec()), "100% hello\t\\x");
        assert_eq!(render("é%s", &rec()), "éhello");
    }

    #[test]
    fn null_key_and_value() {
        let mut r = rec();
        r.key = None;
        r.value = None;
        r.headers.clear();
        assert_eq!(render("[%k][%s][%K][%S][%h]", &r), "[][][-1][-1][]");
    }

    #[test]
    fn bad_format_strings() {
        assert_eq!(Format::parse("%x"), Err(FormatError::UnknownToken('x')));
        assert_eq!(Format::parse("abc%"), Err(FormatError::Dangling('%')));
        assert_eq!(Format::parse("\\q"), Err(FormatError::UnknownEscape('q')));
        assert_eq!(Format::parse("a\\"), Err(FormatError::Dangling('\\')));
    }

    #[test]
    fn json_form() {
        let v = record_json(&rec());
        assert_eq!(v["topic"], "t1");
        assert_eq!(v["offset"], 42);
        assert_eq!(v["key"], "k");
        assert_eq!(v["headers"][1][1], serde_json::Value::Null);
    }
}
