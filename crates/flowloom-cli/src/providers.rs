//! The providers file (`flowloom.yaml`) and how the provider names a workflow uses are routed.
//!
//! Every name maps to an OpenAI-compatible endpoint: a base URL and the name of the environment
//! variable holding its key. Built-in defaults exist for the providers with a public
//! compatible endpoint; the file adds providers and overrides fields of the built-in ones.
//!
//! ```yaml
//! providers:
//!   openai:                       # override one field; the rest keeps its default
//!     base_url: http://127.0.0.1:8080/v1
//!   local:                        # a new provider
//!     base_url: http://localhost:8000/v1
//!     api_key_env: LOCAL_KEY      # omit (or null) when the server needs no key
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::CliError;

/// The provider name that always means the built-in mock provider.
pub const MOCK: &str = "mock";

/// The file looked for in the working directory when no `--providers` is given.
pub const DEFAULT_FILE: &str = "flowloom.yaml";

/// The built-in endpoints: name, base URL, key variable.
pub const BUILTIN: [(&str, &str, Option<&str>); 6] = [
    (
        "anthropic",
        "https://api.anthropic.com/v1",
        Some("ANTHROPIC_API_KEY"),
    ),
    (
        "deepseek",
        "https://api.deepseek.com/v1",
        Some("DEEPSEEK_API_KEY"),
    ),
    (
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        Some("GEMINI_API_KEY"),
    ),
    ("ollama", "http://localhost:11434/v1", None),
    (
        "openai",
        "https://api.openai.com/v1",
        Some("OPENAI_API_KEY"),
    ),
    (
        "openrouter",
        "https://openrouter.ai/api/v1",
        Some("OPENROUTER_API_KEY"),
    ),
];

/// One configured provider: an OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The environment variable holding its key; `None` when no key is sent.
    pub api_key_env: Option<String>,
}

