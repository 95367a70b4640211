//! STUB
use crate::Conf;
use std::path::Path;
#[derive(Debug)]
pub struct ConfError(pub String);
impl std::fmt::Display for ConfError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) } }
pub static DIRECTIVES: &[&str] = &[];
pub fn load(_p: &Path) -> Result<Conf, ConfError> { todo!() }
pub fn parse_str(_text: &str, _p: &Path) -> Result<Conf, ConfError> { todo!() }
