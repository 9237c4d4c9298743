//! `*_file` paths, checked: `${VAR}` is replaced by the environment variable VAR, so that
//! `file = "${CREDENTIALS_DIRECTORY}/devkey"` reads a systemd credential.

use std::path::PathBuf;

use super::ConfigError;

/// The path `text` names, with every `${VAR}` replaced by the value of VAR. An unset (or
/// non-UTF-8) VAR, and a `${` without its `}`, are errors naming `key` and the variable.
pub(super) fn file_path(key: &str, text: &str) -> Result<PathBuf, ConfigError> {
    expand(key, text, &|name| std::env::var(name).ok()).map(PathBuf::from)
}

fn expand(
    key: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::invalid(
                key,
                format!("`{text}`: `${{` without a closing `}}`"),
            ));
        };
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::invalid(
                key,
                format!("`{text}`: `${{{name}}}` is not an environment variable name"),
            ));
        }
        let value = lookup(name).ok_or_else(|| {
            ConfigError::invalid(
                key,
                format!(
                    "`{text}` uses ${{{name}}}, but the environment variable {name} is not set{}",
                    if name == "CREDENTIALS_DIRECTORY" {
                        " (systemd sets it for a service with LoadCredential=)"
                    } else {
                        ""
                    }
                ),
            )
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(name: &str) -> Option<String> {
        match name {
            "CREDENTIALS_DIRECTORY" => Some("/run/credentials/digicert-sidecar.service".into()),
            "A" => Some("x".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_are_replaced() {
        assert_eq!(
            expand("k", "${CREDENTIALS_DIRECTORY}/digicert_devkey", &env).unwrap(),
            "/run/credentials/digicert-sidecar.service/digicert_devkey"
        );
        assert_eq!(expand("k", "/a/${A}/${A}b", &env).unwrap(), "/a/x/xb");
        // A lone `$` is an ordinary character.
        assert_eq!(expand("k", "/a/$A/b$", &env).unwrap(), "/a/$A/b$");
    }

    #[test]
    fn an_unset_variable_is_an_error_naming_it_and_the_key() {
        let err = expand("routes[0].api_key.file", "${NOPE}/devkey", &env)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("routes[0].api_key.file:"), "{err}");
        assert!(err.contains("NOPE is not set"), "{err}");
        let err = expand("k", "${CREDENTIALS_DIRECTORY_X}/k", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CREDENTIALS_DIRECTORY_X"), "{err}");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(expand("k", "/a/${A", &env).is_err());
        assert!(expand("k", "/a/${}", &env).is_err());
        assert!(expand("k", "/a/${A B}", &env).is_err());
    }
}
