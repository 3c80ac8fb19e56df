//! A strict RFC 4180 field parser for one CSV record, and its JSON form.
//!
//! Hand-written rather than the `csv` crate: the record boundaries are already found by
//! `split` (which must also run in the indexing pass, byte offsets and all), so all that is
//! left is splitting one record into fields, about 40 lines; the crate would bring its own
//! reader, buffering and a second dependency (`csv-core`) for that, and is lenient by
//! default where an exactly-once job wants a bad row named and set aside.
//!
//! Rules: fields are separated by `,`; a field that starts with `"` is quoted, may hold
//! `,`, `\n` and `""` (one quote), and must be followed by `,` or the end of the record; a
//! quote inside an unquoted field, text after a closing quote and an unterminated quoted
//! field are errors. Every row must have as many fields as the header.

/// Splits one CSV record into its fields.
pub(crate) fn parse_fields(record: &str) -> Result<Vec<String>, String> {
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut state = State::FieldStart;
    for c in record.chars() {
        state = match (state, c) {
            (State::FieldStart | State::Unquoted | State::QuoteInQuoted, ',') => {
                fields.push(std::mem::take(&mut field));
                State::FieldStart
            }
            (State::FieldStart, '"') => State::Quoted,
            (State::Unquoted, '"') => {
                return Err(format!(
                    "field {} has a quote inside an unquoted value (quote the whole field and double the quote: \"a\"\"b\")",
                    fields.len() + 1
                ));
            }
            (State::FieldStart | State::Unquoted, c) => {
                field.push(c);
                State::Unquoted
            }
            (State::Quoted, '"') => State::QuoteInQuoted,
            (State::Quoted, c) => {
                field.push(c);
                State::Quoted
            }
            (State::QuoteInQuoted, '"') => {
                field.push('"');
                State::Quoted
            }
            (State::QuoteInQuoted, _) => {
                return Err(format!(
                    "field {} has text after its closing quote",
                    fields.len() + 1
                ));
            }
        };
    }
    if state == State::Quoted {
        return Err(format!(
            "field {} has an unterminated quoted value (it runs to the end of the file)",
            fields.len() + 1
        ));
    }
    fields.push(field);
    Ok(fields)
}

/// The row as a JSON object keyed by the header, in header order.
pub(crate) fn row_to_json(header: &[String], row: &str) -> Result<String, String> {
    let fields = parse_fields(row)?;
    if fields.len() != header.len() {
        return Err(format!(
            "the row has {} field{}; the header has {}",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" },
            header.len()
        ));
    }
    let mut out = String::with_capacity(row.len() + 8 * header.len() + 2);
    out.push('{');
    for (i, (k, v)) in header.iter().zip(&fields).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(k.as_str()).to_string());
        out.push(':');
        out.push_str(&serde_json::Value::from(v.as_str()).to_string());
    }
    out.push('}');
    Ok(out)
}

/// Parses and checks a header row: fields must be unique.
pub(crate) fn parse_header(record: &str) -> Result<Vec<String>, String> {
    let header = parse_fields(record)?;
    let mut seen = std::collections::HashSet::new();
    for h in &header {
        if !seen.insert(h.as_str()) {
            return Err(format!(
                "the header names column {h:?} twice; each column needs its own name"
            ));
        }
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Result<Vec<String>, String> {
        parse_fields(s)
    }

    #[test]
    fn plain_quoted_and_empty_fields() {
        assert_eq!(f("a,b,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(f("").unwrap(), [""]);
        assert_eq!(f(",").unwrap(), ["", ""]);
        assert_eq!(f("\"x,y\",\"\"").unwrap(), ["x,y", ""]);
        assert_eq!(f("\"say \"\"hi\"\"\",z").unwrap(), ["say \"hi\"", "z"]);
        assert_eq!(f("\"two\nlines\",é").unwrap(), ["two\nlines", "é"]);
        assert_eq!(f("a,\"\"").unwrap(), ["a", ""]);
    }

    #[test]
    fn malformed_fields_are_named() {
        assert!(f("a\"b,c").unwrap_err().contains("field 1"));
        assert!(
            f("x,\"q\"z")
                .unwrap_err()
                .contains("field 2 has text after")
        );
        assert!(f("x,\"open").unwrap_err().contains("unterminated"));
    }

    #[test]
    fn rows_become_objects_in_header_order_and_the_field_count_is_checked() {
        let h = parse_header("zeta,alpha").unwrap();
        assert_eq!(
            row_to_json(&h, "1,\"a \"\"b\"\"\"").unwrap(),
            r#"{"zeta":"1","alpha":"a \"b\""}"#
        );
        assert!(
            row_to_json(&h, "1")
                .unwrap_err()
                .contains("1 field; the header has 2")
        );
        assert!(parse_header("a,b,a").unwrap_err().contains("twice"));
    }
}
