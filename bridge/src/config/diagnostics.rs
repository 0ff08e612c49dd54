//! Checking a TOML configuration file the way Vector does: every error at once, one a line, as
//! `FILE:LINE:COLUMN: message`, sorted by line.
//!
//! Only a TOML syntax error is reported alone (nothing after it can be trusted). Type errors are
//! collected per top-level entry, each element of an array of tables (`[[mirror]]`) on its own,
//! so one bad value per section is found; unknown keys are collected with `serde_ignored` (the
//! structs do not use `deny_unknown_fields`); semantic checks return [`Problem`]s, located at
//! the key they name (or the nearest enclosing table when that key is not in the file).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::{DeArray, DeString, DeTable, DeValue, Deserializer};
use toml::Spanned;

/// One step of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A table key.
    Key(String),
    /// An array element (`[[mirror]]` number `i`, from 0).
    Index(usize),
}

/// Where a setting lives: `mirror[1].rename`, `topic_defaults."retention.ms"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// A dotted path of plain keys: `"storage.backlog_high_water"`.
    pub fn dotted(path: &str) -> KeyPath {
        KeyPath(
            path.split('.')
                .filter(|k| !k.is_empty())
                .map(|k| Segment::Key(k.to_string()))
                .collect(),
        )
    }

    /// This path followed by a key.
    pub fn key(mut self, key: impl Into<String>) -> KeyPath {
        self.0.push(Segment::Key(key.into()));
        self
    }

    /// This path followed by an array index.
    pub fn index(mut self, index: usize) -> KeyPath {
        self.0.push(Segment::Index(index));
        self
    }

    /// The steps.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    fn from_ignored(path: &serde_ignored::Path<'_>) -> KeyPath {
        use serde_ignored::Path as P;
        match path {
            P::Root => KeyPath::default(),
            P::Seq { parent, index } => KeyPath::from_ignored(parent).index(*index),
            P::Map { parent, key } => KeyPath::from_ignored(parent).key(key.clone()),
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                KeyPath::from_ignored(parent)
            }
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a semantic check found: which setting, and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The setting.
    pub key: KeyPath,
    /// Why.
    pub reason: String,
}

impl Problem {
    /// A problem with `key`.
    pub fn new(key: KeyPath, reason: impl Into<String>) -> Problem {
        Problem {
            key,
            reason: reason.into(),
        }
    }
}

/// One located error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Every error found in one file; displays as one `FILE:LINE:COLUMN: message` line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The file (as given).
    pub path: PathBuf,
    /// The errors, by line.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                d.line,
                d.column,
                d.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

/// A parsed file being checked: collects [`Diagnostic`]s until [`Checker::finish`].
pub struct Checker<'a> {
    path: PathBuf,
    text: &'a str,
    root: Spanned<DeTable<'a>>,
    diagnostics: Vec<Diagnostic>,
    /// Arrays of tables some of whose elements had type errors: the original index of each
    /// element kept, so problems of the rest name their element in the file.
    kept: Vec<(String, Vec<usize>)>,
}

