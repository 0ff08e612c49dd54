//! Kafka's `ssl.principal.mapping.rules` (KIP-371, `SslPrincipalMapper`): the user name of a
//! client certificate's distinguished name (`[kafka] ssl_principal_mapping_rules`).
//!
//! The rules are a comma-separated list, tried in order; the first that applies gives the name:
//! - `DEFAULT`: the distinguished name itself,
//! - `RULE:pattern/replacement/` with an optional `L` or `U` after the last `/` (lower- or
//!   upper-case the result): applies when `pattern` matches the whole distinguished name, and
//!   gives `replacement` with `$1`, `$2`, ... replaced by the pattern's groups (`\` quotes the
//!   next character, in the pattern and the replacement, so `\/` is a `/` and `\,` a `,`).
//!
//! As in Kafka, no applicable rule refuses the client, and the default rules are `DEFAULT`. The
//! patterns are Rust regexes (`regex-automata`), which agree with Java's for the usual rules
//! (`^CN=(.*?),OU=(.*?)$`); look-around and back-references are not supported.

use regex_automata::meta::Regex;

/// The default rules.
pub const DEFAULT_RULES: &str = "DEFAULT";

/// A malformed rule list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not `DEFAULT` nor `RULE:pattern/replacement/[LU]`.
    #[error("invalid rule: {0:?} (expected DEFAULT or RULE:pattern/replacement/[LU])")]
    Invalid(String),
    /// The pattern is not a regex.
    #[error("rule {rule:?}: {reason}")]
    Pattern {
        /// The rule.
        rule: String,
        /// The regex error.
        reason: String,
    },
}

/// No rule applies to a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no ssl.principal.mapping.rules apply to {dn:?}")]
pub struct NoMatchingRule {
    /// The certificate's distinguished name.
    pub dn: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

#[derive(Debug)]
enum Rule {
    Default,
    Map {
        regex: Box<Regex>,
        replacement: String,
        case: Case,
    },
}

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug)]
pub struct SslPrincipalMapper {
    rules: Vec<Rule>,
}

impl Default for SslPrincipalMapper {
    fn default() -> Self {
        SslPrincipalMapper {
            rules: vec![Rule::Default],
        }
    }
}

/// Text up to the next unquoted `/` (quotes kept), and the rest after it.
fn until_slash(s: &str) -> Option<(&str, &str)> {
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next()?;
            }
            '/' => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Text up to the next unquoted `,`, and the rest after it (None: the end).
fn until_comma(s: &str) -> (&str, Option<&str>) {
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            ',' => return (&s[..i], Some(&s[i + 1..])),
            _ => {}
        }
    }
    (s, None)
}

impl SslPrincipalMapper {
    /// Parse a rule list (Kafka's syntax; an empty list is [`DEFAULT_RULES`]).
    pub fn parse(rules: &str) -> Result<SslPrincipalMapper, RuleError> {
        let mut out = Vec::new();
        let mut rest = Some(rules);
        while let Some(text) = rest {
            let text = text.trim_start();
            if text.is_empty() {
                break;
            }
            if let Some(after) = text.strip_prefix("DEFAULT") {
                out.push(Rule::Default);
                let (junk, next) = until_comma(after);
                if !junk.trim().is_empty() {
                    return Err(RuleError::Invalid(format!("DEFAULT{junk}")));
                }
                rest = next;
                continue;
            }
            let Some(body) = text.strip_prefix("RULE:") else {
                return Err(RuleError::Invalid(until_comma(text).0.trim().to_string()));
            };
            let invalid = || RuleError::Invalid(until_comma(text).0.trim().to_string());
            let (pattern, after) = until_slash(body).ok_or_else(invalid)?;
            let (replacement, after) = until_slash(after).ok_or_else(invalid)?;
            let (flags, next) = until_comma(after);
            let case = match flags.trim() {
                "" => Case::Keep,
                "L" => Case::Lower,
                "U" => Case::Upper,
                _ => return Err(invalid()),
            };
            let rule_text = format!("RULE:{pattern}/{replacement}/{}", flags.trim());
            let regex =
                Regex::new(&format!("^(?:{pattern})$")).map_err(|e| RuleError::Pattern {
                    rule: rule_text,
                    reason: e.to_string(),
                })?;
            out.push(Rule::Map {
                regex: Box::new(regex),
                replacement: replacement.to_string(),
                case,
            });
            rest = next;
        }
        if out.is_empty() {
            out.push(Rule::Default);
        }
        Ok(SslPrincipalMapper { rules: out })
    }

