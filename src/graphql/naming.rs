//! Tool names from operation names: `execute_operation_` + snake case, as the
//! reference router names them, so a client moving over keeps its tool names.

/// The built-in tools; an operation tool may not take one of these names.
pub const BUILT_IN_TOOLS: [&str; 3] = ["get_schema", "execute_graphql", "get_operation_info"];

const PREFIX: &str = "execute_operation_";

/// The tool name for an operation, or `None` when the name has no letter or digit
/// to build one from (an unnamed operation in a file called `---.graphql`).
pub(super) fn tool_name(operation_name: &str, omit_prefix: bool) -> Option<String> {
    let snake = snake_case(operation_name);
    if snake.is_empty() {
        return None;
    }
    Some(if omit_prefix {
        snake
    } else {
        format!("{PREFIX}{snake}")
    })
}

/// Lower snake case where an acronym stays one word: `GetAPIStatus` → `get_api_status`.
///
/// A word starts at an uppercase letter after a lowercase letter or a digit
/// (`getUser`, `HTTP2Request`), and at the last capital of a run followed by a
/// lowercase letter (`APIStatus` → `API` + `Status`), except a plural `s`
/// (`getUserIDs` → `get_user_ids`). Digits stay with the word they
/// follow, so `getV2Users` gives `get_v2_users`, not `get_v_2_users`. Anything that is
/// not an ASCII letter or digit separates words and is dropped (file stems can hold
/// spaces, dashes or non-ASCII letters; MCP tool names should not).
pub(super) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    // Set at a separator, so the next word gets an underscore only if one came before.
    let mut pending_break = false;
    for (index, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            pending_break = true;
            continue;
        }
        let previous = index
            .checked_sub(1)
            .and_then(|i| chars.get(i))
            .copied()
            .filter(char::is_ascii_alphanumeric);
        let next = chars.get(index + 1).copied();
        let after_next = chars.get(index + 2).copied();
        // `IDs`, `URLs`: a lone `s` after a run of capitals is a plural, not a word.
        let plural = next == Some('s') && !after_next.is_some_and(|n| n.is_ascii_lowercase());
        let ends_acronym = next.is_some_and(|n| n.is_ascii_lowercase()) && !plural;
        let starts_word = c.is_ascii_uppercase()
            && previous.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && ends_acronym)
            });
        if (starts_word || pending_break) && !out.is_empty() {
            out.push('_');
        }
        pending_break = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acronyms_are_one_word() {
        assert_eq!(snake_case("GetAPIStatus"), "get_api_status");
        assert_eq!(snake_case("userID"), "user_id");
        assert_eq!(snake_case("getHTTPSUrl"), "get_https_url");
        assert_eq!(snake_case("ABC"), "abc");
        assert_eq!(snake_case("APIs"), "apis");
        assert_eq!(snake_case("getUserIDsByName"), "get_user_ids_by_name");
        assert_eq!(snake_case("MySQLServer"), "my_sql_server");
        assert_eq!(snake_case("ASet"), "a_set");
    }

    #[test]
    fn camel_and_pascal_case_split_at_capitals() {
        assert_eq!(snake_case("getUser"), "get_user");
        assert_eq!(snake_case("GetTopSecretFacts"), "get_top_secret_facts");
        assert_eq!(snake_case("a"), "a");
    }

    #[test]
    fn digits_stay_with_the_word_before_them() {
        assert_eq!(snake_case("HTTPRequest2Fast"), "http_request2_fast");
        assert_eq!(snake_case("HTTP2Request"), "http2_request");
        assert_eq!(snake_case("getV2Users"), "get_v2_users");
        assert_eq!(snake_case("user2fa"), "user2fa");
        assert_eq!(snake_case("2Fast"), "2_fast");
    }

    #[test]
    fn separators_collapse_and_are_trimmed() {
        assert_eq!(snake_case("already_snake_case"), "already_snake_case");
        assert_eq!(snake_case("__weird__Name_"), "weird_name");
        assert_eq!(
            snake_case("list employees-by team"),
            "list_employees_by_team"
        );
        assert_eq!(snake_case("café Menu"), "caf_menu");
        assert_eq!(snake_case("Get_User"), "get_user");
        assert_eq!(snake_case("---"), "");
    }

    #[test]
    fn the_prefix_is_added_unless_omitted() {
        assert_eq!(
            tool_name("GetAPIStatus", false).as_deref(),
            Some("execute_operation_get_api_status")
        );
        assert_eq!(
            tool_name("GetAPIStatus", true).as_deref(),
            Some("get_api_status")
        );
        assert_eq!(tool_name("-", false), None);
    }
}