impl<'a> Checker<'a> {
    /// Parse `text` (`path` names it in messages); a syntax error is the only error reported.
    pub fn parse(path: &Path, text: &'a str) -> Result<Checker<'a>, Report> {
        match DeTable::parse(text) {
            Ok(root) => Ok(Checker {
                path: path.to_path_buf(),
                text,
                root,
                diagnostics: Vec::new(),
                kept: Vec::new(),
            }),
            Err(err) => {
                let offset = err.span().map_or(0, |s| s.start);
                let mut checker = Checker {
                    path: path.to_path_buf(),
                    text,
                    root: Spanned::new(0..0, DeTable::new()),
                    diagnostics: Vec::new(),
                    kept: Vec::new(),
                };
                checker.push(offset, format!("TOML syntax: {}", one_line(err.message())));
                Err(checker.report())
            }
        }
    }

    /// Deserialize the file into `T`, collecting type errors (the first of each top-level
    /// entry or array-of-tables element) and unknown keys. Entries and elements with a type
    /// error are left out (defaults take their place) so semantic checks still run on the rest;
    /// such a value never leaves [`Checker::finish`]. `None` only when even that fails. Every
    /// top-level field of `T` must have a default.
    pub fn deserialize<T: DeserializeOwned>(&mut self) -> Option<T> {
        let mut failed: Vec<(String, Option<usize>)> = Vec::new();
        let units: Vec<(Spanned<DeString>, Option<usize>, Spanned<DeValue<'a>>)> = self
            .root
            .get_ref()
            .iter()
            .flat_map(|(key, value)| match value.get_ref() {
                DeValue::Array(items)
                    if !items.is_empty() && items.iter().all(|v| v.get_ref().is_table()) =>
                {
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            let mut one = DeArray::new();
                            one.push(item.clone());
                            (
                                key.clone(),
                                Some(i),
                                Spanned::new(value.span(), DeValue::Array(one)),
                            )
                        })
                        .collect::<Vec<_>>()
                }
                _ => vec![(key.clone(), None, value.clone())],
            })
            .collect();
        for (key, index, value) in units {
            let key_name = key.get_ref().to_string();
            let mut one = DeTable::new();
            one.insert(key, value);
            let mut unknown = Vec::new();
            let de = Deserializer::from(Spanned::new(self.root.span(), one));
            let result: Result<T, _> =
                serde_ignored::deserialize(de, |p| unknown.push(KeyPath::from_ignored(&p)));
            if let Err(err) = result {
                failed.push((key_name.clone(), index));
                self.type_error(&err);
            }
            for mut path in unknown {
                if let (Some(i), Some(Segment::Index(n))) = (index, path.0.get_mut(1)) {
                    *n = i;
                }
                self.error_at(&path, format!("unknown key '{path}'"));
            }
        }
        let mut kept = DeTable::new();
        for (k, v) in self.root.get_ref().iter() {
            let name = k.get_ref().as_ref();
            let bad: Vec<usize> = failed
                .iter()
                .filter(|(f, _)| f == name)
                .filter_map(|(_, i)| *i)
                .collect();
            match v.get_ref() {
                _ if failed.iter().any(|(f, i)| f == name && i.is_none()) => {}
                DeValue::Array(items) if !bad.is_empty() => {
                    let mut rest = DeArray::new();
                    let mut indices = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        if !bad.contains(&i) {
                            rest.push(item.clone());
                            indices.push(i);
                        }
                    }
                    self.kept.push((name.to_string(), indices));
                    kept.insert(k.clone(), Spanned::new(v.span(), DeValue::Array(rest)));
                }
                _ => {
                    kept.insert(k.clone(), v.clone());
                }
            }
        }
        match T::deserialize(Deserializer::from(Spanned::new(self.root.span(), kept))) {
            Ok(value) => Some(value),
            Err(err) => {
                self.type_error(&err);
                None
            }
        }
    }

    /// Record a semantic problem: `invalid value for 'KEY': REASON`, at the value when the
    /// file sets it (else at the nearest enclosing entry).
    pub fn problem(&mut self, mut problem: Problem) {
        if let [Segment::Key(k), Segment::Index(i), ..] = problem.key.0.as_mut_slice() {
            if let Some((_, indices)) = self.kept.iter().find(|(name, _)| name == k) {
                *i = indices.get(*i).copied().unwrap_or(*i);
            }
        }
        let message = format!("invalid value for '{}': {}", problem.key, problem.reason);
        let offset = self.offset_of(&problem.key, true);
        self.push(offset, message);
    }

    /// Record problems.
    pub fn problems(&mut self, problems: impl IntoIterator<Item = Problem>) {
        for p in problems {
            self.problem(p);
        }
    }

    /// Record an error located at `key` (or the nearest enclosing entry the file has).
    pub fn error_at(&mut self, key: &KeyPath, message: String) {
        let offset = self.offset_of(key, false);
        self.push(offset, message);
    }

    /// Whether an error has been recorded.
    pub fn has_errors(&self) -> bool {
        !self.diagnostics.is_empty()
    }

    /// The line (1-based) where `key` is, or its nearest enclosing entry.
    pub fn line_of(&self, key: &KeyPath) -> usize {
        line_column(self.text, self.offset_of(key, false)).0
    }

    /// `value` when no error was recorded, else every error.
    pub fn finish<T>(mut self, value: Option<T>) -> Result<T, Report> {
        match value {
            Some(v) if self.diagnostics.is_empty() => Ok(v),
            Some(_) => Err(self.report()),
            None => {
                if self.diagnostics.is_empty() {
                    self.push(0, "the file could not be read as a configuration".into());
                }
                Err(self.report())
            }
        }
    }

    fn report(mut self) -> Report {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        Report {
            path: self.path,
            diagnostics: self.diagnostics,
        }
    }

    fn push(&mut self, offset: usize, message: String) {
        let (line, column) = line_column(self.text, offset);
        self.diagnostics.push(Diagnostic {
            line,
            column,
            message,
        });
    }

    fn type_error(&mut self, err: &toml::de::Error) {
        let message = one_line(err.message());
        match err.span() {
            Some(span) => {
                let key = self.path_at(&span);
                let message = if key.0.is_empty() {
                    message
                } else {
                    format!("invalid value for '{key}': {message}")
                };
                self.push(span.start, message);
            }
            None => self.push(0, message),
        }
    }

    /// Byte offset of `key` in the text: the key itself (its value when `value` and the value
    /// is not a table), or the nearest enclosing entry.
    fn offset_of(&self, key: &KeyPath, value_wanted: bool) -> usize {
        let mut offset = 0;
        let mut found = 0;
        let mut value: &DeValue<'a> = &DeValue::Table(DeTable::new());
        let mut table = Some(self.root.get_ref());
        for segment in &key.0 {
            let next = match (segment, table, value) {
                (Segment::Key(k), Some(t), _) => t
                    .iter()
                    .find(|(name, _)| name.get_ref().as_ref() == k.as_str())
                    .map(|(name, v)| (name.span().start, v)),
                (Segment::Index(i), None, DeValue::Array(items)) => {
                    items.get(*i).map(|v| (v.span().start, v))
                }
                _ => None,
            };
            let Some((at, v)) = next else { break };
            found += 1;
            offset = if value_wanted
                && found == key.0.len()
                && !matches!(v.get_ref(), DeValue::Table(_) | DeValue::Array(_))
            {
                v.span().start
            } else {
                at
            };
            value = v.get_ref();
            table = value.as_table();
        }
        offset
    }

    /// The key path of the deepest entry whose value contains `span` (toml's spans of
    /// `[section]` tables do not cover their keys, so every entry is searched).
    fn path_at(&self, span: &Range<usize>) -> KeyPath {
        fn walk(value: &DeValue<'_>, span: &Range<usize>, path: &mut KeyPath, best: &mut KeyPath) {
            let mut visit = |segment: Segment, v: &Spanned<DeValue<'_>>| {
                path.0.push(segment);
                let s = v.span();
                if s.start <= span.start
                    && span.start < s.end.max(s.start + 1)
                    && path.0.len() > best.0.len()
                {
                    *best = path.clone();
                }
                walk(v.get_ref(), span, path, best);
                path.0.pop();
            };
            match value {
                DeValue::Table(t) => {
                    for (k, v) in t.iter() {
                        visit(Segment::Key(k.get_ref().to_string()), v);
                    }
                }
                DeValue::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        visit(Segment::Index(i), v);
                    }
                }
                _ => {}
            }
        }
        let mut best = KeyPath::default();
        let root = DeValue::Table(self.root.get_ref().clone());
        walk(&root, span, &mut KeyPath::default(), &mut best);
        best
    }
}

