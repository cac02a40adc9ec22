//! `#[export_plugin]`: the one export macro of `sluice-plugin-sdk`.
//!
//! Put it on the `impl Plugin for MyPlugin { ... }` block. It keeps the impl as written and adds:
//! 1. the list of phases the impl defines (the host's `info()` reports exactly these, so the gateway never
//!    calls a phase the plugin left at its default), plus the crate's name and version;
//! 2. on `wasm32`, the component exports (`info`, `validate`, `validate-consumer`, `configure`, the phases...)
//!    that forward to the trait; `info` also reports `Plugin::CONSUMER_CREDENTIAL`, which the trait supplies
//!    itself, so only the phase list has to be read off the impl.
//!
//! Why an attribute and not `export_plugin!(MyPlugin)`: a declarative macro cannot see which trait methods an
//! impl overrides; the attribute reads them off the impl block. It parses tokens by hand (no `syn`) because all
//! it needs is the self type and the `fn` names, which keeps the SDK's build light.
use proc_macro::{Delimiter, TokenStream, TokenTree};

const PHASES: [(&str, &str); 5] = [
    ("rewrite", "Rewrite"),
    ("access", "Access"),
    ("header_filter", "HeaderFilter"),
    ("body_filter", "BodyFilter"),
    ("log", "Log"),
];

#[proc_macro_attribute]
pub fn export_plugin(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[export_plugin] takes no arguments");
    }
    let tokens: Vec<TokenTree> = item.clone().into_iter().collect();
    let Some(TokenTree::Group(body)) = tokens.last() else {
        return compile_error(
            "#[export_plugin] goes on an `impl Plugin for MyPlugin { ... }` block",
        );
    };
    if body.delimiter() != Delimiter::Brace {
        return compile_error(
            "#[export_plugin] goes on an `impl Plugin for MyPlugin { ... }` block",
        );
    }
    let for_pos = tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "for"));
    let Some(for_pos) = for_pos else {
        return compile_error(
            "#[export_plugin] goes on an `impl Plugin for MyPlugin { ... }` block",
        );
    };
    let has_impl = tokens[..for_pos]
        .iter()
        .any(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "impl"));
    let self_ty: String = tokens[for_pos + 1..tokens.len() - 1]
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    if !has_impl || self_ty.is_empty() || self_ty.contains("where") {
        return compile_error(
            "#[export_plugin] goes on an `impl Plugin for MyPlugin { ... }` block (no generics)",
        );
    }

    let mut defined = Vec::new();
    let inner: Vec<TokenTree> = body.stream().into_iter().collect();
    for pair in inner.windows(2) {
        if let (TokenTree::Ident(kw), TokenTree::Ident(name)) = (&pair[0], &pair[1]) {
            if kw.to_string() == "fn" {
                defined.push(name.to_string());
            }
        }
    }
    let phases: Vec<String> = PHASES
        .iter()
        .filter(|(f, _)| defined.iter().any(|d| d == f))
        .map(|(_, v)| format!("::sluice_plugin_sdk::Phase::{v}"))
        .collect();

    let extra = format!(
        r#"
impl ::sluice_plugin_sdk::__private::Exported for {self_ty} {{
    const CRATE_NAME: &'static str = ::core::env!("CARGO_PKG_NAME");
    const CRATE_VERSION: &'static str = ::core::env!("CARGO_PKG_VERSION");
    const PHASES: &'static [::sluice_plugin_sdk::Phase] = &[{phases}];
}}
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
type __SluicePluginExport = ::sluice_plugin_sdk::__private::Adapter<{self_ty}>;
#[cfg(target_arch = "wasm32")]
::sluice_plugin_sdk::__private::export_world!(__SluicePluginExport with_types_in ::sluice_plugin_sdk::__private::bindings);
"#,
        phases = phases.join(", ")
    );
    let mut out = item;
    match extra.parse::<TokenStream>() {
        Ok(ts) => out.extend(ts),
        Err(e) => return compile_error(&format!("#[export_plugin] internal error: {e}")),
    }
    out
}

fn compile_error(msg: &str) -> TokenStream {
    format!("::core::compile_error!({msg:?});")
        .parse()
        .unwrap_or_default()
}
