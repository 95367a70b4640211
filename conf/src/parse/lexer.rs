//! The tokenizer, shaped like nginx's `ngx_conf_read_token`: cuts conf text into words (quotes
//! removed, each with its line), `;`, `{`, `}` and the end of the text. Comments and whitespace
//! never leave it. It knows nothing of directives: what a statement means is the table's business.

use super::error::ConfError;
use std::path::Path;

/// One word of a statement (quotes removed), with the line it starts on.
#[derive(Debug)]
pub(super) struct Word {
    pub(super) text: String,
    pub(super) line: usize,
}

/// What the lexer yields. Braces are tokens already, with their line, so that a block directive
/// (`name args { ... }`) is the statement loop's business only.
pub(super) enum Token {
    Word(Word),
    Semicolon(usize),
    Brace(&'static str, usize),
    Eof,
}

/// Cuts conf text into tokens, as nginx does: whitespace separates words; `;`, `{` and `}` end a
/// word anywhere; `#` starts a comment only where a word could start; a quote starts a quoted
/// word only there too, and the closing quote must be followed by a separator.
pub(super) struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    file: &'a Path,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &'a str, file: &'a Path) -> Lexer<'a> {
        Lexer {
            chars: text.chars().peekable(),
            line: 1,
            file,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next();
        if c == Some('\n') {
            self.line += 1;
        }
        c
    }

    pub(super) fn next_token(&mut self) -> Result<Token, ConfError> {
        loop {
            let Some(&c) = self.chars.peek() else {
                return Ok(Token::Eof);
            };
            match c {
                c if c.is_ascii_whitespace() => {
                    self.bump();
                }
                '#' => {
                    while let Some(&c) = self.chars.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                ';' => {
                    self.bump();
                    return Ok(Token::Semicolon(self.line));
                }
                '{' | '}' => {
                    self.bump();
                    let brace = if c == '{' { "{" } else { "}" };
                    return Ok(Token::Brace(brace, self.line));
                }
                '"' | '\'' => return self.quoted(c),
                _ => return Ok(self.word()),
            }
        }
    }

    fn word(&mut self) -> Token {
        let line = self.line;
        let mut text = String::new();
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_whitespace() || matches!(c, ';' | '{' | '}') {
                break;
            }
            text.push(c);
            self.bump();
        }
        Token::Word(Word { text, line })
    }

    fn quoted(&mut self, quote: char) -> Result<Token, ConfError> {
        let line = self.line;
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(ConfError::UnexpectedEof {
                        file: self.file.to_path_buf(),
                        line,
                        expecting: if quote == '"' { "'\"'" } else { "\"'\"" },
                    })
                }
                Some('\\') => match self.chars.peek() {
                    Some(&c) if matches!(c, '"' | '\'' | '\\') => {
                        text.push(c);
                        self.bump();
                    }
                    _ => text.push('\\'),
                },
                Some(c) if c == quote => break,
                Some(c) => text.push(c),
            }
        }
        match self.chars.peek() {
            Some(&c) if !(c.is_ascii_whitespace() || matches!(c, ';' | '{' | '}')) => {
                Err(ConfError::Unexpected {
                    file: self.file.to_path_buf(),
                    line: self.line,
                    token: c.to_string(),
                })
            }
            _ => Ok(Token::Word(Word { text, line })),
        }
    }
}
