//! Every rule of the value mapping, both ways, and every refusal.

use super::*;
use serde_json::json;

fn dict(pairs: &[(&str, Value)]) -> Value {
    Value::dict(pairs.iter().cloned())
}

#[test]
fn command_line_values() {
    let rows: Vec<(&str, Value)> = vec![
        ("215", Value::Int(215)),
        ("-3", Value::Int(-3)),
        ("0", Value::Int(0)),
        ("9223372036854775807", Value::Int(i64::MAX)),
        ("-9223372036854775808", Value::Int(i64::MIN)),
        ("hello", Value::text("hello")),
        ("hello world", Value::text("hello world")),
        ("", Value::text("")),
        ("007", Value::text("007")),
        ("-0", Value::text("-0")),
        ("+5", Value::text("+5")),
        ("21.5", Value::text("21.5")),
        ("true", Value::text("true")),
        ("1e3", Value::text("1e3")),
        ("-", Value::text("-")),
        ("\"215\"", Value::text("215")),
        ("\"[x\"", Value::text("[x")),
        ("\"\"", Value::text("")),
        ("\"caf\\u00e9\"", Value::text("café")),
        (
            "[1,\"a\"]",
            Value::List(vec![Value::Int(1), Value::text("a")]),
        ),
        ("[]", Value::List(vec![])),
        (
            "{\"on\":1,\"level\":40}",
            dict(&[("on", Value::Int(1)), ("level", Value::Int(40))]),
        ),
        (
            " {\"a\": [[-1], {}]}",
            dict(&[(
                "a",
                Value::List(vec![Value::List(vec![Value::Int(-1)]), dict(&[])]),
            )]),
        ),
    ];
    for (text, expected) in rows {
        assert_eq!(parse_value(text), Ok(expected), "{text:?}");
    }
}

#[test]
fn command_line_refusals_say_why() {
    let rows = [
        ("99999999999999999999", "64-bit"),
        ("-99999999999999999999", "64-bit"),
        ("[1.5]", "no floats"),
        ("{\"t\":21.5}", "no floats"),
        ("[true]", "no booleans"),
        ("{\"x\":null}", "no null"),
        ("[18446744073709551615]", "64-bit"),
        ("[1,", "not JSON"),
        ("{on}", "not JSON"),
        ("\"unterminated", "not JSON"),
    ];
    for (text, reason) in rows {
        match parse_value(text) {
            Err(e) => assert!(e.contains(reason), "{text:?}: {e}"),
            Ok(v) => panic!("{text:?} was read as {v:?}"),
        }
    }
}

#[test]
fn readable_output() {
    let rows: Vec<(Value, &str)> = vec![
        (Value::Int(215), "215"),
        (Value::Int(-3), "-3"),
        (Value::text("hello"), "hello"),
        (Value::text("hello world"), "hello world"),
        (Value::text("café"), "café"),
        // Text that would read back as something else is quoted.
        (Value::text("215"), "\"215\""),
        (Value::text(""), "\"\""),
        (Value::text("[x"), "\"[x\""),
        (Value::text("\"q\""), "\"\\\"q\\\"\""),
        (Value::text("two\nlines"), "\"two\\nlines\""),
        (Value::text(" padded"), "\" padded\""),
        (Value::Bytes(vec![0xff, 0x00]), "0xff00"),
        (
            Value::List(vec![
                Value::Int(1),
                Value::text("a"),
                Value::Bytes(vec![0xfe]),
            ]),
            "[1, \"a\", 0xfe]",
        ),
        (
            dict(&[("on", Value::Int(1)), ("level", Value::Int(40))]),
            "{\"level\": 40, \"on\": 1}",
        ),
        (
            Value::Dict([(vec![0x80], Value::List(vec![]))].into()),
            "{0x80: []}",
        ),
    ];
    for (value, expected) in rows {
        assert_eq!(show(&value), expected, "{value:?}");
    }
}

#[test]
fn readable_output_reads_back_for_text_ints_and_json() {
    for value in [
        Value::Int(215),
        Value::text("215"),
        Value::text("hello"),
        Value::text(""),
        Value::text("{"),
        Value::text("a\tb"),
        Value::List(vec![Value::text("x"), Value::Int(2)]),
        dict(&[("value", dict(&[("value", Value::Int(1))]))]),
    ] {
        assert_eq!(parse_value(&show(&value)), Ok(value.clone()), "{value:?}");
    }
}

#[test]
fn json_output() {
    let rows: Vec<(Value, Json)> = vec![
        (Value::Int(215), json!(215)),
        (Value::text("215"), json!("215")),
        (Value::Bytes(vec![0xff, 0x00]), json!({"$hex": "ff00"})),
        (
            Value::List(vec![Value::Int(1), Value::text("a")]),
            json!([1, "a"]),
        ),
        (
            dict(&[("on", Value::Int(1)), ("level", Value::Int(40))]),
            json!({"on": 1, "level": 40}),
        ),
        (
            Value::Dict([(vec![0xff], Value::Int(1))].into()),
            json!({"$hex:ff": 1}),
        ),
    ];
    for (value, expected) in rows {
        assert_eq!(to_json(&value), expected, "{value:?}");
    }
}