/// toml's message without its trailing newline, on one line.
fn one_line(message: &str) -> String {
    message.trim().replace('\n', "; ")
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    struct File {
        #[serde(default)]
        a: Section,
        #[serde(default)]
        b: Section,
        #[serde(default)]
        item: Vec<Section>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct Section {
        n: Option<u32>,
        #[serde(default)]
        s: Option<String>,
    }

    fn check(text: &str) -> Result<File, Report> {
        let mut c = Checker::parse(Path::new("f.toml"), text)?;
        let file: Option<File> = c.deserialize();
        if let Some(f) = &file {
            if f.a.n == Some(7) {
                c.problem(Problem::new(KeyPath::dotted("a.n"), "7 is unlucky"));
            }
            for (i, item) in f.item.iter().enumerate() {
                if item.s.is_none() {
                    c.problem(Problem::new(
                        KeyPath::dotted("item").index(i).key("s"),
                        "missing",
                    ));
                }
            }
        }
        c.finish(file)
    }

    fn lines(r: &Report) -> Vec<usize> {
        r.diagnostics.iter().map(|d| d.line).collect()
    }

    #[test]
    fn collects_unknown_keys_type_errors_and_problems() {
        let text = "[a]\nn = 7\nx = 1\n[b]\nn = \"nine\"\n\
                    [[item]]\ns = \"ok\"\n[[item]]\nn = 1\nzz = 2\n[c]\n";
        let r = check(text).unwrap_err();
        let all = r.to_string();
        assert_eq!(lines(&r), [2, 3, 5, 8, 10, 11], "{all}");
        let l: Vec<&str> = all.lines().collect();
        assert_eq!(l[0], "f.toml:2:5: invalid value for 'a.n': 7 is unlucky");
        assert_eq!(l[1], "f.toml:3:1: unknown key 'a.x'");
        assert!(
            l[2].starts_with("f.toml:5:5: invalid value for 'b.n': "),
            "{all}"
        );
        assert_eq!(
            l[3], "f.toml:8:1: invalid value for 'item[1].s': missing",
            "{all}"
        );
        assert_eq!(l[4], "f.toml:10:1: unknown key 'item[1].zz'");
        assert_eq!(l[5], "f.toml:11:2: unknown key 'c'");
    }

    #[test]
    fn a_type_error_stops_only_its_section() {
        let r = check(
            "[a]\nn = -1\n[b]\nn = true\n[[item]]\nn = \"x\"\n[[item]]\ns = \"y\"\nq = 1\n\
             [[item]]\nn = 2\n",
        )
        .unwrap_err();
        assert_eq!(lines(&r), [2, 4, 6, 9, 10], "{r}");
        // item[0] was left out of the semantic checks; item[2] is still named item[2].
        assert_eq!(
            r.diagnostics[4].message,
            "invalid value for 'item[2].s': missing"
        );
    }

    #[test]
    fn syntax_error_is_reported_alone() {
        let r = check("[a]\nx = 1\n[b\nn = \"nine\"\n").unwrap_err();
        assert_eq!(r.diagnostics.len(), 1, "{r}");
        assert_eq!(r.diagnostics[0].line, 3, "{r}");
        assert!(r.diagnostics[0].message.starts_with("TOML syntax"), "{r}");
    }

    #[test]
    fn clean_file_passes() {
        let f = check("[a]\nn = 1\n[[item]]\ns = \"x\"\n").unwrap();
        assert_eq!((f.a.n, f.b.n, f.item.len()), (Some(1), None, 1));
    }

    #[test]
    fn key_paths_display() {
        let p = KeyPath::dotted("topic_defaults").key("retention.ms");
        assert_eq!(p.to_string(), "topic_defaults.\"retention.ms\"");
        assert_eq!(
            KeyPath::dotted("mirror").index(2).key("rename").to_string(),
            "mirror[2].rename"
        );
    }
}
