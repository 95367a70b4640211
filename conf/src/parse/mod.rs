//! The conf file parser, shaped like nginx's `ngx_conf_file.c`: a tokenizer ([`lexer`]) that cuts
//! the text into statements, one table of directives ([`DIRECTIVES`], in [`directives`]) and one
//! function ([`table`]'s `Scope::apply`) that checks every statement against it (known name,
//! number of arguments, duplicates) before the directive's own function reads the values
//! ([`args`] over [`values`]). Errors and their messages are in [`error`]. This file only reads
//! the file and runs the statement loop.

mod args;
mod directives;
mod error;
mod lexer;
mod table;
mod values;

pub use directives::DIRECTIVES;
pub use error::ConfError;
pub use table::{Context, Directive};

use crate::Conf;
use lexer::{Lexer, Token, Word};
use std::path::Path;
use table::{Scope, Source};

/// Reads and parses the conf at `path`, made absolute against the current folder.
pub fn load(path: &Path) -> Result<Conf, ConfError> {
    let open_error = |error| ConfError::Open {
        path: path.to_path_buf(),
        error,
    };
    let abs = std::path::absolute(path).map_err(open_error)?;
    let bytes = std::fs::read(&abs).map_err(|error| ConfError::Open {
        path: abs.clone(),
        error,
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            return Err(ConfError::NotUtf8 { file: abs, line });
        }
    };
    parse_str(&text, &abs)
}

/// Parses conf text. `path` is the file it came from: messages name it, and relative paths in
/// the text are resolved against its folder (itself made absolute against the current folder).
pub fn parse_str(text: &str, path: &Path) -> Result<Conf, ConfError> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    let src = Source {
        file: path,
        dir: &dir,
    };
    let mut conf = Conf::defaults(abs);
    let mut scope = Scope::new(DIRECTIVES);
    // A byte-order mark some editors write is not part of the first directive's name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lexer = Lexer::new(text, path);
    let mut words: Vec<Word> = Vec::new();
    loop {
        match lexer.next_token()? {
            Token::Word(w) => words.push(w),
            Token::Semicolon(line) => {
                if words.is_empty() {
                    return Err(src.unexpected(line, ";"));
                }
                scope.apply(&src, &mut conf, &words)?;
                words.clear();
            }
            // No directive takes a block (yet): a brace is as unexpected as in nginx's
            // `ngx_conf_parse` for a directive without `NGX_CONF_BLOCK`.
            Token::Brace(brace, line) => {
                return Err(src.unexpected(line, brace));
            }
            Token::Eof => {
                if let Some(last) = words.last() {
                    return Err(ConfError::UnexpectedEof {
                        file: path.to_path_buf(),
                        line: last.line,
                        expecting: "\";\"",
                    });
                }
                return Ok(conf);
            }
        }
    }
}

#[cfg(test)]
mod tests;
