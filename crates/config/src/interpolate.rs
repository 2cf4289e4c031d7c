//! `${VAR}` and `${VAR:-default}` in string values. `$$` is a literal `$`. Done on the
//! parsed tree, so a value can never break the TOML around it.
//!
//! Every problem is reported, each with its field path: a missing variable expands to
//! nothing, so one value can name several and the rest of the config can still be
//! checked (see [`crate::Config::parse_in`]).

/// One interpolation problem: the field path and what is wrong there.
pub(crate) type Problem = (String, String);

/// Expands every string in `t`; the problems found, in field order.
pub(crate) fn table(
    t: &mut toml::Table,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    walk_table(t, path, env, &mut problems);
    problems
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk_table(
    t: &mut toml::Table,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    for (k, v) in t.iter_mut() {
        walk(v, &join(path, k), env, problems);
    }
}

fn walk(
    v: &mut toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match v {
        toml::Value::String(s) => {
            let (out, found) = expand(s, env);
            *s = out;
            problems.extend(found.into_iter().map(|p| (path.to_owned(), p)));
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), env, problems);
            }
        }
        toml::Value::Table(t) => walk_table(t, path, env, problems),
        _ => {}
    }
}

/// Expands one string: the result, and every problem in it. A missing variable expands to
/// nothing; a malformed reference is kept as written.
pub(crate) fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(s.len());
    let mut problems = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                problems.push("unclosed `${` in value".to_owned());
                out.push_str(&rest[pos..]);
                rest = "";
                break;
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                problems.push(format!("`${{{expr}}}` is not a valid variable reference"));
                out.push_str(&rest[pos..pos + 2 + end + 1]);
            } else {
                match (env(name), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => problems.push(format!(
                        "environment variable {name} is not set (use ${{{name}:-default}} to make it optional)"
                    )),
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_owned())
    }

    fn ok(s: &str) -> String {
        let (out, problems) = expand(s, &env);
        assert!(problems.is_empty(), "{s}: {problems:?}");
        out
    }

    #[test]
    fn expands_set_defaulted_and_escaped() {
        assert_eq!(ok("a-${SET}-b"), "a-value-b");
        assert_eq!(ok("${UNSET:-fallback}"), "fallback");
        assert_eq!(ok("${UNSET:-}"), "");
        assert_eq!(ok("${SET:-x}"), "value");
        assert_eq!(ok("cost $$5 and $x"), "cost $5 and $x");
    }

    #[test]
    fn missing_variable_is_named() {
        let (_, problems) = expand("${OPENAI_API_KEY}", &env);
        assert!(problems[0].contains("OPENAI_API_KEY"), "{problems:?}");
        assert_eq!(expand("${OOPS", &env).1.len(), 1);
        assert_eq!(expand("${bad name}", &env).1.len(), 1);
    }

    #[test]
    fn every_missing_variable_of_one_value_is_named() {
        let (out, problems) = expand("https://${HOST}:${PORT}/${SET}", &env);
        assert_eq!(
            out, "https://:/value",
            "missing variables expand to nothing"
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("HOST") && problems[1].contains("PORT"));
    }
}
