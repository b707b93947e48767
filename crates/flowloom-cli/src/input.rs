//! The run's input (`--input`, `--input-file`, standard input) and `--var KEY=VALUE` pairs.

use std::io::{IsTerminal, Read};
use std::path::Path;

use serde_json::{Map, Value};

use crate::cli::InputArgs;
use crate::error::CliError;

/// Reads the workflow input: `--input`, else `--input-file` (`-` is standard input), else
/// standard input when it is not a terminal, else the empty text.
pub fn read_input(args: &InputArgs) -> Result<String, CliError> {
    if let Some(text) = &args.input {
        return Ok(text.clone());
    }
    match &args.input_file {
        Some(p) if p.as_os_str() == "-" => read_stdin(),
        Some(p) => read_file(p),
        None if std::io::stdin().is_terminal() => Ok(String::new()),
        None => read_stdin(),
    }
}

fn read_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| {
        CliError::usage(format!(
            "cannot read the input file {}: {e}; check the path given to --input-file",
            path.display()
        ))
    })
}

fn read_stdin() -> Result<String, CliError> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).map_err(|e| {
        CliError::usage(format!(
            "cannot read the input from standard input: {e}; pass --input TEXT or --input-file PATH"
        ))
    })?;
    Ok(s)
}

/// Parses `--var KEY=VALUE` pairs into template variables (values are text). A later pair
/// with the same key wins.
pub fn parse_vars(pairs: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut vars = Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(CliError::usage(format!(
                "invalid --var {pair:?}: expected KEY=VALUE, e.g. --var language=rust"
            )));
        };
        let key = key.trim();
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(CliError::usage(format!(
                "invalid --var {pair:?}: the name {key:?} may hold only letters, digits and `_`, \
                 and must not start with a digit, so templates can use it as {{{{ name }}}}"
            )));
        }
        vars.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn vars_parse_and_the_last_wins() {
        let v = parse_vars(&strings(&["a=1", "lang=rust", "a=x=y", "empty="])).unwrap();
        assert_eq!(v["a"], "x=y");
        assert_eq!(v["lang"], "rust");
        assert_eq!(v["empty"], "");
    }

    #[test]
    fn bad_vars_say_what_to_write() {
        let e = parse_vars(&strings(&["novalue"])).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::Exit::Invalid);
        assert!(e.to_string().contains("KEY=VALUE"), "{e}");
        let e = parse_vars(&strings(&["=v"])).unwrap_err();
        assert!(e.to_string().contains("may hold only letters"), "{e}");
        let e = parse_vars(&strings(&["a-b=v"])).unwrap_err();
        assert!(e.to_string().contains("{{ name }}"), "{e}");
    }

    #[test]
    fn input_text_wins_and_a_missing_file_is_a_usage_error() {
        let args = InputArgs {
            input: Some("hi".into()),
            ..Default::default()
        };
        assert_eq!(read_input(&args).unwrap(), "hi");
        let args = InputArgs {
            input_file: Some("/nonexistent/in.txt".into()),
            ..Default::default()
        };
        let e = read_input(&args).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::Exit::Invalid);
        assert!(e.to_string().contains("--input-file"), "{e}");
    }
}
