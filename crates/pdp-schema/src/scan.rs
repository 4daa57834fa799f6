//! The scanner itself: tokens, then top-level blocks, then the settings of `datasource` and `generator`
//! blocks (see the crate documentation for what it reads and what it deliberately skips).

use std::ops::Range;

/// The block kinds whose bodies are `key = value` settings.
const SETTINGS_BLOCKS: [&str; 2] = ["datasource", "generator"];

/// A scanned schema: its top-level blocks in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema<'a> {
    /// Every top-level block.
    pub blocks: Vec<Block<'a>>,
}

/// A top-level `kind name { … }` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block<'a> {
    /// `datasource`, `generator`, `model`, `enum`, `view`, `type` (or whatever word stood there).
    pub kind: &'a str,
    /// The block's name.
    pub name: &'a str,
    /// Zero-based line of the keyword.
    pub first_line: usize,
    /// Zero-based line of the closing brace.
    pub last_line: usize,
    /// The `key = value` settings, in order (datasource and generator blocks; empty for the others).
    pub entries: Vec<Entry<'a>>,
}

/// One `key = value` setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The key.
    pub key: &'a str,
    /// The line up to the `=`, as written: indentation, key and alignment.
    pub lead: &'a str,
    /// The value, read.
    pub value: Value,
    /// The value as written (an array may span lines and hold comments).
    pub raw: &'a str,
    /// The `//` comment after the value on its last line, or "".
    pub comment: &'a str,
    /// Zero-based line of the key.
    pub first_line: usize,
    /// Zero-based line where the value (and its comment) ends.
    pub last_line: usize,
}

/// A setting's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `"text"`, unescaped.
    Str(String),
    /// `[a, b]`.
    Array(Vec<Value>),
    /// `env("DATABASE_URL")`.
    Call {
        /// The function's name.
        name: String,
        /// Its arguments.
        args: Vec<Value>,
    },
    /// A bare word: `true`, `5`, an identifier; empty when nothing follows the `=`.
    Word(String),
}

/// Why a schema could not be scanned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// A block, array or call is never closed.
    #[error("line {line}: {what} is never closed")]
    Unclosed {
        /// One-based line where it opens.
        line: usize,
        /// What, e.g. "generator block `client`" or "the `previewFeatures` array".
        what: String,
    },
}

impl<'a> Schema<'a> {
    /// The blocks of one kind, in order.
    pub fn blocks_of<'s>(&'s self, kind: &'s str) -> impl Iterator<Item = &'s Block<'a>> + 's {
        self.blocks.iter().filter(move |b| b.kind == kind)
    }

    /// The first `datasource` block.
    pub fn datasource(&self) -> Option<&Block<'a>> {
        self.blocks_of("datasource").next()
    }
}

impl<'a> Block<'a> {
    /// The setting `key`, if the block has it.
    pub fn get(&self, key: &str) -> Option<&Entry<'a>> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// The first string of setting `key` (`provider = "postgresql"` → `postgresql`).
    pub fn string(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|e| e.value.strings().into_iter().next())
    }
}

impl Value {
    /// The string itself, for a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Every string literal in the value, in order (an array's items, a call's arguments).
    pub fn strings(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_strings(&mut out);
        out
    }

    fn collect_strings<'v>(&'v self, out: &mut Vec<&'v str>) {
        match self {
            Value::Str(s) => out.push(s),
            Value::Array(items) | Value::Call { args: items, .. } => {
                for i in items {
                    i.collect_strings(out);
                }
            }
            Value::Word(_) => {}
        }
    }
}

/// Scans `text`.
pub fn scan(text: &str) -> Result<Schema<'_>, ScanError> {
    let mut p = Parser { text, tokens: tokenize(text), pos: 0, line_starts: line_starts(text) };
    let mut blocks = Vec::new();
    while let Some(t) = p.peek() {
        let header = (t.kind == Kind::Word).then(|| (p.nth(1), p.nth(2))).and_then(|(name, open)| match (name, open) {
            (Some(n), Some(o)) if n.kind == Kind::Word && o.kind == Kind::Punct(b'{') => Some(n.span.clone()),
            _ => None,
        });
        match header {
            Some(name) => {
                let kind = &text[t.span.clone()];
                let first_line = t.line;
                p.pos += 3;
                blocks.push(p.block(kind, &text[name], first_line)?);
            }
            None => p.skip_line(),
        }
    }
    Ok(Schema { blocks })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Word,
    Str,
    Punct(u8),
    Comment,
    Newline,
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    span: Range<usize>,
    line: usize,
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && (!c.is_ascii_punctuation() || matches!(c, '_' | '-' | '.'))
}

fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut line = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let mut end = start + c.len_utf8();
        let kind = match c {
            '\n' => Kind::Newline,
            '\u{feff}' => continue,
            c if c.is_whitespace() => continue,
            '/' if chars.peek().is_some_and(|(_, n)| *n == '/') => {
                while let Some(&(i, n)) = chars.peek() {
                    if n == '\n' {
                        break;
                    }
                    end = i + n.len_utf8();
                    chars.next();
                }
                Kind::Comment
            }
            '"' => {
                // A string ends at its unescaped quote, or (unterminated) at the end of the line.
                let mut escaped = false;
                while let Some(&(i, n)) = chars.peek() {
                    if n == '\n' || n == '\r' {
                        break;
                    }
                    end = i + n.len_utf8();
                    chars.next();
                    match (escaped, n) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => {}
                    }
                }
                Kind::Str
            }
            c if is_word_char(c) => {
                while let Some(&(i, n)) = chars.peek() {
                    if !is_word_char(n) {
                        break;
                    }
                    end = i + n.len_utf8();
                    chars.next();
                }
                Kind::Word
            }
            c => Kind::Punct(u8::try_from(c).unwrap_or(b'?')),
        };
        tokens.push(Token { kind, span: start..end, line });
        if kind == Kind::Newline {
            line += 1;
        }
    }
    tokens
}

