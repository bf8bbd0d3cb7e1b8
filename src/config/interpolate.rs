//! `${env:NAME}` in any string value is replaced by that environment variable, so
//! secrets stay out of the file. Expansion happens on parsed values, never on the YAML
//! text, so a variable's content can never change the document's structure.
//! `$${` writes a literal `${`.

use figment::value::Value;

use super::ConfigError;

const OPEN: &str = "${env:";

pub(super) fn interpolate(
    value: &mut Value,
    path: &mut Vec<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(_, text) if text.contains("${") => {
            *text = expand(text, lookup)
                .map_err(|message| ConfigError::invalid(super::key_path(path), message))?;
        }
        Value::Dict(_, dict) => {
            for (key, child) in dict.iter_mut() {
                path.push(key.clone());
                interpolate(child, path, lookup)?;
                path.pop();
            }
        }
        Value::Array(_, items) => {
            for (index, child) in items.iter_mut().enumerate() {
                path.push(index.to_string());
                interpolate(child, path, lookup)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix(OPEN) {
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated ${env:…} reference".to_owned())?;
            let name = &after[..end];
            if name.is_empty() {
                return Err("empty ${env:} reference".to_owned());
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else if tail.starts_with("${") {
            return Err(
                "only ${env:NAME} references are supported (write $${ for a literal)".to_owned(),
            );
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr\"et".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn replaces_references_and_keeps_the_rest() {
        assert_eq!(
            expand("Bearer ${env:TOKEN}!", &env).as_deref(),
            Ok("Bearer s3cr\"et!")
        );
        assert_eq!(expand("cost: $5", &env).as_deref(), Ok("cost: $5"));
        assert_eq!(expand("$${env:TOKEN}", &env).as_deref(), Ok("${env:TOKEN}"));
    }

    #[test]
    fn refuses_missing_and_malformed_references() {
        assert_eq!(
            expand("${env:NOPE}", &env),
            Err("environment variable NOPE is not set".to_owned())
        );
        assert!(expand("${env:TOKEN", &env).is_err());
        assert!(expand("${TOKEN}", &env).is_err());
        assert!(expand("${env:}", &env).is_err());
    }
}