/// The configured providers: built-in defaults, overridden and extended by a providers file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Providers {
    endpoints: BTreeMap<String, Endpoint>,
    file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    providers: BTreeMap<String, EntryShape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryShape {
    #[serde(default)]
    base_url: Option<String>,
    /// Missing: keep the default; `null`: no key; a name: that variable.
    #[serde(default, deserialize_with = "present")]
    api_key_env: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl Providers {
    /// Only the built-in endpoints.
    pub fn builtin() -> Self {
        let endpoints = BUILTIN
            .iter()
            .map(|(name, url, key)| {
                (
                    (*name).to_owned(),
                    Endpoint {
                        base_url: (*url).to_owned(),
                        api_key_env: key.map(str::to_owned),
                    },
                )
            })
            .collect();
        Self {
            endpoints,
            file: None,
        }
    }

    /// Loads the providers: `explicit` (from `--providers` or `FLOWLOOM_PROVIDERS`) must
    /// exist; otherwise `./flowloom.yaml` is read when it exists; otherwise the built-ins.
    pub fn load(explicit: Option<&Path>) -> Result<Self, CliError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from(DEFAULT_FILE);
                if !p.is_file() {
                    return Ok(Self::builtin());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            CliError::Providers(format!(
                "cannot read the providers file {}: {e}; check --providers / FLOWLOOM_PROVIDERS",
                path.display()
            ))
        })?;
        Self::builtin().merge_yaml(&text, &path)
    }

    /// Merges a providers file's text over these endpoints. Every problem is reported.
    pub fn merge_yaml(mut self, text: &str, path: &Path) -> Result<Self, CliError> {
        let shape: FileShape = if text.trim().is_empty() {
            FileShape {
                providers: BTreeMap::new(),
            }
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                CliError::Providers(format!(
                    "{}: {e}\n  a providers file looks like:\n  providers:\n    NAME:\n      \
                     base_url: https://host/v1\n      api_key_env: NAME_API_KEY",
                    path.display()
                ))
            })?
        };
        let mut problems = Vec::new();
        for (name, entry) in shape.providers {
            let at = format!("{}: provider `{name}`", path.display());
            if name == MOCK {
                problems.push(format!(
                    "{at}: `mock` is the built-in mock provider and cannot be configured; \
                     choose another name"
                ));
                continue;
            }
            if !valid_name(&name) {
                problems.push(format!(
                    "{at}: a provider name holds letters, digits, `-`, `_` or `.`"
                ));
                continue;
            }
            let base = self.endpoints.get(&name);
            let base_url = match (entry.base_url, base) {
                (Some(u), _) => u,
                (None, Some(b)) => b.base_url.clone(),
                (None, None) => {
                    problems.push(format!(
                        "{at}: `base_url` is missing; a provider that is not built in needs \
                         one, e.g. base_url: http://localhost:8000/v1"
                    ));
                    continue;
                }
            };
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                problems.push(format!(
                    "{at}: `base_url` is {base_url:?}; it must be an http:// or https:// URL, \
                     e.g. https://api.openai.com/v1"
                ));
                continue;
            }
            let api_key_env = match entry.api_key_env {
                Some(v) => v,
                None => base.and_then(|b| b.api_key_env.clone()),
            };
            if let Some(v) = &api_key_env
                && !valid_env_name(v)
            {
                problems.push(format!(
                    "{at}: `api_key_env` is {v:?}; it names an environment variable (letters, \
                     digits and `_`, e.g. MY_API_KEY), not the key itself"
                ));
                continue;
            }
            self.endpoints.insert(
                name,
                Endpoint {
                    base_url: base_url.trim_end_matches('/').to_owned(),
                    api_key_env,
                },
            );
        }
        if !problems.is_empty() {
            return Err(CliError::Providers(problems.join("\n")));
        }
        self.file = Some(path.to_path_buf());
        Ok(self)
    }

    /// The endpoint named `name`.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.get(name)
    }

    /// Every configured name, `mock` included, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.endpoints.keys().map(String::as_str).collect();
        v.push(MOCK);
        v.sort_unstable();
        v
    }

    /// True when `name` can be routed (`mock` always can).
    pub fn is_configured(&self, name: &str) -> bool {
        name == MOCK || self.endpoints.contains_key(name)
    }

    /// Checks that every provider a workflow names can be routed (with `--provider`, that
    /// one can). The error lists the configured names and how to add one.
    pub fn check_named(&self, named: &[String], flag: Option<&str>) -> Result<(), String> {
        let unknown: Vec<&str> = match flag {
            Some(f) if !self.is_configured(f) => vec![f],
            Some(_) => Vec::new(),
            None => named
                .iter()
                .map(String::as_str)
                .filter(|n| !self.is_configured(n))
                .collect(),
        };
        if unknown.is_empty() {
            return Ok(());
        }
        let mut msg = String::new();
        let list = unknown
            .iter()
            .map(|u| format!("`{u}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            msg,
            "provider {list} has no configuration; configured providers: {}.",
            self.names().join(", ")
        );
        let file = self
            .file
            .as_deref()
            .map_or_else(|| DEFAULT_FILE.to_owned(), |p| p.display().to_string());
        let _ = write!(
            msg,
            " Add it to {file} (providers: {{ {}: {{ base_url: ..., api_key_env: ... }} }}), \
             or pass --provider mock to run on the mock provider",
            unknown[0]
        );
        Err(msg)
    }

    /// Decides where each provider name goes. `named` are the names the workflow uses;
    /// `flag` is `--provider`; `env` reads environment variables. Every problem is reported.
    pub fn route(
        &self,
        named: &[String],
        flag: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<Route>, CliError> {
        self.check_named(named, flag).map_err(CliError::Providers)?;
        let mut routes = Vec::new();
        let mut problems = Vec::new();
        for name in named {
            let target = flag.unwrap_or(name);
            if target == MOCK {
                routes.push(Route {
                    name: name.clone(),
                    target: Target::Mock,
                });
                continue;
            }
            let Some(ep) = self.endpoints.get(target) else {
                continue; // reported by check_named
            };
            let mut base_url = ep.base_url.clone();
            // The environment wins over the file, as for every other setting.
            if target == "openai"
                && let Some(u) = env("OPENAI_BASE_URL").filter(|u| !u.trim().is_empty())
            {
                base_url = u.trim().trim_end_matches('/').to_owned();
            }
            let api_key = match &ep.api_key_env {
                None => None,
                Some(var) => match env(var).filter(|k| !k.trim().is_empty()) {
                    Some(k) => Some(k),
                    None => {
                        let how = if flag.is_some() {
                            format!("set {var}, or pass --provider mock to run offline")
                        } else {
                            format!(
                                "set {var}, or pass --provider mock to run every step on the \
                                 mock provider"
                            )
                        };
                        let problem = format!(
                            "provider `{target}` needs an API key and {var} is not set: {how}"
                        );
                        if !problems.contains(&problem) {
                            problems.push(problem);
                        }
                        continue;
                    }
                },
            };
            routes.push(Route {
                name: name.clone(),
                target: Target::OpenAiCompatible {
                    provider: target.to_owned(),
                    base_url,
                    api_key,
                },
            });
        }
        if !problems.is_empty() {
            return Err(CliError::Providers(problems.join("\n")));
        }
        Ok(routes)
    }
}

/// Where one provider name of a workflow is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Route {
    /// The name the workflow uses.
    pub name: String,
    /// What serves it.
    pub target: Target,
}