/// A string literal's text without its quotes, escapes resolved (an unterminated one runs to its end).
fn unescape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    let mut chars = literal.strip_prefix('"').unwrap_or(literal).chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        Some(ch) => out.push(ch),
                        None => {
                            out.push_str("\\u");
                            out.push_str(&hex);
                        }
                    }
                }
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    line_starts: Vec<usize>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn nth(&self, n: usize) -> Option<&Token> {
        self.tokens.get(self.pos + n)
    }

    fn at(&self, kind: Kind) -> bool {
        self.peek().is_some_and(|t| t.kind == kind)
    }

    /// Skips to just after the next newline.
    fn skip_line(&mut self) {
        while let Some(kind) = self.peek().map(|t| t.kind) {
            self.pos += 1;
            if kind == Kind::Newline {
                break;
            }
        }
    }

    fn skip_blank(&mut self) {
        while self.peek().is_some_and(|t| matches!(t.kind, Kind::Newline | Kind::Comment)) {
            self.pos += 1;
        }
    }

    /// The body of a block whose `{` was just consumed, up to and including its `}`.
    fn block(&mut self, kind: &'a str, name: &'a str, first_line: usize) -> Result<Block<'a>, ScanError> {
        let unclosed = || ScanError::Unclosed { line: first_line + 1, what: format!("{kind} block `{name}`") };
        let mut entries = Vec::new();
        if !SETTINGS_BLOCKS.contains(&kind) {
            // Count braces (strings and comments are single tokens, so theirs do not count).
            let mut depth = 0usize;
            loop {
                let t = self.peek().ok_or_else(unclosed)?.clone();
                self.pos += 1;
                match t.kind {
                    Kind::Punct(b'{') => depth += 1,
                    Kind::Punct(b'}') if depth == 0 => {
                        return Ok(Block { kind, name, first_line, last_line: t.line, entries });
                    }
                    Kind::Punct(b'}') => depth -= 1,
                    _ => {}
                }
            }
        }
        loop {
            self.skip_blank();
            let t = self.peek().ok_or_else(unclosed)?.clone();
            match t.kind {
                Kind::Punct(b'}') => {
                    self.pos += 1;
                    return Ok(Block { kind, name, first_line, last_line: t.line, entries });
                }
                Kind::Word if self.nth(1).is_some_and(|e| e.kind == Kind::Punct(b'=')) => {
                    let eq = self.nth(1).map(|e| e.span.start).unwrap_or(t.span.end);
                    self.pos += 2;
                    entries.push(self.entry(&t, eq)?);
                }
                _ => {
                    // Not `key = value`: Prisma reports it. Stop at the line's end or a closing brace; an
                    // opening brace means this block was never closed (the next block's header).
                    while let Some(n) = self.peek() {
                        match n.kind {
                            Kind::Newline | Kind::Punct(b'}') => break,
                            Kind::Punct(b'{') => return Err(unclosed()),
                            _ => self.pos += 1,
                        }
                    }
                }
            }
        }
    }

    /// The value after `key =`, its trailing comment, and the rest of its line.
    fn entry(&mut self, key: &Token, eq: usize) -> Result<Entry<'a>, ScanError> {
        let text = self.text;
        let key_text = &text[key.span.clone()];
        let value_start =
            self.peek().filter(|t| !matches!(t.kind, Kind::Newline | Kind::Comment)).map(|t| t.span.start);
        let value = self.value(key_text, key.line)?;
        // Anything else before the line's end belongs to the value as written.
        let mut value_end = self.tokens.get(self.pos.wrapping_sub(1)).map_or(eq + 1, |t| t.span.end);
        let mut last_line = self.tokens.get(self.pos.wrapping_sub(1)).map_or(key.line, |t| t.line);
        while let Some(t) = self.peek() {
            if matches!(t.kind, Kind::Newline | Kind::Comment | Kind::Punct(b'}')) {
                break;
            }
            value_end = t.span.end;
            last_line = t.line;
            self.pos += 1;
        }
        let raw = match value_start {
            Some(start) if value_end > start => &text[start..value_end],
            _ => "",
        };
        let comment = match self.peek() {
            Some(t) if t.kind == Kind::Comment => {
                let span = t.span.clone();
                last_line = t.line;
                self.pos += 1;
                text[span].trim_end()
            }
            _ => "",
        };
        let line_start = self.line_starts.get(key.line).copied().unwrap_or(0);
        Ok(Entry { key: key_text, lead: &text[line_start..eq], value, raw, comment, first_line: key.line, last_line })
    }

    fn value(&mut self, key: &str, line: usize) -> Result<Value, ScanError> {
        let Some(t) = self.peek().cloned() else { return Ok(Value::Word(String::new())) };
        let text = self.text;
        match t.kind {
            Kind::Str => {
                self.pos += 1;
                Ok(Value::Str(unescape(&text[t.span])))
            }
            Kind::Punct(b'[') => {
                self.pos += 1;
                let items = self.list(b']', key, line, "array")?;
                Ok(Value::Array(items))
            }
            Kind::Word if self.nth(1).is_some_and(|n| n.kind == Kind::Punct(b'(')) => {
                self.pos += 2;
                let args = self.list(b')', key, line, "value")?;
                Ok(Value::Call { name: text[t.span].to_owned(), args })
            }
            Kind::Word => {
                self.pos += 1;
                Ok(Value::Word(text[t.span].to_owned()))
            }
            Kind::Newline | Kind::Comment | Kind::Punct(b'}') => Ok(Value::Word(String::new())),
            Kind::Punct(_) => {
                self.pos += 1;
                Ok(Value::Word(text[t.span].to_owned()))
            }
        }
    }

    /// Comma-separated values up to `close` (newlines and comments allowed between them).
    fn list(&mut self, close: u8, key: &str, line: usize, what: &str) -> Result<Vec<Value>, ScanError> {
        let unclosed = || ScanError::Unclosed { line: line + 1, what: format!("the `{key}` {what}") };
        let mut items = Vec::new();
        loop {
            self.skip_blank();
            match self.peek().map(|t| t.kind) {
                None | Some(Kind::Punct(b'}')) => return Err(unclosed()),
                Some(Kind::Punct(c)) if c == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(Kind::Punct(b',')) => self.pos += 1,
                Some(_) => items.push(self.value(key, line)?),
            }
            if self.at(Kind::Punct(b'}')) {
                return Err(unclosed());
            }
        }
    }
}
