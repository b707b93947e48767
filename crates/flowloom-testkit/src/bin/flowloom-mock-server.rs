//! Runs the mock OpenAI-compatible server until the process is stopped, and prints its base
//! URL (e.g. `http://127.0.0.1:8080/v1`) as the first line on standard output.
//!
//! ```text
//! flowloom-mock-server [--addr IP] [--port N] [--api-key KEY] [--embedding-dimensions N]
//! ```

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use flowloom_testkit::server::{MockConfig, MockOpenAiServer};

const USAGE: &str = "usage: flowloom-mock-server [--addr IP] [--port N] [--api-key KEY] \
[--embedding-dimensions N]

Serves a deterministic OpenAI-compatible API (chat completions, streaming, embeddings, models)
until stopped. Defaults: --addr 127.0.0.1 --port 0 (a free port). Prints the base URL first.";

struct Args {
    addr: IpAddr,
    port: u16,
    config: MockConfig,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args {
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        config: MockConfig::default(),
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("`{flag}` needs a value"))
        };
        match flag.as_str() {
            "--addr" | "--host" => {
                let v = value()?;
                out.addr = v
                    .parse()
                    .map_err(|_| format!("`--addr {v}` is not an IP address, e.g. 127.0.0.1"))?;
            }
            "--port" => {
                let v = value()?;
                out.port = v
                    .parse()
                    .map_err(|_| format!("`--port {v}` is not a port number from 0 to 65535"))?;
            }
            "--api-key" => out.config = out.config.clone().with_api_key(value()?),
            "--embedding-dimensions" => {
                let v = value()?;
                let n: usize = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!("`--embedding-dimensions {v}` is not an integer >= 1")
                })?;
                out.config = out.config.clone().with_embedding_dimensions(n);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(out))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match MockOpenAiServer::bind(SocketAddr::new(args.addr, args.port), args.config)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: could not listen on {}:{}: {e}; pick another --port (0 picks a free one)",
                args.addr, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    println!("{}", server.base_url());
    let _ = std::io::stdout().flush();
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
