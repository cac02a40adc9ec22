//! Lua `tonumber` for strings, so numeric comparisons accept exactly what
//! lua-resty-expr accepts (`" 10 "`, `"1e3"`, `"0x1A"`), and reject what it
//! rejects (`"10abc"`, `"inf"`, `""`).

pub(crate) fn lua_tonumber(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, unsigned) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    if let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let v = u128::from_str_radix(hex, 16).ok()? as f64;
        return Some(if neg { -v } else { v });
    }
    // Rust's float parser also takes "inf"/"nan"/"infinity"; Lua does not.
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    t.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::lua_tonumber;

    #[test]
    fn accepts_lua_numbers() {
        assert_eq!(lua_tonumber("10"), Some(10.0));
        assert_eq!(lua_tonumber(" 10 "), Some(10.0));
        assert_eq!(lua_tonumber("-2.5"), Some(-2.5));
        assert_eq!(lua_tonumber("1e3"), Some(1000.0));
        assert_eq!(lua_tonumber(".5"), Some(0.5));
        assert_eq!(lua_tonumber("0x1A"), Some(26.0));
        assert_eq!(lua_tonumber("-0x10"), Some(-16.0));
    }

    #[test]
    fn rejects_non_numbers() {
        for s in [
            "", " ", "10abc", "inf", "nan", "infinity", "0x", "0xg", "1.2.3", "--1",
        ] {
            assert_eq!(lua_tonumber(s), None, "{s:?}");
        }
    }
}