/// What serves a provider name.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// The mock provider.
    Mock,
    /// An OpenAI-compatible endpoint.
    OpenAiCompatible {
        /// The configured provider's name (the workflow's name, or `--provider`).
        provider: String,
        /// Base URL.
        base_url: String,
        /// The key, when the endpoint takes one. Never printed.
        api_key: Option<String>,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Mock => f.write_str("Mock"),
            Target::OpenAiCompatible {
                provider,
                base_url,
                api_key,
            } => f
                .debug_struct("OpenAiCompatible")
                .field("provider", provider)
                .field("base_url", base_url)
                .field("api_key", &api_key.as_ref().map(|_| "[REDACTED]"))
                .finish(),
        }
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {:?}", self.name, self.target)
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_env_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn builtins_are_the_documented_endpoints() {
        let p = Providers::builtin();
        let openai = p.get("openai").unwrap();
        assert_eq!(openai.base_url, "https://api.openai.com/v1");
        assert_eq!(openai.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(p.get("ollama").unwrap().api_key_env, None);
        assert_eq!(
            p.names(),
            [
                "anthropic",
                "deepseek",
                "gemini",
                "mock",
                "ollama",
                "openai",
                "openrouter"
            ]
        );
    }

    #[test]
    fn a_file_overrides_fields_and_adds_providers() {
        let text = "providers:\n  openai:\n    base_url: http://127.0.0.1:9/v1/\n  local:\n    base_url: http://localhost:8000/v1\n  ollama:\n    api_key_env: OLLAMA_KEY\n  deepseek:\n    api_key_env: null\n";
        let p = Providers::builtin()
            .merge_yaml(text, Path::new("flowloom.yaml"))
            .unwrap();
        let o = p.get("openai").unwrap();
        assert_eq!(o.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(o.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(p.get("local").unwrap().api_key_env, None);
        assert_eq!(
            p.get("ollama").unwrap().api_key_env.as_deref(),
            Some("OLLAMA_KEY")
        );
        assert_eq!(p.get("deepseek").unwrap().api_key_env, None);
        assert!(p.names().contains(&"local"));
    }

    #[test]
    fn a_bad_file_reports_every_problem() {
        let text = "providers:\n  mock:\n    base_url: http://x\n  new:\n    api_key_env: K\n  bad:\n    base_url: ftp://x\n  key:\n    base_url: http://x\n    api_key_env: sk-123\n";
        let e = Providers::builtin()
            .merge_yaml(text, Path::new("p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`mock` is the built-in"), "{e}");
        assert!(e.contains("`base_url` is missing"), "{e}");
        assert!(e.contains("http:// or https://"), "{e}");
        assert!(e.contains("not the key itself"), "{e}");
    }

    #[test]
    fn unknown_fields_are_errors_with_a_location() {
        let e = Providers::builtin()
            .merge_yaml(
                "providers:\n  openai:\n    url: http://x\n",
                Path::new("p.yaml"),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `url`"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn an_unconfigured_provider_lists_the_configured_ones() {
        let p = Providers::builtin();
        let e = p
            .route(&names(&["openai", "mistral"]), None, &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`mistral` has no configuration"), "{e}");
        assert!(e.contains("anthropic, deepseek, gemini, mock, ollama, openai, openrouter"));
        assert!(e.contains("--provider mock"), "{e}");
    }

    #[test]
    fn a_missing_key_names_both_ways_out() {
        let p = Providers::builtin();
        let e = p
            .route(&names(&["openai"]), None, &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("OPENAI_API_KEY"), "{e}");
        assert!(e.contains("--provider mock"), "{e}");
    }

    #[test]
    fn mock_routes_every_name_to_the_mock() {
        let p = Providers::builtin();
        let r = p
            .route(&names(&["anthropic", "nonesuch"]), Some(MOCK), &no_env)
            .unwrap();
        assert!(r.iter().all(|r| r.target == Target::Mock));
        assert_eq!(r[1].name, "nonesuch");
    }

    #[test]
    fn keys_and_base_url_come_from_the_environment() {
        let p = Providers::builtin();
        let env = |k: &str| match k {
            "OPENAI_API_KEY" => Some("sk-test".to_owned()),
            "OPENAI_BASE_URL" => Some("http://127.0.0.1:1234/v1/".to_owned()),
            _ => None,
        };
        let r = p.route(&names(&["openai", "ollama"]), None, &env).unwrap();
        assert_eq!(
            r[0].target,
            Target::OpenAiCompatible {
                provider: "openai".into(),
                base_url: "http://127.0.0.1:1234/v1".into(),
                api_key: Some("sk-test".into()),
            }
        );
        assert!(matches!(
            &r[1].target,
            Target::OpenAiCompatible { api_key: None, .. }
        ));
        assert!(!format!("{r:?}").contains("sk-test"));
        // OPENAI_BASE_URL also wins over a providers file.
        let p = Providers::builtin()
            .merge_yaml(
                "providers:\n  openai:\n    base_url: http://file/v1\n",
                Path::new("f.yaml"),
            )
            .unwrap();
        let r = p.route(&names(&["openai"]), None, &env).unwrap();
        assert!(
            matches!(&r[0].target, Target::OpenAiCompatible { base_url, .. } if base_url == "http://127.0.0.1:1234/v1")
        );
    }

    #[test]
    fn provider_flag_reroutes_every_name() {
        let p = Providers::builtin();
        let r = p
            .route(&names(&["anthropic", "deepseek"]), Some("ollama"), &no_env)
            .unwrap();
        for route in &r {
            assert!(
                matches!(&route.target, Target::OpenAiCompatible { provider, .. } if provider == "ollama")
            );
        }
        let e = p
            .route(&names(&["openai"]), Some("nope"), &no_env)
            .unwrap_err();
        assert!(e.to_string().contains("`nope` has no configuration"));
    }
}