    /// The user name of distinguished name `dn` (the principal is `User:<name>`).
    pub fn name(&self, dn: &str) -> Result<String, NoMatchingRule> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(dn.to_string()),
                Rule::Map {
                    regex,
                    replacement,
                    case,
                } => {
                    let mut caps = regex.create_captures();
                    regex.captures(dn, &mut caps);
                    if !caps.is_match() {
                        continue;
                    }
                    let groups = caps.group_len();
                    let group = |n: usize| caps.get_group(n).map_or("", |span| &dn[span.range()]);
                    let name = interpolate(replacement, groups, group);
                    return Ok(match case {
                        Case::Keep => name,
                        Case::Lower => name.to_lowercase(),
                        Case::Upper => name.to_uppercase(),
                    });
                }
            }
        }
        Err(NoMatchingRule { dn: dn.to_string() })
    }
}

/// Java's `Matcher.appendReplacement`: `$n` is group n (digits taken while the number is a
/// group, a `$` before a number that is no group stays literal, as Kafka escapes it), `\x` is x.
fn interpolate<'a>(replacement: &str, groups: usize, group: impl Fn(usize) -> &'a str) -> String {
    let mut out = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '$' => {
                let mut number: Option<usize> = None;
                while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                    let candidate = number.unwrap_or(0) * 10 + d as usize;
                    if candidate >= groups {
                        break;
                    }
                    number = Some(candidate);
                    chars.next();
                }
                match number {
                    Some(n) => out.push_str(group(n)),
                    None => out.push('$'),
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DN: &str = "CN=Edge-01,OU=Devices,O=Acme\\, Inc.,C=DE";

    #[test]
    fn kafka_rules() {
        let m = SslPrincipalMapper::parse("RULE:^CN=(.*?),.*$/$1/,DEFAULT").unwrap();
        assert_eq!(m.name(DN).unwrap(), "Edge-01");
        assert_eq!(m.name("OU=x").unwrap(), "OU=x");
        let m =
            SslPrincipalMapper::parse(" RULE:^CN=(.*?),OU=(.*?),.*$/$1@$2/L , RULE:^OU=(.*)$/$1/U")
                .unwrap();
        assert_eq!(m.name(DN).unwrap(), "edge-01@devices");
        assert_eq!(m.name("OU=ops").unwrap(), "OPS");
        assert_eq!(
            m.name("C=DE").unwrap_err(),
            NoMatchingRule { dn: "C=DE".into() }
        );
        // A quoted slash in the pattern, a literal `$` and `$9` beyond the groups.
        let m = SslPrincipalMapper::parse("RULE:^CN=a\\/(.*)$/u-$1-\\$-$9/").unwrap();
        assert_eq!(m.name("CN=a/b").unwrap(), "u-b-$-$9");
        // $12 with one group is group 1 followed by "2" (Java's rule).
        let m = SslPrincipalMapper::parse("RULE:^CN=(.*)$/$12/").unwrap();
        assert_eq!(m.name("CN=x").unwrap(), "x2");
        assert_eq!(SslPrincipalMapper::parse("").unwrap().name(DN).unwrap(), DN);
        assert_eq!(SslPrincipalMapper::default().name(DN).unwrap(), DN);
    }

    #[test]
    fn malformed_rules() {
        for bad in [
            "RULE:^CN=(.*)$/$1",
            "RULE:^CN=(.*)$/$1/X",
            "CN=(.*)",
            "DEFAULT x",
            "RULE:^CN=(.*$/$1/",
        ] {
            assert!(SslPrincipalMapper::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SslPrincipalMapper::parse("DEFAULT,nope").unwrap_err(),
            RuleError::Invalid("nope".into())
        );
    }
}
