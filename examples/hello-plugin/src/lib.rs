//! hello-plugin: greets the client.
//!
//! - `access`: answers `GET <config.path>` itself with `Hello, <name>!` (name from `?name=` or "world"),
//!   so the upstream is never contacted for that path.
//! - `header_filter`: adds `x-hello: <config.greeting>` to every other response.
use sluice_plugin_sdk::{export_plugin, request, response, Decision, Method, Plugin, Response};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path answered by the plugin itself.
    #[serde(default = "default_path")]
    path: String,
    /// Value of the `x-hello` response header.
    greeting: String,
}

fn default_path() -> String {
    "/hello".to_string()
}

pub struct Hello;

#[export_plugin]
impl Plugin for Hello {
    type Config = Config;
    const PRIORITY: i32 = 500;

    fn validate(cfg: &Config) -> Result<(), String> {
        if !cfg.path.starts_with('/') {
            return Err(format!("path: must start with '/', got {:?}", cfg.path));
        }
        Ok(())
    }

    fn access(cfg: &Config) -> Decision {
        if request::method() != Method::Get || request::path() != cfg.path {
            return Decision::Continue;
        }
        let name = request::query()
            .and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("name=").map(str::to_string))
            })
            .unwrap_or_else(|| "world".to_string());
        Decision::Respond(
            Response::new(200)
                .header("content-type", "text/plain")
                .body(format!("Hello, {name}!\n")),
        )
    }

    fn header_filter(cfg: &Config) -> Decision {
        let _ = response::set_header("x-hello", &cfg.greeting);
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin_sdk::testing::TestHost;

    #[test]
    fn answers_its_path() {
        let host = TestHost::new();
        let cfg = host.configure::<Hello>(r#"{"greeting":"hi"}"#).unwrap();
        host.set_path("/hello?name=ada");
        let Decision::Respond(resp) = host.access(&cfg) else {
            panic!("expected a response");
        };
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"Hello, ada!\n");
    }

    #[test]
    fn other_paths_pass_and_get_the_header() {
        let host = TestHost::new();
        let cfg = host.configure::<Hello>(r#"{"greeting":"hi"}"#).unwrap();
        host.set_path("/api");
        assert_eq!(host.access(&cfg), Decision::Continue);
        host.set_response(200, &[]);
        assert_eq!(host.header_filter(&cfg), Decision::Continue);
        assert_eq!(host.response_header("x-hello").as_deref(), Some("hi"));
    }

    #[test]
    fn bad_config_is_explained() {
        let host = TestHost::new();
        let err = host
            .configure::<Hello>(r#"{"greeting":"hi","path":"hello"}"#)
            .err();
        assert_eq!(
            err.as_deref(),
            Some("path: must start with '/', got \"hello\"")
        );
    }
}
