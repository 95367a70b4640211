//! The command line, parsed by hand: `huststore [-c FILE] [-t | -s SIGNAL] [-v] [-h]`.

use std::ffi::OsString;
use std::path::PathBuf;

use nix::sys::signal::Signal;

/// The conf file used when `-c` is not given: the one the package installs.
pub const DEFAULT_CONF: &str = "/etc/huststore/huststore.conf";

/// The usage text printed by `-h` and after a command-line error.
pub const USAGE: &str = "\
usage: huststore [-c FILE] [-t | -s SIGNAL] [-v] [-h]

options:
  -c FILE    use the conf FILE (default /etc/huststore/huststore.conf)
  -t         check the conf and exit
  -s SIGNAL  send SIGNAL to the running master: reload, quit, stop, reopen, upgrade
  -v         print the version and exit
  -h         print this help and exit
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    /// `-t`: check the conf and exit.
    Test {
        conf: PathBuf,
    },
    /// `-s NAME`: signal the running master.
    Signal {
        conf: PathBuf,
        action: Action,
    },
    /// No action flag: run the daemon.
    Run {
        conf: PathBuf,
    },
}

/// The names `-s` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reload,
    Quit,
    Stop,
    Reopen,
    Upgrade,
}

impl Action {
    fn from_name(name: &str) -> Option<Action> {
        match name {
            "reload" => Some(Action::Reload),
            "quit" => Some(Action::Quit),
            "stop" => Some(Action::Stop),
            "reopen" => Some(Action::Reopen),
            "upgrade" => Some(Action::Upgrade),
            _ => None,
        }
    }

    /// The signal that carries this action to the master (ops.md, "Signals to the master").
    pub fn signal(self) -> Signal {
        match self {
            Action::Reload => Signal::SIGHUP,
            Action::Quit => Signal::SIGQUIT,
            Action::Stop => Signal::SIGTERM,
            Action::Reopen => Signal::SIGUSR1,
            Action::Upgrade => Signal::SIGUSR2,
        }
    }
}

/// A command line that makes no sense; printed as one line followed by the usage.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

/// Parses the arguments (without the program name). `-cFILE` and `-sNAME` are accepted as
/// nginx accepts them; `-h` and `-v` win over everything else.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut conf: Option<PathBuf> = None;
    let mut test = false;
    let mut action: Option<Action> = None;
    let mut help = false;
    let mut version = false;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        match text.as_str() {
            "-h" | "-?" | "--help" => help = true,
            "-v" | "-V" | "--version" => version = true,
            "-t" => test = true,
            "-c" => match args.next() {
                Some(file) => conf = Some(PathBuf::from(file)),
                None => return Err(UsageError("option -c requires a file name".into())),
            },
            "-s" => match args.next() {
                Some(name) => action = Some(parse_action(&name.to_string_lossy())?),
                None => return Err(UsageError("option -s requires a signal name".into())),
            },
            _ if text.starts_with("-c") => {
                // The value is the rest of the argument; slicing the OsString keeps non-UTF-8
                // file names intact.
                let bytes = std::os::unix::ffi::OsStrExt::as_bytes(arg.as_os_str());
                let file: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(&bytes[2..]);
                conf = Some(PathBuf::from(file));
            }
            _ if text.starts_with("-s") => action = Some(parse_action(&text[2..])?),
            _ => return Err(UsageError(format!("invalid option \"{text}\""))),
        }
    }

    if help {
        return Ok(Command::Help);
    }
    if version {
        return Ok(Command::Version);
    }
    let conf = conf.unwrap_or_else(|| PathBuf::from(DEFAULT_CONF));
    match (test, action) {
        (true, Some(_)) => Err(UsageError(
            "options -t and -s cannot be used together".into(),
        )),
        (true, None) => Ok(Command::Test { conf }),
        (false, Some(action)) => Ok(Command::Signal { conf, action }),
        (false, None) => Ok(Command::Run { conf }),
    }
}

fn parse_action(name: &str) -> Result<Action, UsageError> {
    Action::from_name(name).ok_or_else(|| UsageError(format!("invalid signal \"{name}\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn defaults_to_run_with_the_installed_conf() {
        assert_eq!(
            parse_strs(&[]),
            Ok(Command::Run {
                conf: PathBuf::from(DEFAULT_CONF)
            })
        );
    }

    #[test]
    fn conf_and_test() {
        let want = Ok(Command::Test {
            conf: PathBuf::from("a.conf"),
        });
        assert_eq!(parse_strs(&["-c", "a.conf", "-t"]), want);
        assert_eq!(parse_strs(&["-t", "-ca.conf"]), want);
    }

    #[test]
    fn signals() {
        assert_eq!(
            parse_strs(&["-s", "reload"]),
            Ok(Command::Signal {
                conf: PathBuf::from(DEFAULT_CONF),
                action: Action::Reload
            })
        );
        assert_eq!(
            parse_strs(&["-squit", "-c", "x"]),
            Ok(Command::Signal {
                conf: PathBuf::from("x"),
                action: Action::Quit
            })
        );
        assert!(parse_strs(&["-s", "restart"]).is_err());
        assert!(parse_strs(&["-s"]).is_err());
        assert!(parse_strs(&["-t", "-s", "stop"]).is_err());
        assert_eq!(Action::Stop.signal(), Signal::SIGTERM);
        assert_eq!(Action::Reopen.signal(), Signal::SIGUSR1);
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(parse_strs(&["-t", "-h"]), Ok(Command::Help));
        assert_eq!(parse_strs(&["-c", "x", "-v"]), Ok(Command::Version));
        assert!(parse_strs(&["-x"]).is_err());
        assert!(parse_strs(&["-c"]).is_err());
    }
}
